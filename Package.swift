// swift-tools-version: 6.1
import PackageDescription

// Fuzzing builds (tools/fuzz-frames.sh, tools/fuzz-stream.sh) set TANDEM_FUZZ_SANITIZE to the sanitizers of this
// package's own modules: `fuzzer` (coverage for libFuzzer) or `fuzzer,address`. Only these modules carry
// coverage counters, and libFuzzer clears and scans every counter after each input: instrumenting the
// dependencies too (swift-nio, swift-crypto) made that scan most of the cost of an input. The fuzz targets are
// then built with FUZZING defined and linked with libFuzzer, whose driver their own entry point calls
// (tools/fuzz/FuzzerDriver).
let fuzzSanitizers = Context.environment["TANDEM_FUZZ_SANITIZE"].flatMap { $0.isEmpty ? nil : $0 }
let instrumented: [SwiftSetting] = fuzzSanitizers.map { [.unsafeFlags(["-sanitize=\($0)"])] } ?? []
let fuzzTarget: [SwiftSetting] = instrumented + (fuzzSanitizers == nil ? [] : [.define("FUZZING")])
let fuzzLinking: [LinkerSetting] =
    fuzzSanitizers.map {
        [
            .unsafeFlags([
                "-sanitize=\($0)", "-Xlinker", "--undefined=LLVMFuzzerRunDriver", "-Xlinker",
                "--export-dynamic-symbol=LLVMFuzzerRunDriver",
            ])
        ]
    } ?? []

let package = Package(
    name: "Tandem",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "LMDB", targets: ["LMDB"]),
        .library(name: "SessionStore", targets: ["SessionStore"]),
        .library(name: "FailoverLink", targets: ["FailoverLink"]),
        .library(name: "Inspection", targets: ["Inspection"]),
        .library(name: "DeviceService", targets: ["DeviceService"]),
        .executable(name: "tandem-frame-fuzzer", targets: ["tandem-frame-fuzzer"]),
        .executable(name: "tandem-stream-fuzzer", targets: ["tandem-stream-fuzzer"]),
        .executable(name: "tandem", targets: ["tandem"]),
        .executable(name: "tandem-faults", targets: ["tandem-faults"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"]), .brew(["lmdb"])]
        ),
        .target(name: "Locking", swiftSettings: instrumented),
        .target(name: "CCRC32C"),
        .target(name: "LMDB", dependencies: ["CLMDB", "Locking"], swiftSettings: instrumented),
        .target(
            name: "SessionStore",
            dependencies: [
                "LMDB",
                "Locking",
                "CCRC32C",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: instrumented
        ),
        .target(
            name: "FailoverLink",
            dependencies: [
                "SessionStore",
                "Locking",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: instrumented
        ),
        .target(name: "FuzzerDriver", path: "tools/fuzz/FuzzerDriver"),
        .executableTarget(
            name: "tandem-frame-fuzzer",
            dependencies: [
                "FailoverLink", "SessionStore", "FuzzerDriver", .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "tools/fuzz/tandem-frame-fuzzer",
            swiftSettings: fuzzTarget,
            linkerSettings: fuzzLinking
        ),
        .executableTarget(
            name: "tandem-stream-fuzzer",
            dependencies: [
                "FailoverLink",
                "Locking",
                "SessionStore",
                "FuzzerDriver",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "tools/fuzz/tandem-stream-fuzzer",
            swiftSettings: fuzzTarget,
            linkerSettings: fuzzLinking
        ),
        .target(name: "Inspection", dependencies: ["SessionStore", "LMDB"]),
        .target(
            name: "DeviceService",
            dependencies: [
                "SessionStore",
                "FailoverLink",
                "Inspection",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "tandem",
            dependencies: [
                "SessionStore",
                "DeviceService",
                "Locking",
                "Inspection",
                "FailoverLink",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "tools/tandem"
        ),
        .executableTarget(
            name: "tandem-faults",
            dependencies: [
                "SessionStore",
                "Inspection",
                "LMDB",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "tools/faults"
        ),
        .testTarget(name: "LockingTests", dependencies: ["Locking"]),
        .testTarget(name: "LMDBTests", dependencies: ["LMDB", "CLMDB", "Locking", "TestSupport"]),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(
            name: "SessionStoreTests",
            dependencies: ["SessionStore", "LMDB", "Locking", "TestSupport"],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "DeviceServiceTests",
            dependencies: [
                "DeviceService", "SessionStore", "TestSupport", .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "InspectionTests", dependencies: ["Inspection", "SessionStore", "LMDB", "TestSupport"]),
        .testTarget(
            name: "FailoverLinkTests",
            dependencies: [
                "FailoverLink",
                "DeviceService",
                "SessionStore",
                "Inspection",
                "LMDB",
                "Locking",
                "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ]
)
