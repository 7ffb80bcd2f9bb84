#if DEBUG
import Synchronization
import SystemPackage

/// Fault injection for the log's file layer (DEBUG builds only; release
/// builds carry no hook).
///
/// An injector watches one directory tree (`root`, normally a log
/// directory). Every mutating call that ``SystemFile`` and ``FileSystem``
/// make under it — create, write, sync, truncate, rename, remove,
/// makeDirectory, syncDirectory — gets the next index (``calls``), and can
/// be made to fail (``Fault``). Calls outside every armed root pass through
/// untouched, so tests running in parallel do not see each other's faults,
/// and a SQLite database beside the log is never affected.
///
/// The injector models the page cache: it keeps, per file (by inode), the
/// bytes as of its last `fdatasync`, and per directory the names as of its
/// last directory fsync. ``powerCut(keepingRandomPagesSeed:)`` puts exactly
/// that durable state back on disk — unsynced data, and names created,
/// renamed or removed since the directory's last fsync, are dropped — and
/// starts a new "boot". ``restartProcess()`` models a process crash
/// without power loss: the page cache (the real files) stays.
///
/// Files opened before a crash belong to the dead process: every later
/// mutating call through them fails with EIO, so a leftover object of the
/// crashed process cannot write after the restart.
///
/// Stable API (used by TidemarkLogTests and TidemarkSQLiteTests):
/// `init(root:)`, `inject(_:at:)`, `calls`, `callCount`, `resetCalls()`,
/// `crashed`, `crashNow()`, `restartProcess()`, `powerCut(keepingRandomPagesSeed:)`,
/// `disarm()`.
package final class FileFaults: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `lock`.

    package enum Operation: String, Sendable, CaseIterable {
        case create, write, sync, truncate, rename, remove, makeDirectory, syncDirectory
    }

    package enum Fault: Sendable, Equatable, CustomStringConvertible {
        /// The call fails with this errno (ENOSPC, EIO, …) and changes nothing.
        case fail(Int32)
        /// A write puts only its first half into the file (page cache), then
        /// fails with EIO. Other calls: as `.fail(EIO)`.
        case tear
        /// The process dies just before this call: the call and every later
        /// mutating call fail with EIO until ``restartProcess()`` or
        /// ``powerCut(keepingRandomPagesSeed:)``.
        case crash

        package var description: String {
            switch self {
            case .fail(let e): e == Errno.noSpace.rawValue ? "ENOSPC" : e == Errno.ioError.rawValue ? "EIO" : "errno \(e)"
            case .tear: "torn write"
            case .crash: "crash"
            }
        }
    }

    /// One intercepted call.
    package struct Call: Sendable, CustomStringConvertible {
        package var index: Int
        package var operation: Operation
        package var path: String
        package var description: String { "#\(index) \(operation.rawValue) \(path)" }
    }

    package let root: String

    private let lock = ConditionLock()
    // Guarded by `lock`:
    private var recorded: [Call] = []
    private var faults: [Int: Fault] = [:]
    private var isCrashed = false
    private var generation = 0
    private var armed = true
    /// Durable bytes per inode (as of its last sync or the last snapshot).
    private var durableData: [UInt64: [UInt8]] = [:]
    /// Durable entries per directory: name -> inode (nil for a subdirectory).
    private var durableNames: [String: [String: Entry]] = [:]

    private enum Entry: Equatable {
        case file(UInt64)
        case directory
    }

    /// Arms an injector on `root` (which must exist). Everything under it
    /// now counts as durable.
    package init(root: String) {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r
        lock.withLock { snapshot() }
        Self.registry.withLock { $0.append(self) }
        Self.armedCount.add(1, ordering: .relaxed)
    }

    deinit { disarm() }

    /// Stops intercepting (idempotent). Files keep what they hold.
    package func disarm() {
        let was = lock.withLock { () -> Bool in
            let a = armed
            armed = false
            return a
        }
        guard was else { return }
        Self.registry.withLock { list in list.removeAll { $0 === self } }
        Self.armedCount.subtract(1, ordering: .relaxed)
    }

    /// Makes the call with index `index` fail with `fault`.
    package func inject(_ fault: Fault, at index: Int) {
        lock.withLock { faults[index] = fault }
    }

    /// Every intercepted call since the injector was armed or ``resetCalls()``.
    package var calls: [Call] { lock.withLock { recorded } }
    package var callCount: Int { lock.withLock { recorded.count } }

    /// Restarts call numbering at 0 and forgets injected faults.
    package func resetCalls() {
        lock.withLock {
            recorded = []
            faults = [:]
        }
    }

    /// Whether a `.crash` fault fired and the process has not restarted.
    package var crashed: Bool { lock.withLock { isCrashed } }

    /// The process dies now: every later mutating call fails with EIO until
    /// ``restartProcess()`` or ``powerCut(keepingRandomPagesSeed:)``.
    package func crashNow() {
        lock.withLock { isCrashed = true }
    }

    /// A process crash without power loss: the page cache survives. Files
    /// opened before stay dead.
    package func restartProcess() {
        lock.withLock {
            isCrashed = false
            generation += 1
        }
    }

    /// A power cut: every file and directory under `root` goes back to its
    /// durable state; then a new boot begins (files opened before are dead).
    ///
    /// - Parameter keepingRandomPagesSeed: when set, each file whose name
    ///   survives keeps a random subset of its unsynced 4 KiB pages (and
    ///   randomly its unsynced length): the disk wrote some of the page cache
    ///   back in no particular order before the power went. Nil drops all of it.
    package func powerCut(keepingRandomPagesSeed: UInt64? = nil) {
        lock.withLock {
            var random = keepingRandomPagesSeed.map { FaultRandom($0) }
            for dir in durableNames.keys.sorted(by: { $0.count < $1.count }) {
                guard let names = durableNames[dir] else { continue }
                // Names created or renamed in since the last directory fsync go.
                for name in Self.listNames(dir) where names[name] == nil {
                    Self.removeTree(dir + "/" + name)
                }
                for (name, entry) in names.sorted(by: { $0.key < $1.key }) {
                    let path = dir + "/" + name
                    switch entry {
                    case .directory:
                        if !FileSystem.isDirectory(path) {
                            Self.removeTree(path)
                            try? Syscall.makeDirectory(path)
                        }
                    case .file(let inode):
                        var bytes = durableData[inode] ?? []
                        if random != nil, Self.inode(path) == inode, let live = Self.readWhole(path) {
                            bytes = Self.mix(durable: bytes, live: live, random: &random!)
                        }
                        Self.replace(path, with: bytes)
                    }
                }
            }
            isCrashed = false
            generation += 1
            snapshot()
        }
    }

    // MARK: Hooks called by SystemFile and FileSystem

    private static let registry = Mutex<[FileFaults]>([])
    private static let armedCount = Atomic<Int>(0)

    static func injector(for path: String) -> FileFaults? {
        guard armedCount.load(ordering: .relaxed) > 0 else { return nil }
        return registry.withLock { list in
            list.first { path == $0.root || path.hasPrefix($0.root + "/") }
        }
    }

    /// The current generation, for a file being opened under `root`.
    var currentGeneration: Int { lock.withLock { generation } }

    enum Verdict {
        case proceed
        case fail(Int32)
        case tear
    }

    /// Numbers the call and decides its fate. `generation` is the opening
    /// generation of the file used, if any.
    func intercept(_ operation: Operation, _ path: String, generation fileGeneration: Int?) -> Verdict {
        lock.withLock {
            guard armed else { return .proceed }
            let eio = Errno.ioError.rawValue
            if let g = fileGeneration, g != generation { return .fail(eio) }
            let index = recorded.count
            recorded.append(Call(index: index, operation: operation, path: path))
            if isCrashed { return .fail(eio) }
            switch faults[index] {
            case nil: return .proceed
            case .fail(let e): return .fail(e)
            case .tear: return operation == .write ? .tear : .fail(eio)
            case .crash:
                isCrashed = true
                return .fail(eio)
            }
        }
    }

    /// After a successful `fdatasync` of `fd`: its bytes are durable.
    func didSync(_ fd: FileDescriptor) {
        guard let st = try? fd.stat(), let bytes = Self.readWhole(fd, size: Int(st.size)) else { return }
        lock.withLock { durableData[UInt64(st.inode.rawValue)] = bytes }
    }

    /// After a successful directory fsync: its names are durable.
    func didSyncDirectory(_ path: String) {
        lock.withLock { durableNames[path] = Self.entries(path) }
    }

    // MARK: Helpers (called with `lock` held)

    private func snapshot() {
        durableData = [:]
        durableNames = [:]
        var stack = [root]
        while let dir = stack.popLast() {
            let entries = Self.entries(dir)
            durableNames[dir] = entries
            for (name, entry) in entries {
                switch entry {
                case .directory: stack.append(dir + "/" + name)
                case .file(let inode): durableData[inode] = Self.readWhole(dir + "/" + name) ?? []
                }
            }
        }
    }

    private static func entries(_ dir: String) -> [String: Entry] {
        var out: [String: Entry] = [:]
        for name in listNames(dir) {
            guard let st = try? FilePath(dir + "/" + name).stat(followTargetSymlink: false) else { continue }
            if st.type == .directory {
                out[name] = .directory
            } else if st.type == .regular {
                out[name] = .file(UInt64(st.inode.rawValue))
            }
        }
        return out
    }

    private static func listNames(_ dir: String) -> [String] {
        (try? FileSystem.list(dir)) ?? []
    }

    private static func inode(_ path: String) -> UInt64? {
        (try? FilePath(path).stat(followTargetSymlink: false)).map { UInt64($0.inode.rawValue) }
    }

    private static func readWhole(_ path: String) -> [UInt8]? {
        guard let fd = try? FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec]) else { return nil }
        defer { try? fd.close() }
        guard let st = try? fd.stat() else { return nil }
        return readWhole(fd, size: Int(st.size))
    }

    /// The first `size` bytes of `fd` (fewer if it is shorter), or nil on error.
    private static func readWhole(_ fd: FileDescriptor, size: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: size)
        guard let n = try? bytes.withUnsafeMutableBytes({ try fd.read(fromAbsoluteOffset: 0, into: $0) }) else { return nil }
        bytes.removeLast(size - n)
        return bytes
    }

    private static func replace(_ path: String, with bytes: [UInt8]) {
        if FileSystem.isDirectory(path) { removeTree(path) }
        guard let fd = try? FileDescriptor.open(FilePath(path), .readWrite, options: [.create, .truncate, .closeOnExec],
                                                permissions: [.ownerReadWrite]) else { return }
        defer { try? fd.close() }
        _ = try? fd.writeAll(toAbsoluteOffset: 0, bytes)
    }

    private static func removeTree(_ path: String) {
        if FileSystem.isDirectory(path) {
            for name in listNames(path) { removeTree(path + "/" + name) }
            try? Syscall.removeDirectory(path)
        } else {
            try? Syscall.remove(path)
        }
    }

    /// Durable bytes with a random subset of the live (unsynced) pages.
    private static func mix(durable: [UInt8], live: [UInt8], random: inout FaultRandom) -> [UInt8] {
        let page = 4096
        let length = random.next() % 2 == 0 ? live.count : durable.count
        var out = [UInt8](repeating: 0, count: length)
        for i in 0..<min(length, durable.count) { out[i] = durable[i] }
        var start = 0
        while start < length {
            let end = min(length, start + page)
            let differs = end > durable.count || durable[start..<end] != live[start..<min(end, live.count)]
            if differs && random.next() % 2 == 0 {
                for i in start..<end { out[i] = i < live.count ? live[i] : 0 }
            }
            start = end
        }
        return out
    }
}

/// A small seeded generator (splitmix64), so a power cut's page choice
/// reproduces from its seed.
package struct FaultRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    package init(_ seed: UInt64) { state = seed }
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
#endif
