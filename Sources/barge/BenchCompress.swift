import ArgumentParser
import BargeBench
import BargeCodec
import BargeFlow
import Foundation

struct BenchCompress: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compress",
        abstract: "Measure each codec's ratio and speed on your files, chunk by chunk.",
        discussion: """
            Each file (up to --max-bytes of it) is cut into --chunk-size chunks and every codec \
            encodes and decodes every chunk, as Barge's send pipeline would. Speeds are the best of \
            several passes on one core, in MB/s of uncompressed data (10^6 bytes per second). Ratios \
            count each chunk's 40-byte header.

            Codecs: none, lz4, zstd-<1..22>, a shuffle2+/shuffle4+/shuffle8+ prefix (byte shuffle for \
            typed arrays), and auto: the adaptive selector, which picks per chunk from the chunk's \
            entropy and the link rate it is told (--link-rate). On an unlimited link, storing raw \
            always wins; on a slow one, strong compression does.

            Examples:
              barge bench compress run42/*.h5
              barge bench compress --codecs zstd-3,shuffle4+zstd-1,auto --link-rate 10Gbit/s field.f32
              barge bench compress --json data.bin > bench.json
            """
    )

    @Flag(help: "Print JSON for tools instead of a table.")
    var json = false

    @Option(help: ArgumentHelp("Comma-separated codecs to run.", valueName: "list"))
    var codecs = CompressBenchOptions.defaultCodecs.map(\.description).joined(separator: ",")

    @Option(help: ArgumentHelp("Chunk size, up to 16MiB.", valueName: "size"))
    var chunkSize = "1MiB"

    @Option(help: ArgumentHelp("The link rate auto chooses for, like 1Gbit/s or 200MB/s, or 'unlimited'.", valueName: "rate"))
    var linkRate = "1Gbit/s"

    @Option(help: ArgumentHelp("Chunks auto plans to compress at once on separate cores. Default: this machine's cores, as an agent plans.", valueName: "n"))
    var parallelism = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: ArgumentHelp("Seconds of timed work per codec and file (at least two passes run).", valueName: "seconds"))
    var seconds = 1.0

    @Option(help: ArgumentHelp("Benchmark at most this much of each file, from its start.", valueName: "size"))
    var maxBytes = "512MiB"

    @Argument(help: ArgumentHelp("Files to benchmark.", valueName: "file"))
    var files: [String]

    func options() throws -> CompressBenchOptions {
        var o = CompressBenchOptions()
        o.codecs = try codecs.split(separator: ",").map { name in
            do { return try CodecChoice(name: name.trimmingCharacters(in: .whitespaces)) }
            catch { throw ValidationError("--codecs: \(error)") }
        }
        guard !o.codecs.isEmpty else { throw ValidationError("--codecs: name at least one codec") }
        do {
            o.chunkSize = try ByteQuantity.parseSize(chunkSize)
            o.maxBytesPerFile = try ByteQuantity.parseSize(maxBytes)
            o.linkRate = linkRate.lowercased() == "unlimited" ? nil : try ByteQuantity.parseRate(linkRate)
        } catch { throw ValidationError("\(error)") }
        guard (1...ChunkFormat.maxRawLength).contains(o.chunkSize) else {
            throw ValidationError("--chunk-size must be from 1 B to 16MiB")
        }
        guard o.maxBytesPerFile >= 1 else { throw ValidationError("--max-bytes must be at least 1 B") }
        guard seconds > 0, seconds <= 3600 else { throw ValidationError("--seconds must be above 0 and at most 3600") }
        o.secondsPerCodec = seconds
        guard parallelism >= 1, parallelism <= 1024 else { throw ValidationError("--parallelism must be from 1 to 1024") }
        o.parallelism = parallelism
        return o
    }

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("name at least one file to benchmark") }
        _ = try options()
    }

    func run() throws {
        let options = try options()
        // Check every file before printing anything, so a typo fails fast and alone.
        for file in files { try SampleFile.checkReadable(file) }
        let bench = try CompressBench(options: options)
        let table = BenchTable(options: options)
        if !json { print(table.preamble()) }
        let report = try bench.run(paths: files) { file in
            if !json { print(table.render(file)) }
        }
        if json {
            print(try JSONOutput.encode(report))
        } else {
            print(table.render(report.total, fileCount: report.files.count))
        }
    }
}
