// TidemarkPostgres: a small synchronous client over libpq (connection,
// errors with SQLSTATE, COPY, pipeline mode) and the PostgreSQL side of a
// migration's capture. It knows change records (TidemarkLog) but not the
// migrator (TidemarkCore builds on it).
