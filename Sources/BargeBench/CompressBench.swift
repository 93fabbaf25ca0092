import BargeCodec
import BargeDigest

public struct CompressBenchOptions: Sendable {
    public static let defaultCodecs: [CodecChoice] = [.fixed(.none), .fixed(.lz4), .fixed(.zstd(1)), .fixed(.zstd(3)), .auto]

    public var codecs = CompressBenchOptions.defaultCodecs
    public var chunkSize = 1 << 20
    /// The send rate `auto` is modelled for (bytes per second); nil models an unlimited link, on
    /// which storing raw always wins.
    public var linkRate: Double? = 125e6
    /// Chunks `auto` is modelled to compress at once on separate cores (an agent: its streams, up
    /// to its cores). The measured speeds stay those of one core.
    public var parallelism = 1
    /// Timed work per codec and file; passes repeat until it is spent (at least `minPasses`).
    public var secondsPerCodec = 1.0
    public var minPasses = 2
    public var maxPasses = 50
    public var maxBytesPerFile = 512 << 20

    public init() {}
}

public enum BenchError: Error, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case roundTripFailed(codec: String, path: String, chunk: Int)
    case invalidOptions(String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        case .roundTripFailed(let codec, let path, let chunk): "\(codec) did not round-trip chunk \(chunk) of \(path)"
        case .invalidOptions(let why): why
        }
    }
}

/// `barge bench compress`: every codec on every file, chunk by chunk, as the send pipeline would
/// encode them. Encode and decode times are the best of several passes (as `zstd -b` reports).
/// Times exclude reading the file and the XXH3-128 of each chunk, which the pipeline computes
/// before encoding anyway; each chunk's round trip is verified against it after timing.
public struct CompressBench {
    public let options: CompressBenchOptions
    private let auto: AdaptiveEncoder
    private let encoder = ChunkEncoder()
    private let decoder = ChunkDecoder()

    public init(options: CompressBenchOptions) throws(BenchError) {
        guard options.chunkSize >= 1, options.chunkSize <= ChunkFormat.maxRawLength else {
            throw .invalidOptions("chunk size must be 1 B to \(ChunkFormat.maxRawLength) B")
        }
        self.options = options
        // One selector for the whole run, as one agent keeps one for a whole transfer.
        auto = AdaptiveEncoder(sendRate: options.linkRate, parallelism: Double(options.parallelism))
    }

    public func run(paths: [String], onFile: (FileResult) -> Void = { _ in }) throws -> CompressBenchReport {
        var files: [FileResult] = []
        var totals: [String: Measurement] = [:]
        var selectorNs: UInt64 = 0, zstd1Ns: UInt64 = 0, selectorChunks = 0
        for path in paths {
            let (data, truncated) = try SampleFile.read(path, limit: options.maxBytesPerFile)
            let chunks = ChunkedData(data, chunkSize: options.chunkSize)
            var results: [CodecResult] = []
            for codec in options.codecs {
                let m = try measure(codec, chunks, path: path)
                results.append(m.result(codec.description))
                totals[codec.description, default: Measurement(isAuto: codec == .auto)].add(m)
            }
            if options.codecs.contains(.auto) {
                let o = selectorOverhead(chunks)
                selectorNs += o.selector
                zstd1Ns += o.zstd1
                selectorChunks += chunks.count
            }
            let file = FileResult(path: path, bytes: data.count, results: results, truncated: truncated ? true : nil)
            onFile(file)
            files.append(file)
        }
        let totalResults = options.codecs.map { codec in
            (totals[codec.description] ?? Measurement(isAuto: codec == .auto)).result(codec.description)
        }
        let selector = selectorChunks == 0 ? nil : SelectorOverhead(
            microsPerChunk: Double(selectorNs) / 1e3 / Double(selectorChunks),
            percentOfZstd1: zstd1Ns == 0 ? 0 : 100 * Double(selectorNs) / Double(zstd1Ns))
        return CompressBenchReport(
            files: files, total: TotalResult(bytes: files.reduce(0) { $0 + $1.bytes }, results: totalResults, selector: selector),
            chunkSize: options.chunkSize, linkRateBytesPerSecond: options.linkRate)
    }

    /// One codec's figures on one file, or summed over files (speeds from the summed best times).
    struct Measurement {
        var encodedBytes = 0
        var rawBytes = 0
        var compressNs: UInt64 = 0
        var decompressNs: UInt64 = 0
        /// Codec written → (chunks, raw bytes).
        var mix: [String: (Int, Int)] = [:]
        var isAuto: Bool

        mutating func add(_ other: Measurement) {
            encodedBytes += other.encodedBytes
            rawBytes += other.rawBytes
            compressNs += other.compressNs
            decompressNs += other.decompressNs
            for (codec, (chunks, bytes)) in other.mix {
                mix[codec, default: (0, 0)].0 += chunks
                mix[codec, default: (0, 0)].1 += bytes
            }
        }

        func result(_ codec: String) -> CodecResult {
            func mbps(_ ns: UInt64) -> Double { ns == 0 ? 0 : (Double(rawBytes) / (Double(ns) / 1e9) / 1e6 * 10).rounded() / 10 }
            return CodecResult(
                codec: codec,
                ratio: encodedBytes == 0 ? 1 : (Double(rawBytes) / Double(encodedBytes) * 10_000).rounded() / 10_000,
                encodedBytes: encodedBytes,
                compressMbps: mbps(compressNs), decompressMbps: mbps(decompressNs),
                mix: isAuto ? mix.map { CodecResult.MixEntry(codec: $0.key, chunks: $0.value.0, bytes: $0.value.1) }
                    .sorted { ($0.bytes, $0.codec) > ($1.bytes, $1.codec) } : nil)
        }
    }

    private func measure(_ codec: CodecChoice, _ chunks: ChunkedData, path: String) throws -> Measurement {
        let out = EncodedChunks(chunks)
        defer { out.deallocate() }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, options.chunkSize), alignment: 64)
        defer { scratch.deallocate() }
        var bestCompress = UInt64.max, bestDecompress = UInt64.max
        var decisions: [CodecDecision] = []
        var passes = 0
        let budget = UInt64(options.secondsPerCodec * 1e9)
        var spent: UInt64 = 0
        while passes < options.minPasses || (spent < budget && passes < options.maxPasses) {
            decisions.removeAll(keepingCapacity: true)
            let t0 = MonotonicClock.now()
            for i in 0..<chunks.count {
                switch codec {
                case .auto:
                    let (h, d) = try auto.encode(chunks[i], digest: chunks.digests[i], into: out.slot(i))
                    out.lengths[i] = h.encodedLength
                    decisions.append(d)
                case .fixed(let spec):
                    out.lengths[i] = try encoder.encode(chunks[i], as: spec, digest: chunks.digests[i], into: out.slot(i)).encodedLength
                }
            }
            let t1 = MonotonicClock.now()
            for i in 0..<chunks.count {
                let c0 = codec == .auto ? MonotonicClock.now() : 0
                try decoder.decode(out.encoded(i), into: scratch, verify: false)
                if codec == .auto { auto.recordDecode(decisions[i], rawLength: chunks[i].count, nanoseconds: MonotonicClock.now() - c0) }
            }
            let t2 = MonotonicClock.now()
            bestCompress = min(bestCompress, t1 - t0)
            bestDecompress = min(bestDecompress, t2 - t1)
            spent += t2 - t0
            passes += 1
        }
        // Verify the last pass's output against each chunk's digest and bytes, untimed.
        var mix: [String: (Int, Int)] = [:]
        for i in 0..<chunks.count {
            let header = try decoder.decode(out.encoded(i), into: scratch, verify: true)
            guard memcmp(scratch.baseAddress!, chunks[i].baseAddress!, chunks[i].count) == 0 else {
                throw BenchError.roundTripFailed(codec: codec.description, path: path, chunk: i)
            }
            mix[header.spec.description, default: (0, 0)].0 += 1
            mix[header.spec.description, default: (0, 0)].1 += chunks[i].count
        }
        return Measurement(encodedBytes: out.lengths.reduce(0, +), rawBytes: chunks.totalBytes,
                           compressNs: chunks.count == 0 ? 0 : bestCompress, decompressNs: chunks.count == 0 ? 0 : bestDecompress,
                           mix: mix, isAuto: codec == .auto)
    }

    /// The selector's cost (sampling and choosing, no encoding) against zstd-1's encode time on
    /// the same chunks, in the send pipeline's order: each chunk is hashed (which brings it into
    /// cache), then sampled, then encoded. Best of five passes each.
    private func selectorOverhead(_ chunks: ChunkedData) -> (selector: UInt64, zstd1: UInt64) {
        let probe = AdaptiveEncoder(sendRate: options.linkRate, parallelism: Double(options.parallelism))
        let out = EncodedChunks(chunks)
        defer { out.deallocate() }
        var bestSelector = UInt64.max, bestZstd = UInt64.max
        for _ in 0..<5 {
            var selector: UInt64 = 0, zstd: UInt64 = 0
            for i in 0..<chunks.count {
                blackHole(XXH3.hash128(chunks[i]).low)
                let t0 = MonotonicClock.now()
                _ = probe.choose(chunks[i])
                let t1 = MonotonicClock.now()
                _ = try? encoder.encode(chunks[i], as: .zstd(1), digest: chunks.digests[i], into: out.slot(i))
                let t2 = MonotonicClock.now()
                selector += t1 - t0
                zstd += t2 - t1
            }
            bestSelector = min(bestSelector, selector)
            bestZstd = min(bestZstd, zstd)
        }
        return (bestSelector, bestZstd)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
