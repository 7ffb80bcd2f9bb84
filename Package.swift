// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Tidemark",
    // Linux only: built and tested on Linux (Glibc). The log's file layer
    // is swift-system's FileDescriptor, but fdatasync, flock and readdir go
    // through Glibc (Sources/TidemarkLog/Syscalls.swift), and no other
    // platform is built or tested, so none is claimed.
    products: [
        .library(name: "TidemarkLog", targets: ["TidemarkLog"]),
        .library(name: "TidemarkSQLite", targets: ["TidemarkSQLite"]),
        .library(name: "TidemarkPostgres", targets: ["TidemarkPostgres"]),
        .library(name: "TidemarkCore", targets: ["TidemarkCore"]),
        .library(name: "TidemarkDemo", targets: ["TidemarkDemo"]),
        .executable(name: "tidemark", targets: ["tidemark"]),
        .executable(name: "tidemark-bench", targets: ["tidemark-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(name: "TidemarkLog", dependencies: ["CZstd", .product(name: "SystemPackage", package: "swift-system")]),
        .target(name: "TidemarkSQLite", dependencies: ["CSQLite", "TidemarkLog"]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .target(name: "TidemarkPostgres", dependencies: ["CLibPQ", "TidemarkLog"]),
        .target(name: "TidemarkCore", dependencies: ["TidemarkLog", "TidemarkSQLite", "TidemarkPostgres", "Yams"],
                // The crash-injection hooks of cutover and rollback
                // (`CrashStep`) exist in debug builds only: a release build
                // has no code that reads TIDEMARK_CRASH_AT.
                swiftSettings: [.define("TIDEMARK_CRASH_HOOKS", .when(configuration: .debug))]),
        // `tidemark demo`'s shop database and application writers (also the
        // benchmarks' and tests' workload); no demo code is in TidemarkCore.
        .target(name: "TidemarkDemo", dependencies: ["TidemarkCore", "TidemarkLog", "TidemarkSQLite", "TidemarkPostgres"]),
        .executableTarget(name: "tidemark", dependencies: [
            "TidemarkCore", "TidemarkDemo", "TidemarkLog", "TidemarkSQLite",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "tidemark-bench", dependencies: [
            "CSQLite", "TidemarkCore", "TidemarkDemo", "TidemarkLog", "TidemarkSQLite", "TidemarkPostgres", "TidemarkTestSupport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "TidemarkTestSupport", dependencies: ["TidemarkLog", "TidemarkSQLite"], path: "Tests/TidemarkTestSupport"),
        .testTarget(name: "TidemarkLogTests", dependencies: ["TidemarkLog", "TidemarkTestSupport"]),
        // A SQLite VFS that simulates power loss, for the shipper's durability tests.
        .target(name: "CPowerLossVFS", dependencies: ["CSQLite"], path: "Tests/CPowerLossVFS"),
        .testTarget(name: "TidemarkSQLiteTests", dependencies: ["TidemarkSQLite", "TidemarkLog", "TidemarkTestSupport", "CPowerLossVFS"]),
        .testTarget(name: "TidemarkCoreTests", dependencies: ["TidemarkCore", "TidemarkDemo", "TidemarkSQLite", "TidemarkLog", "TidemarkTestSupport"]),
        .testTarget(name: "TidemarkCutoverTests", dependencies: ["TidemarkCore", "TidemarkDemo", "TidemarkTestSupport"]),
        .testTarget(name: "TidemarkPostgresTests", dependencies: ["TidemarkPostgres", "TidemarkCore", "TidemarkDemo", "TidemarkSQLite", "TidemarkLog", "TidemarkTestSupport"]),
        // The command line's own pieces (progress bar, error codes), tested in-process.
        .testTarget(name: "TidemarkCLITests", dependencies: ["tidemark"]),
        // tidemark-bench's report, run as a process (the executable `swift test` builds).
        .testTarget(name: "TidemarkBenchTests", dependencies: ["TidemarkTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
