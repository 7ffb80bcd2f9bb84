import TidemarkLog

extension Capture {
    /// The random identity of this capture installation
    /// (`_tidemark_meta.installation_id`, made by ``install(connection:tables:updateColumns:sourceID:continuingAfter:)``
    /// when it creates the outbox); nil when capture is not installed or was
    /// installed before installations had ids.
    ///
    /// Why an id and not the install time: a wall clock can step back (NTP,
    /// a VM restore), and a log's owner must not change with it.
    public static func installationID(_ connection: Connection) throws -> String? {
        guard try isInstalled(connection) else { return nil }
        let statement = try connection.prepare("SELECT value FROM \(metaTable) WHERE name = 'installation_id'")
        guard try statement.step(), !statement.columnIsNull(0) else { return nil }
        let id = statement.columnText(0)
        return id.isEmpty ? nil : id
    }
}
