import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Temporary directories for every test target (each once held its own copy).
///
/// They live in /dev/shm when there is one: the tests commit thousands of
/// small transactions, and an fsync to disk costs milliseconds each.
/// Nothing in the tests depends on durability across a machine crash — a
/// killed process loses nothing the kernel already holds, and power loss is
/// simulated (the fault-injection seams), never real. A test that needs an
/// fsync to cost what it costs on a disk (group commit) asks for `onDisk`.

/// Creates a fresh, empty directory named after `label` and returns its
/// path; the caller removes it (``withTemporaryDirectory(_:onDisk:_:)`` does).
public func makeTemporaryDirectory(_ label: String = "tidemark-test", onDisk: Bool = false) throws -> String {
    let base = !onDisk && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : FileManager.default.temporaryDirectory.path
    let path = base + "/\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Runs `body` with a fresh temporary directory, removed afterwards however
/// `body` ends.
public func withTemporaryDirectory<T>(_ label: String = "tidemark-test", onDisk: Bool = false, _ body: (String) throws -> T) throws -> T {
    let path = try makeTemporaryDirectory(label, onDisk: onDisk)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

/// ``withTemporaryDirectory(_:onDisk:_:)`` for async tests.
public func withTemporaryDirectory<T>(_ label: String = "tidemark-test", onDisk: Bool = false,
                                      _ body: (String) async throws -> T) async throws -> T {
    let path = try makeTemporaryDirectory(label, onDisk: onDisk)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}
