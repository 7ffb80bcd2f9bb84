import Foundation
import Testing
import TidemarkTestSupport

/// The repository documents itself: ARCHITECTURE.md names files that exist,
/// comments point inside the repository, and the benchmarks' help names no
/// issue.
@Suite("Architecture and pointers")
struct ArchitectureDocTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Every `.swift` and `.md` file ARCHITECTURE.md names in backquotes
    /// exists in the repository (so a rename that leaves it stale fails here).
    @Test func architectureNamesFilesThatExist() throws {
        let text = try String(contentsOf: Self.root.appendingPathComponent("ARCHITECTURE.md"), encoding: .utf8)
        var existing = Set<String>()
        for top in ["Sources", "Tests"] {
            let files = FileManager.default.enumerator(at: Self.root.appendingPathComponent(top), includingPropertiesForKeys: nil)?
                .compactMap { $0 as? URL } ?? []
            for f in files { existing.insert(f.path.replacingOccurrences(of: Self.root.path + "/", with: "")) }
        }
        let quoted = try Regex(#"`([^`\s]+\.(swift|md))`"#)
        let named = text.matches(of: quoted).compactMap { $0.output[1].substring.map(String.init) }
        #expect(named.count > 10, "found only \(named) in ARCHITECTURE.md")
        for name in named {
            let found = name.contains("/") ? existing.contains(name) || existing.contains(String(name.drop { $0 == "/" }))
                                           : existing.contains { $0.hasSuffix("/" + name) }
            #expect(found, "ARCHITECTURE.md names \(name), which is not in Sources/ or Tests/")
        }
    }

    /// No comment or help text in Sources/ or Tests/ points at a document
    /// outside the repository (the steering notes, an issue number).
    @Test func commentsPointInsideTheRepository() throws {
        let outside = ["DESIGN.md", "STYLE.md", "../shared", "shared/DESIGN", "issue #", "Issue #"]
        let issueNumber = try Regex(#"[Ii]ssue \d"#)
        var offenders: [String] = []
        for top in ["Sources", "Tests"] {
            let files = FileManager.default.enumerator(at: Self.root.appendingPathComponent(top), includingPropertiesForKeys: nil)?
                .compactMap { $0 as? URL }.filter { ["swift", "md"].contains($0.pathExtension) } ?? []
            for file in files where !file.path.hasSuffix("ArchitectureDocTests.swift") {
                let lines = try String(contentsOf: file, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
                for (n, line) in lines.enumerated()
                where outside.contains(where: { line.contains($0) }) || line.contains(issueNumber) {
                    offenders.append("\(file.path.replacingOccurrences(of: Self.root.path + "/", with: "")):\(n + 1): \(line.trimmingCharacters(in: .whitespaces))")
                }
            }
        }
        #expect(offenders.isEmpty, "pointers outside the repository:\n\(offenders.joined(separator: "\n"))")
    }

    /// `tidemark-bench --help` and every subcommand's help name no issue
    /// and no document outside the repository.
    @Test(.timeLimit(.minutes(10))) func benchmarkHelpNamesNoIssue() throws {
        let bench = URL(fileURLWithPath: try tidemarkExecutable()).deletingLastPathComponent().appendingPathComponent("tidemark-bench").path
        try #require(FileManager.default.isExecutableFile(atPath: bench), "no tidemark-bench beside tidemark at \(bench)")
        for sub in [[], ["log"], ["capture"], ["migrate"], ["cutover"], ["postgres"], ["transform"]] {
            let r = try runProcess(bench, sub + ["--help"], timeoutSeconds: 60)
            let text = r.stdout + r.stderr
            #expect(r.status == 0, "tidemark-bench \(sub.joined(separator: " ")) --help: \(text)")
            #expect(text.contains("USAGE"), "\(sub): \(text)")
            for word in ["issue", "Issue", "DESIGN.md", "#1", "#2"] {
                #expect(!text.contains(word), "tidemark-bench \(sub.joined(separator: " ")) --help names \(word): \(text)")
            }
        }
    }
}
