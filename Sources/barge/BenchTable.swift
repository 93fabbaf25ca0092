import BargeBench
import BargeFlow

/// The people-facing rendering of `bench compress`.
struct BenchTable {
    let options: CompressBenchOptions

    func preamble() -> String {
        let link = options.linkRate.map { "a \(ByteQuantity.formatRate($0)) link" } ?? "an unlimited link"
        return """
            Chunks of \(ByteQuantity.formatSize(Double(options.chunkSize))); auto chooses for \(link) (--link-rate) and \(options.parallelism) chunk(s) compressed at once (--parallelism).
            Speeds: best pass on one core, MB/s of uncompressed data. Ratios include chunk headers.
            """
    }

    func render(_ file: FileResult) -> String {
        let note = file.truncated == true ? " (first \(ByteQuantity.formatSize(Double(file.bytes))) only)" : ""
        return "\n\(file.path)  \(ByteQuantity.formatSize(Double(file.bytes)))\(note)\n" + rows(file.results)
    }

    func render(_ total: TotalResult, fileCount: Int) -> String {
        var out = ""
        if fileCount > 1 {
            out += "\nAll \(fileCount) files  \(ByteQuantity.formatSize(Double(total.bytes)))\n" + rows(total.results)
        }
        if let s = total.selector {
            out += "\nauto's selector: \(ByteQuantity.format(s.microsPerChunk, digits: 1)) µs per chunk, "
                + "\(ByteQuantity.format(s.percentOfZstd1, digits: 2))% of zstd-1's time on the same chunks"
        }
        return out
    }

    private func rows(_ results: [CodecResult]) -> String {
        let width = max(8, results.map(\.codec.count).max() ?? 0)
        var lines = ["  " + pad("codec", width) + "   ratio  compress  decompress"]
        for r in results {
            var line = "  " + pad(r.codec, width) + " " + left(ByteQuantity.format(r.ratio, digits: 3), 7)
                + " " + left(ByteQuantity.format(r.compressMbps, digits: 1), 9)
                + " " + left(ByteQuantity.format(r.decompressMbps, digits: 1), 11)
            if let mix = r.mix {
                let total = max(1, mix.reduce(0) { $0 + $1.bytes })
                line += "   " + mix.map { "\($0.codec) \(ByteQuantity.format(100 * Double($0.bytes) / Double(total), digits: 0))%" }
                    .joined(separator: ", ")
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }

    private func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
    private func left(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
}
