// swift-tools-version: 6.1

// A libFuzzer target for the wire protocol, in its own package so that the main build never links
// it (it has no `main`: libFuzzer provides one). Build and run from this folder:
//
//   swift build -c release --sanitize fuzzer --sanitize address -Xswiftc -parse-as-library \
//     -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp
//   mkdir -p corpus && .build/release/WireFuzz corpus -max_total_time=300
//
// (SwiftPM's `--sanitize fuzzer` links libFuzzer but does not instrument Swift code for coverage
// on its own, hence the explicit -sanitize-coverage.)
//
// cluster/fuzz.sh does both and prints the executions.

import PackageDescription

let package = Package(
    name: "barge-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "barge", path: "../"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "WireFuzz",
            dependencies: [
                .product(name: "BargeWire", package: "barge"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        )
    ]
)
