import ArgumentParser
import BargeBench
import BargeFlow
import Foundation

struct BenchGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write a sample dataset to benchmark: typed arrays, text, random bytes.",
        discussion: """
            Writes float32.bin, float64.bin and int16.bin (smooth fields with noise, like simulation \
            and instrument output), text.txt and random.bin into DIR. The data is deterministic, so \
            figures can be compared across machines. Existing files of those names are replaced.
            """
    )

    @Option(help: ArgumentHelp("Size of each file.", valueName: "size"))
    var size = "32MiB"

    @Argument(help: ArgumentHelp("Directory to write into; created if missing.", valueName: "dir"))
    var directory: String

    @Flag(help: "Print JSON: a list of objects with path, kind and bytes.") var json = false

    static let files: [(String, SampleData.Kind)] = [
        ("float32.bin", .float32), ("float64.bin", .float64), ("int16.bin", .int16), ("text.txt", .text), ("random.bin", .random),
    ]

    func run() throws {
        let bytes: Int
        do { bytes = try ByteQuantity.parseSize(size) } catch { throw ValidationError("--size: \(error)") }
        guard bytes <= 4 << 30 else { throw ValidationError("--size must be at most 4GiB") }
        let dir = URL(fileURLWithPath: directory)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        struct Written: Encodable { var path: String, kind: String, bytes: Int }
        var written: [Written] = []
        for (name, kind) in Self.files {
            let url = dir.appendingPathComponent(name)
            try Data(SampleData.generate(kind, bytes: bytes)).write(to: url, options: .atomic)
            if json { written.append(Written(path: url.path, kind: kind.rawValue, bytes: bytes)) } else { print(url.path) }
        }
        if json { print(try JSONOutput.encode(written)) }
    }
}
