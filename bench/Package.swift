// swift-tools-version: 6.1
import Foundation
import PackageDescription

// The Tandem package is the parent directory; its identity is that directory's name.
let tandem = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

let package = Package(
    name: "TandemBench",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: tandem.path),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "tandem-bench",
            dependencies: [
                .product(name: "SessionStore", package: tandem.lastPathComponent),
                .product(name: "FailoverLink", package: tandem.lastPathComponent),
                .product(name: "Inspection", package: tandem.lastPathComponent),
                .product(name: "LMDB", package: tandem.lastPathComponent),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        )
    ]
)
