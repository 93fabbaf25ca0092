// swift-tools-version: 6.1

// Benchmarks for Barge, kept in their own package (as swift-nio does) so that the main package does
// not build the benchmark harness. Run from this folder: `swift package benchmark`.

import PackageDescription

let package = Package(
    name: "barge-benchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "barge", path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: ["CodecBenchmarks", "HashBenchmarks", "ChunkerBenchmarks"].map { name in
        .executableTarget(
            name: name,
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "BargeCodec", package: "barge"),
                .product(name: "BargeChunk", package: "barge"),
                .product(name: "BargeDigest", package: "barge"),
                .product(name: "BargeBench", package: "barge"),
            ],
            path: "Benchmarks/\(name)",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    }
)
