import Foundation

/// Locating the programs the process-level tests run, shared by every test
/// target (each once held its own copy).

/// Where `swift build` put the `tidemark` executable: in the same build
/// directory as the test bundle (`.build/<triple>/debug/`). `swift test`
/// builds every product, so a missing executable means a partial build.
/// `TIDEMARK_EXECUTABLE` overrides the search.
public func tidemarkExecutable() throws -> String {
    try TidemarkExecutable.location.get()
}

/// A program the tests need was not found.
public struct ExecutableNotFound: Error, CustomStringConvertible {
    public let searched: [String]
    public init(searched: [String]) { self.searched = searched }
    public var description: String {
        "the tidemark executable was not found next to the test bundle (looked in \(searched.joined(separator: ", "))); build it with `swift build --product tidemark` or set TIDEMARK_EXECUTABLE"
    }
}

enum TidemarkExecutable {
    static let location: Result<String, ExecutableNotFound> = find()

    private static func find() -> Result<String, ExecutableNotFound> {
        let fm = FileManager.default
        if let path = ProcessInfo.processInfo.environment["TIDEMARK_EXECUTABLE"] {
            return fm.isExecutableFile(atPath: path) ? .success(path) : .failure(ExecutableNotFound(searched: [path]))
        }
        var starts = [URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent(),
                      Bundle.main.bundleURL.resolvingSymlinksInPath()]
        if let executable = Bundle.main.executableURL { starts.append(executable.resolvingSymlinksInPath().deletingLastPathComponent()) }
        // `swift test` from the package root.
        starts.append(URL(fileURLWithPath: fm.currentDirectoryPath).appendingPathComponent(".build/debug"))
        var searched: [String] = []
        for start in starts {
            var dir = start
            for _ in 0..<4 {
                let candidate = dir.appendingPathComponent("tidemark").path
                if !searched.contains(dir.path) { searched.append(dir.path) }
                var isDirectory: ObjCBool = false
                if fm.fileExists(atPath: candidate, isDirectory: &isDirectory), !isDirectory.boolValue,
                   fm.isExecutableFile(atPath: candidate) {
                    return .success(candidate)
                }
                dir = dir.deletingLastPathComponent()
            }
        }
        return .failure(ExecutableNotFound(searched: searched))
    }
}

/// `python3` from PATH (the README's test command installs it).
public func python3Executable() throws -> String {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let candidate = String(dir) + "/python3"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw ExecutableNotFound(searched: ["$PATH (python3)"])
}
