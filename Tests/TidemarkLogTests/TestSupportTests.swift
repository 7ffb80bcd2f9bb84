import Foundation
import Testing
import TidemarkTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The shared test support (Tests/TidemarkTestSupport) itself: the process
/// runner with real children and real signals, the temporary directories,
/// and that each helper is defined once across the test targets.
@Suite struct TestSupportTests {
    @Test func aChildsStatusAndBothOutputsComeBackSeparately() throws {
        let f = try runProcess("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], timeoutSeconds: 30)
        #expect(f.status == 3 && f.reason == .exit, "\(f.summary)")
        #expect(f.stdout == "out\n" && f.stderr == "err\n", "\(f.summary)")
        #expect(throws: ProcessFailure.self) { try f.succeeded("sh") }
    }

    @Test func stdinEnvironmentAndWorkingDirectoryReachTheChild() throws {
        try withTemporaryDirectory { dir in
            // More than a pipe holds both ways: neither side may block.
            let input = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let cat = try runProcess("cat", [], stdin: input, timeoutSeconds: 30)
            #expect(cat.status == 0 && cat.stdoutBytes == input, "cat returned \(cat.stdoutBytes.count) of \(input.count) bytes")
            let sh = try runProcess("/bin/sh", ["-c", "echo \"$TIDEMARK_TEST_VALUE\"; pwd"], environment: ["TIDEMARK_TEST_VALUE": "v 1"],
                                    directory: dir, timeoutSeconds: 30)
            let realDir = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
            #expect(sh.stdout == "v 1\n\(realDir)\n", "\(sh.summary)")
        }
    }

    @Test func aTimeoutKillsTheChildAndFailsWithItsOutput() throws {
        let child = Child(executable: "/bin/sh", ["-c", "echo started; echo warming >&2; exec sleep 60"])
        try child.start()
        let start = ContinuousClock.now
        let error = try #require(throws: ChildTimedOut.self) { try child.wait(timeoutSeconds: 0.5) }
        #expect((ContinuousClock.now - start).millis < 10_000)
        #expect(!child.isRunning, "the timed-out child must be killed")
        #expect(error.description.contains("started") && error.description.contains("warming"), "\(error)")
    }

    @Test func aChildStartsWithNoSignalBlockedWhateverThreadStartsIt() throws {
        // Block SIGTERM on this thread: the child must not inherit the mask.
        var term = sigset_t()
        sigemptyset(&term)
        sigaddset(&term, SIGTERM)
        var old = sigset_t()
        pthread_sigmask(SIG_BLOCK, &term, &old)
        defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
        let child = try Child.started("sleep", ["60"])
        defer { child.stopAndReap() }
        usleep(100_000)
        child.sendSignal(SIGTERM)
        let f = try child.wait(timeoutSeconds: 10)
        #expect(f.reason == .uncaughtSignal && f.status == SIGTERM, "\(f.summary)")
        #expect(f.signaled && !f.killed)
    }

    @Test func aChildThatCannotStartIsOneClearError() throws {
        let error = try #require(throws: ProcessFailure.self) { try runProcess("/nonexistent/tidemark-no-such-program", []) }
        #expect(error.description.contains("/nonexistent/tidemark-no-such-program"), "\(error)")
    }

    @Test func temporaryDirectoriesAreRemovedHoweverTheBodyEnds() throws {
        struct Stop: Error {}
        var seen = ""
        #expect(throws: Stop.self) {
            try withTemporaryDirectory { dir in
                seen = dir
                try "x".write(toFile: dir + "/file", atomically: false, encoding: .utf8)
                throw Stop()
            }
        }
        #expect(!seen.isEmpty && !FileManager.default.fileExists(atPath: seen))
        let onDisk = try withTemporaryDirectory(onDisk: true) { $0 }
        #expect(!onDisk.hasPrefix("/dev/shm") && !FileManager.default.fileExists(atPath: onDisk))
    }

    /// Each helper is defined once, in Tests/TidemarkTestSupport: no test
    /// target grows its own copy again.
    @Test func eachHelperIsDefinedOnceInTheSharedModule() throws {
        let tests = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        let shared = tests.appendingPathComponent("TidemarkTestSupport").path
        // Regular expressions; a name must start at a word boundary
        // (`restartProcess()` is not `Process()`).
        let patterns = [#"\bfunc withTemporaryDirectory\b"#, #"\bfunc makeTemporaryDirectory\b"#, #"\bProcess\(\)"#, #"\bposix_spawnp?\("#,
                        #"\bstruct Finished\b"#, #"\bclass Child\b"#, #"\bclass ChildProcess\b"#, #"\bfunc blocking\b"#,
                        #"\bstruct ChildTimedOut\b"#, #"\bclass Reaper\b"#, #"\bfunc runProcess\b"#, #"\bfunc runTidemark\b"#,
                        #"\bstruct SplitMix64\b"#, #"0xBF58_476D_1CE4_E5B9"#, #"\bfunc values\("#, #"\bfunc logRecords\b"#, #"\bfunc allRecords\b"#]
        var found: [String: [String]] = [:]
        let files = FileManager.default.enumerator(atPath: tests.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") } ?? []
        #expect(files.count > 20, "no test sources found under \(tests.path)")
        for file in files {
            let path = tests.path + "/" + file
            if URL(fileURLWithPath: path).standardizedFileURL.path == URL(fileURLWithPath: #filePath).standardizedFileURL.path { continue }  // the patterns above
            let text = try String(contentsOfFile: path, encoding: .utf8)
            for pattern in patterns where text.range(of: pattern, options: .regularExpression) != nil {
                found[pattern, default: []].append(path)
            }
        }
        for (pattern, paths) in found {
            let outside = paths.filter { !$0.hasPrefix(shared + "/") }
            #expect(outside.isEmpty, "\(pattern) outside Tests/TidemarkTestSupport: \(outside)")
        }
        for pattern in [patterns[0], patterns[3], patterns[4], patterns[5], patterns[10]] {
            #expect(found[pattern]?.count == 1, "\(pattern) in \(found[pattern] ?? [])")
        }
    }

    /// The demo lives in its own target (TidemarkDemo); the core library
    /// the command line and applications link holds none of it.
    @Test func theCoreLibraryHoldsNoDemoCode() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources").path
        let core = try FileManager.default.contentsOfDirectory(atPath: sources + "/TidemarkCore").filter { $0.hasSuffix(".swift") }
        #expect(core.count > 10, "no sources found in \(sources)/TidemarkCore")
        for file in core {
            let text = try String(contentsOfFile: sources + "/TidemarkCore/" + file, encoding: .utf8)
            for pattern in [#"\benum Demo\b"#, #"\benum DemoShop\b"#, #"\bstruct SplitMix\b"#, #"\bstartWriters\b"#] {
                #expect(text.range(of: pattern, options: .regularExpression) == nil, "\(pattern) in TidemarkCore/\(file)")
            }
        }
        let demo = try FileManager.default.contentsOfDirectory(atPath: sources + "/TidemarkDemo")
        #expect(demo.contains("Demo.swift") && demo.contains("DemoShop.swift"), "\(demo)")
    }
}
