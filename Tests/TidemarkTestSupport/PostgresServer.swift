import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL cluster for the tests: one per test process,
/// created on first use in a fresh temporary directory, listening only on a
/// Unix socket in that directory, and stopped (immediate shutdown) and
/// removed when the process exits. When the tests run as root, the server
/// runs as the `postgres` OS user (`runuser -u postgres --`).
///
/// Roles: `postgres` (superuser, trust over the socket), `tidemark_pw`
/// (LOGIN, password `secret-pw`, scram-sha-256 — for wrong-password tests),
/// `tidemark_nopriv` (LOGIN, no privileges, trust).
///
/// Clusters left behind by a killed test process (their directory names
/// carry the owning pid) are stopped and removed by the next run.
public final class PostgresServer: @unchecked Sendable {
    /// The directory holding the server's socket (the conninfo's host).
    public let socketDirectory: String
    public let dataDirectory: String
    public let binDirectory: String
    public let baseDirectory: String
    public let port = 5432
    /// The major version of the cluster's binaries, e.g. 15 (0 if unknown).
    public let majorVersion: Int

    /// Guards `databaseCounter` (invariant: each value is handed out once).
    private let lock = NSLock()
    private var databaseCounter = 0

    /// The cluster of this test process, started on the first call.
    /// A failure to start is remembered and thrown to every caller.
    public static func shared() throws -> PostgresServer {
        PostgresServerState.lock.lock()
        defer { PostgresServerState.lock.unlock() }
        if let existing = PostgresServerState.result { return try existing.get() }
        let result = Result { try PostgresServer() }
        PostgresServerState.result = result
        return try result.get()
    }

    /// key=value conninfo for the socket (no password: `tidemark_pw` needs
    /// `password=secret-pw` added).
    public func conninfo(database: String = "postgres", user: String = "postgres") -> String {
        "host=\(Self.quote(socketDirectory)) port=\(port) dbname=\(Self.quote(database)) user=\(Self.quote(user))"
    }

    /// A fresh, uniquely named, empty database (owner postgres).
    public func createDatabase(_ prefix: String = "t") throws -> String {
        lock.lock()
        databaseCounter += 1
        let n = databaseCounter
        lock.unlock()
        let cleaned = prefix.lowercased().filter { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "_" }
        let name = "\(cleaned.isEmpty ? "t" : String(cleaned.prefix(30)))_\(getpid())_\(n)"
        try psql("CREATE DATABASE \"\(name)\"")
        return name
    }

    /// Runs SQL as the superuser through psql (stops at the first error).
    public func psql(_ sql: String, database: String = "postgres") throws {
        let out = try Self.run(binDirectory + "/psql",
                               ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", socketDirectory, "-p", String(port),
                                "-U", "postgres", "-d", database, "-c", sql],
                               asPostgres: false)
        if out.status != 0 {
            throw PostgresServerError("psql failed (exit \(out.status)) running \(sql.prefix(120)): \(out.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    // MARK: start

    private init() throws {
        let bin = try Self.findBinDirectory()
        binDirectory = bin
        majorVersion = Self.majorVersion(of: bin)
        let asRoot = getuid() == 0
        Self.removeStaleClusters()

        var tmp = NSTemporaryDirectory()
        // Unix socket paths are limited to ~107 bytes.
        if tmp.count > 60 || !FileManager.default.fileExists(atPath: tmp) { tmp = "/tmp" }
        let base = (tmp as NSString).appendingPathComponent("tidemark-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        baseDirectory = base
        dataDirectory = base + "/data"
        socketDirectory = base + "/sock"
        let fm = FileManager.default
        try fm.createDirectory(atPath: base, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try fm.createDirectory(atPath: dataDirectory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        try fm.createDirectory(atPath: socketDirectory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        // Registered before starting so a failed start still cleans up.
        PostgresServerState.registerCleanup(base: base, data: dataDirectory)
        if asRoot {
            guard let pw = getpwnam("postgres") else {
                throw PostgresServerError("running as root but there is no `postgres` OS user to run the PostgreSQL server as; install the postgresql package or create the user")
            }
            for dir in [base, dataDirectory, socketDirectory] {
                guard chown(dir, pw.pointee.pw_uid, pw.pointee.pw_gid) == 0 else {
                    throw PostgresServerError("chown \(dir) to postgres failed: \(String(cString: strerror(errno)))")
                }
            }
        }

        try Self.check(Self.run(bin + "/initdb", ["-D", dataDirectory, "-A", "trust", "-U", "postgres",
                                                  "--encoding=UTF8", "--locale=C", "--no-sync"], asPostgres: asRoot),
                       "initdb")
        // The password role authenticates with scram even over the socket;
        // this line must come before initdb's trust lines.
        let hba = dataDirectory + "/pg_hba.conf"
        let existing = try String(contentsOfFile: hba, encoding: .utf8)
        try ("local all tidemark_pw scram-sha-256\n" + existing).write(toFile: hba, atomically: false, encoding: .utf8)
        let conf = """

            # Tidemark test cluster
            listen_addresses = ''
            unix_socket_directories = '\(socketDirectory)'
            port = \(port)
            fsync = off
            synchronous_commit = off
            full_page_writes = off
            max_connections = 200
            shared_buffers = 128MB
            password_encryption = 'scram-sha-256'

            """
        let confHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: dataDirectory + "/postgresql.conf"))
        try confHandle.seekToEnd()
        try confHandle.write(contentsOf: Data(conf.utf8))
        try confHandle.close()

        try Self.check(Self.run(bin + "/pg_ctl", ["-D", dataDirectory, "-l", base + "/server.log", "-w", "-t", "120", "start"],
                                asPostgres: asRoot),
                       "pg_ctl start", log: base + "/server.log")
        PostgresServerState.markStarted()
        try psql("""
            CREATE ROLE tidemark_pw LOGIN PASSWORD 'secret-pw';
            CREATE ROLE tidemark_nopriv LOGIN;
            """)
    }

    private static func check(_ out: (status: Int32, output: String), _ what: String, log: String? = nil) throws {
        guard out.status != 0 else { return }
        var text = out.output.trimmingCharacters(in: .whitespacesAndNewlines)
        if let log, let tail = try? String(contentsOfFile: log, encoding: .utf8) {
            text += " | server log: " + tail.split(separator: "\n").suffix(8).joined(separator: " | ")
        }
        throw PostgresServerError("\(what) failed (exit \(out.status)): \(text.replacingOccurrences(of: "\n", with: " | "))")
    }

    /// Newest /usr/lib/postgresql/<major>/bin with initdb and pg_ctl, else
    /// `pg_config --bindir` (often client-only), else PATH.
    /// `TIDEMARK_PG_BINDIR` overrides.
    static func findBinDirectory() throws -> String {
        let fm = FileManager.default
        func usable(_ dir: String) -> Bool {
            fm.isExecutableFile(atPath: dir + "/initdb") && fm.isExecutableFile(atPath: dir + "/pg_ctl")
                && fm.isExecutableFile(atPath: dir + "/psql")
        }
        var searched: [String] = []
        if let dir = ProcessInfo.processInfo.environment["TIDEMARK_PG_BINDIR"] {
            if usable(dir) { return dir }
            throw PostgresServerError("TIDEMARK_PG_BINDIR=\(dir) has no initdb/pg_ctl/psql")
        }
        let root = "/usr/lib/postgresql"
        let versions = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).compactMap { Int($0) }.sorted(by: >)
        for v in versions {
            let dir = "\(root)/\(v)/bin"
            searched.append(dir)
            if usable(dir) { return dir }
        }
        for config in ["/usr/bin/pg_config", "/usr/local/bin/pg_config"] where fm.isExecutableFile(atPath: config) {
            if let out = try? run(config, ["--bindir"], asPostgres: false), out.status == 0 {
                let dir = out.output.trimmingCharacters(in: .whitespacesAndNewlines)
                searched.append(dir)
                if usable(dir) { return dir }
            }
        }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) {
            searched.append(dir)
            if usable(dir) { return dir }
        }
        throw PostgresServerError("no PostgreSQL server binaries (initdb, pg_ctl, psql) found in \(searched.joined(separator: ", ")); install the postgresql package or set TIDEMARK_PG_BINDIR")
    }

    static func majorVersion(of bin: String) -> Int {
        guard let out = try? run(bin + "/pg_ctl", ["--version"], asPostgres: false) else { return 0 }
        // "pg_ctl (PostgreSQL) 15.18 (Debian …)"
        let words = out.output.split(separator: " ")
        guard words.count >= 3 else { return 0 }
        return Int(words[2].split(separator: ".").first ?? "") ?? 0
    }

    /// Runs a program (as `postgres` through runuser when asked), with the
    /// PG* environment cleared so the tests' cluster is the one used. Its
    /// output goes to a file, not a pipe: the postmaster `pg_ctl start`
    /// leaves running inherits it, and a pipe would never close.
    static func run(_ program: String, _ arguments: [String], asPostgres: Bool) throws -> (status: Int32, output: String) {
        var argv: [String]
        if asPostgres {
            let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser", "/bin/runuser"]
                .first { FileManager.default.isExecutableFile(atPath: $0) }
            guard let runuser else { throw PostgresServerError("runuser not found; it is needed to run PostgreSQL as the postgres user when testing as root") }
            argv = [runuser, "-u", "postgres", "--", program] + arguments
        } else {
            argv = [program] + arguments
        }
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PG") }
        env["LC_ALL"] = "C"
        let outputPath = NSTemporaryDirectory() + "tidemark-pg-run-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        guard FileManager.default.createFile(atPath: outputPath, contents: nil) else {
            throw PostgresServerError("cannot create \(outputPath)")
        }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        defer { try? output.close() }
        let child = Child(executable: argv[0], Array(argv.dropFirst()), environment: env, inheritEnvironment: false,
                          stdout: output, stderr: output)
        try child.start()
        let finished = try child.wait(timeoutSeconds: 300)
        let data = FileManager.default.contents(atPath: outputPath) ?? Data()
        let status = finished.reason == .exit ? finished.status : 128 + finished.status
        return (status, String(decoding: data, as: UTF8.self))
    }

    static func quote(_ value: String) -> String {
        if !value.isEmpty, !value.contains(where: { $0 == " " || $0 == "'" || $0 == "\\" }) { return value }
        return "'" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
    }

    /// Stops and removes clusters whose owning test process is gone.
    static func removeStaleClusters() {
        let fm = FileManager.default
        for tmp in Set([NSTemporaryDirectory(), "/tmp"]) {
            guard let names = try? fm.contentsOfDirectory(atPath: tmp) else { continue }
            for name in names where name.hasPrefix("tidemark-pg-") {
                let parts = name.split(separator: "-")
                guard parts.count == 4, let pid = Int32(parts[2]) else { continue }
                if pid == getpid() { continue }
                if kill(pid, 0) == 0 || errno != ESRCH { continue }   // owner alive (or not ours to judge)
                let base = (tmp as NSString).appendingPathComponent(name)
                stopCluster(data: base + "/data")
                try? fm.removeItem(atPath: base)
            }
        }
    }

    /// Immediate shutdown by signal (SIGQUIT to the postmaster); waits up
    /// to 10 s for postmaster.pid to go, then SIGKILL. No child processes:
    /// this also runs from the atexit handler.
    static func stopCluster(data: String) {
        let pidFile = data + "/postmaster.pid"
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let first = text.split(separator: "\n").first, let pid = Int32(first.trimmingCharacters(in: .whitespaces)), pid > 0
        else { return }
        guard kill(pid, SIGQUIT) == 0 else { return }
        for _ in 0..<200 {
            if !FileManager.default.fileExists(atPath: pidFile) { return }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
    }
}

public struct PostgresServerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The process-wide cluster state; all access under `lock`.
enum PostgresServerState {
    static let lock = NSLock()
    nonisolated(unsafe) static var result: Result<PostgresServer, Error>?
    nonisolated(unsafe) static var cleanup: (base: String, data: String)?
    nonisolated(unsafe) static var started = false

    static func registerCleanup(base: String, data: String) {
        cleanup = (base, data)
        atexit {
            // Runs at process exit, after the tests; no locking (other
            // threads are gone or about to be).
            guard let target = PostgresServerState.cleanup else { return }
            PostgresServer.stopCluster(data: target.data)
            try? FileManager.default.removeItem(atPath: target.base)
        }
    }

    static func markStarted() { started = true }
}
