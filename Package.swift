// swift-tools-version: 6.1

import PackageDescription

/// System C libraries from Debian, found through pkg-config. `cluster/install-deps.sh` installs them.
func systemLibrary(_ name: String, pkgConfig: String, apt: [String]) -> Target {
    .systemLibrary(name: name, pkgConfig: pkgConfig, providers: [.apt(apt)])
}

let package = Package(
    name: "barge",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "barge", targets: ["barge"]),
        .library(name: "BargeDigest", targets: ["BargeDigest"]),
        .library(name: "BargeCodec", targets: ["BargeCodec"]),
        .library(name: "BargeChunk", targets: ["BargeChunk"]),
        .library(name: "BargeFlow", targets: ["BargeFlow"]),
        .library(name: "BargeBench", targets: ["BargeBench"]),
        .library(name: "BargeWire", targets: ["BargeWire"]),
        .library(name: "BargeCoordinator", targets: ["BargeCoordinator"]),
        .library(name: "BargeAgent", targets: ["BargeAgent"]),
        .library(name: "BargeStore", targets: ["BargeStore"]),
        .library(name: "BargeTier", targets: ["BargeTier"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.7.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.30.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
    ],
    targets: [
        systemLibrary("CBargeZstd", pkgConfig: "libzstd", apt: ["libzstd-dev"]),
        systemLibrary("CBargeLZ4", pkgConfig: "liblz4", apt: ["liblz4-dev"]),
        systemLibrary("CBargeXXHash", pkgConfig: "libxxhash", apt: ["libxxhash-dev"]),
        systemLibrary("CBargeCrypto", pkgConfig: "libcrypto", apt: ["libssl-dev"]),
        // The head of Linux's struct tcp_info, which glibc's header cuts short (no tcpi_min_rtt).
        .target(name: "CBargeNet"),
        .target(name: "CBargeFS"),

        .target(name: "BargeDigest", dependencies: ["CBargeXXHash", "CBargeCrypto"]),
        .target(name: "BargeCodec", dependencies: ["BargeDigest", "CBargeZstd", "CBargeLZ4"]),
        .target(name: "BargeChunk", dependencies: ["BargeDigest"]),
        .target(name: "BargeFlow"),
        .target(name: "BargeStore", dependencies: ["CBargeFS", .product(name: "GRDB", package: "GRDB.swift")]),
        .target(
            name: "BargeTier",
            dependencies: ["BargeChunk", "BargeCodec", "BargeDigest", "BargeFlow", "BargeStore", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .target(
            name: "BargeWire",
            dependencies: [
                "BargeDigest", "CBargeNet",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "BargeCoordinator",
            dependencies: [
                "BargeWire", "BargeChunk", "BargeDigest", "BargeFlow", "BargeTier", "BargeCodec", "BargeStore",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            resources: [
                .embedInCode("Dashboard/assets/index.html"),
                .embedInCode("Dashboard/assets/app.js"),
                .embedInCode("Dashboard/assets/app.css"),
            ]
        ),
        .target(
            name: "BargeAgent",
            dependencies: [
                "BargeWire", "BargeFlow", "BargeCodec", "BargeStore", "BargeDigest", "BargeChunk", "BargeTier",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(name: "BargeBench", dependencies: ["BargeCodec", "BargeDigest", "BargeChunk"]),
        .executableTarget(
            name: "barge",
            dependencies: [
                "BargeBench", "BargeCodec", "BargeFlow", "BargeWire", "BargeCoordinator", "BargeAgent", "BargeTier",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),

        .testTarget(name: "BargeDigestTests", dependencies: ["BargeDigest"]),
        .testTarget(name: "BargeCodecTests", dependencies: ["BargeCodec", "BargeDigest", "BargeBench"]),
        .testTarget(name: "BargeChunkTests", dependencies: ["BargeChunk", "BargeDigest", "BargeBench"]),
        .testTarget(name: "BargeFlowTests", dependencies: ["BargeFlow"]),
        .testTarget(name: "BargeStoreTests", dependencies: ["BargeStore", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "BargeTierTests", dependencies: ["BargeTier", "BargeStore", "BargeCodec", "BargeDigest", "BargeBench", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "BargeAgentTests", dependencies: ["BargeAgent", "BargeWire", "BargeCodec", "BargeStore", "BargeTier", "BargeBench", "BargeDigest", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(
            name: "BargeCoordinatorTests",
            dependencies: [
                "BargeCoordinator", "BargeAgent", "BargeWire",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "BargeWireTests",
            dependencies: [
                "BargeWire", "BargeDigest", "BargeBench",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "BargeCLITests", dependencies: ["barge", "BargeBench", "BargeWire", "BargeCoordinator"]),
    ]
)
