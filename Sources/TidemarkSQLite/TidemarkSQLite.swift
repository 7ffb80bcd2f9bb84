// TidemarkSQLite: thin SQLite layer, capture, shipper.
