import BargeBench
import Foundation

/// The demo's dataset: scientific arrays, text, random data, many small files in nested
/// directories, and the edge cases a transfer must keep (an empty file, an empty directory, a
/// symbolic link, a read-only file, unicode and odd names). Deterministic.
enum DemoDataset {
    struct Summary {
        var files = 0
        var bytes = 0
    }

    /// Large files are made in pieces of this size, so that a 64 GiB demo never holds more than
    /// one piece in memory, and Ctrl-C is seen between pieces.
    static let piece = 16 << 20

    /// Writes the dataset; throws `CancellationError` soon after the calling task is cancelled
    /// (Ctrl-C), between two files or two pieces of a large one.
    static func write(to root: URL, bytes: Int) throws -> Summary {
        let fm = FileManager.default
        try fm.createDirectory(at: root, withIntermediateDirectories: true)
        var summary = Summary()
        func put(_ relative: String, _ data: [UInt8], mode: Int = 0o644) throws {
            try Task.checkCancellation()
            let url = root.appendingPathComponent(relative)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(data).write(to: url)
            try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
            summary.files += 1
            summary.bytes += data.count
        }
        /// A large file of `kind`, piece by piece (each piece seeded from `seed` and its place).
        func putLarge(_ relative: String, _ kind: SampleData.Kind, bytes: Int, seed: UInt64) throws {
            let url = root.appendingPathComponent(relative)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            guard fm.createFile(atPath: url.path, contents: nil) else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path]) }
            let handle = try FileHandle(forWritingTo: url)
            defer { try? handle.close() }
            for (n, offset) in stride(from: 0, to: bytes, by: piece).enumerated() {
                try Task.checkCancellation()
                try handle.write(contentsOf: SampleData.generate(kind, bytes: min(piece, bytes - offset), seed: seed &* 1_000_003 &+ UInt64(n)))
            }
            summary.files += 1
            summary.bytes += bytes
        }
        // Large arrays and logs take most of the bytes; small files the rest.
        let share = max(1 << 20, bytes / 8)
        try putLarge("arrays/temperature.f32", .float32, bytes: 2 * share, seed: 1)
        try putLarge("arrays/pressure.f64", .float64, bytes: 2 * share, seed: 2)
        try putLarge("arrays/signal.i16", .int16, bytes: share, seed: 3)
        try putLarge("logs/run.log", .text, bytes: share, seed: 4)
        try putLarge("raw/detector.bin", .random, bytes: share, seed: 5)
        let small = max(1, bytes / 8)
        var rng = SplitMix64(seed: 6)
        var used = 0, i = 0
        while used < small {
            let size = Int(rng.next() % (48 << 10)) + 64
            let kind: SampleData.Kind = i % 3 == 0 ? .random : (i % 3 == 1 ? .text : .float32)
            try put("small/\(i / 100)/part-\(i).dat", SampleData.generate(kind, bytes: size, seed: UInt64(100 + i)))
            used += size
            i += 1
        }
        try put("edge/empty.txt", [])
        try put("edge/données à ü.txt", Array("unicode name\n".utf8))
        try put("edge/spaces and 'quotes' & $dollar.txt", Array("odd name\n".utf8))
        try put("edge/read-only.txt", Array("mode 0444\n".utf8), mode: 0o444)
        try put("edge/script.sh", Array("#!/bin/sh\necho hi\n".utf8), mode: 0o755)
        try fm.createDirectory(at: root.appendingPathComponent("edge/empty-dir"), withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("edge/link-to-log").path, withDestinationPath: "../logs/run.log")
        return summary
    }
}
