import TidemarkTestSupport
import Foundation
import Testing
@testable import TidemarkCore

extension CutoverTests {
    /// The crash-injection hook: a closed set of named steps, read only in
    /// debug builds.
    @Suite struct CrashHooks {
        /// The names crash tests pass in `TIDEMARK_CRASH_AT` are exactly the
        /// steps' raw values (a renamed case must not silently disarm a test).
        @Test func stepNamesArePinned() {
            #expect(CrashStep.allCases.map(\.rawValue) == [
                "reverse-capture", "locked", "prepared", "guarded", "switched", "swapped",
                "rollback-fenced", "rollback-shipped", "rollback-applied", "rollback-switched",
            ])
            for step in CrashStep.allCases { #expect((try? CrashStep.named(step.rawValue)) == step) }
        }

        /// Unset or empty: no step. A name that is no step is an error
        /// naming the valid ones, not a hook that never fires.
        @Test func unknownNamesAreRefused() throws {
            #expect(try CrashStep.named(nil) == nil)
            #expect(try CrashStep.named("") == nil)
            do {
                _ = try CrashStep.named("lockd")
                Issue.record("a misspelt step was accepted")
            } catch {
                #expect(error.message.contains("TIDEMARK_CRASH_AT=lockd names no crash step"), "\(error)")
                #expect(error.message.contains("rollback-switched"), "\(error)")
            }
        }

        /// A real cutover run with a misspelt step stops with one line
        /// (exit 70) at the first hook, having switched nothing: the source
        /// stays authoritative and a plain retry cuts over.
        @Test(.timeLimit(.minutes(10))) func aMisspeltStepStopsTheDebugBinaryBeforeAnySwitch() async throws {
            try await withTemporaryDirectory { root in
                let s = try Scenario.create(root: root, layout: .reshaped, items: 50, batches: 10)
                let migrated = try await tidemark(["migrate"] + s.planArguments)
                try #require(migrated.status == 0, "migrate: \(migrated.summary)")
                let bad = try await tidemark(["cutover", "--skip-verify"] + s.planArguments, environment: ["TIDEMARK_CRASH_AT": "lockd"])
                #expect(bad.status == 70, "\(bad.summary)")
                #expect(bad.stderr.contains("TIDEMARK_CRASH_AT=lockd names no crash step"), "\(bad.summary)")
                #expect(try s.switchRecordLSN() == nil, "a switch record after the refused run")
                let retry = try await tidemark(["cutover", "--skip-verify", "--json"] + s.planArguments)
                _ = try expectCutoverJSON(retry)
            }
        }

        /// Release builds must not read the variable. Structurally: every
        /// line of Sources/ that names it lies inside `#if
        /// TIDEMARK_CRASH_HOOKS`, and Package.swift sets that condition for
        /// the debug configuration only.
        @Test func onlyDebugBuildsReadTheEnvironment() throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let manifest = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
            #expect(manifest.contains(#".define("TIDEMARK_CRASH_HOOKS", .when(configuration: .debug))"#))
            var naming: [String] = []
            let sources = root.appendingPathComponent("Sources")
            let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)?
                .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" } ?? []
            #expect(!files.isEmpty, "no sources under \(sources.path)")
            for file in files {
                let lines = try String(contentsOf: file, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
                // The stack of open #if blocks: whether each is the hooks' condition (and not in its #else).
                var open: [Bool] = []
                for (n, raw) in lines.enumerated() {
                    let line = raw.trimmingCharacters(in: .whitespaces)
                    if line.hasPrefix("#if ") {
                        open.append(line == "#if TIDEMARK_CRASH_HOOKS")
                    } else if line.hasPrefix("#else") || line.hasPrefix("#elseif") {
                        if !open.isEmpty { open[open.count - 1] = false }
                    } else if line.hasPrefix("#endif") {
                        _ = open.popLast()
                    } else if !line.hasPrefix("//"), line.contains(#""TIDEMARK_CRASH_AT""#) || line.contains(#""TIDEMARK_CUTOVER_STEP_DELAY_MS""#) {
                        naming.append("\(file.lastPathComponent):\(n + 1)")
                        #expect(open.contains(true), "\(file.lastPathComponent):\(n + 1) reads a crash hook variable outside #if TIDEMARK_CRASH_HOOKS: \(line)")
                    }
                }
            }
            #expect(!naming.isEmpty, "found no code reading TIDEMARK_CRASH_AT at all: the check looked in the wrong place")
        }
    }
}
