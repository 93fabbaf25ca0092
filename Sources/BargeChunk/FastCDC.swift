/// FastCDC content-defined chunking (Xia et al., USENIX ATC 2016), with normalised chunking:
///
/// - a gear rolling hash, `fp = (fp << 1) + gear[byte]`, whose bit k depends on the last k+1 bytes;
/// - no cut before `minSize` (cut-point skipping), and a forced cut at `maxSize`;
/// - a stricter mask (more bits) before `avgSize` and a looser one after, which pulls chunk sizes
///   towards the average.
///
/// The masks test the top bits of the hash, which depend on the last 64 bytes or so. The gear table
/// is fixed forever (see `Gear`): changing it would move every boundary and defeat deduplication
/// against chunks stored by earlier versions.
public struct FastCDC: Hashable, Sendable {
    public let minSize: Int
    public let avgSize: Int
    public let maxSize: Int
    private let maskSmall: UInt64
    private let maskLarge: UInt64

    /// Barge's default: 512 KiB / 1 MiB / 4 MiB (restic's minimum). A minimum of half the average
    /// leaves half of each chunk unhashed: 2.7 GB/s here, against 1.9 GB/s with 256 KiB, for
    /// chunks of about the same mean size.
    public static let standard = FastCDC(minSize: 512 << 10, avgSize: 1 << 20, maxSize: 4 << 20)

    public init(minSize: Int, avgSize: Int, maxSize: Int) {
        self.minSize = minSize
        self.avgSize = avgSize
        self.maxSize = maxSize
        let bits = max(3, Int((log2(Double(max(avgSize, 8)))).rounded()))
        maskSmall = Self.topBits(min(bits + 2, 63))
        maskLarge = Self.topBits(bits - 2)
    }

    private static func topBits(_ n: Int) -> UInt64 { n <= 0 ? 0 : ~UInt64(0) << UInt64(64 - n) }

    func validate() throws(ChunkingError) {
        guard minSize >= 64, minSize < avgSize, avgSize < maxSize, maxSize <= ChunkingStrategy.maxChunkLength else {
            throw .invalidParameters(
                "FastCDC needs 64 B ≤ min < avg < max ≤ \(ChunkingStrategy.maxChunkLength) B; got \(minSize)/\(avgSize)/\(maxSize)")
        }
    }

    /// The length of the first chunk of `window` (all of it when it is no longer than `minSize`).
    ///
    /// Four bytes per step, with the same cut points as one byte at a time (`cutBytewise`): the
    /// hash after the fourth byte is `fp << 4` plus the four gear values folded together, which do
    /// not depend on `fp`, so the chain from one step to the next is a shift and an add rather
    /// than four of each. A top-bits mask is zero exactly when the hash is at most its complement,
    /// so one `min` of the four hashes tells whether any of them cuts.
    public func cut(_ window: UnsafeRawBufferPointer) -> Int {
        let n = min(window.count, maxSize)
        if n <= minSize { return n }
        let normal = min(avgSize, n)
        guard let base = window.baseAddress else { return n }
        return Gear.table.withUnsafeBufferPointer { gear in
            var fp: UInt64 = 0
            var i = minSize
            if let at = Self.scan(base, gear, &fp, &i, to: normal, limit: ~maskSmall) { return at }
            if let at = Self.scan(base, gear, &fp, &i, to: n, limit: ~maskLarge) { return at }
            return n
        }
    }

    /// Rolls the hash over bytes `i..<end`; the length up to the first byte after which the hash
    /// is at most `limit`, or nil with `fp` and `i` at `end`.
    @inline(__always)
    private static func scan(_ base: UnsafeRawPointer, _ gear: UnsafeBufferPointer<UInt64>, _ fp: inout UInt64, _ i: inout Int,
                             to end: Int, limit: UInt64) -> Int? {
        var h = fp
        var at = i
        defer { fp = h; i = at }
        while at + 4 <= end {
            let g0 = gear[Int(base.load(fromByteOffset: at, as: UInt8.self))]
            let g1 = gear[Int(base.load(fromByteOffset: at + 1, as: UInt8.self))]
            let g2 = gear[Int(base.load(fromByteOffset: at + 2, as: UInt8.self))]
            let g3 = gear[Int(base.load(fromByteOffset: at + 3, as: UInt8.self))]
            let h0 = (h &<< 1) &+ g0
            let h1 = (h &<< 2) &+ ((g0 &<< 1) &+ g1)
            let h2 = (h1 &<< 1) &+ g2
            let h3 = (h &<< 4) &+ ((((g0 &<< 1) &+ g1) &<< 2) &+ ((g2 &<< 1) &+ g3))
            if min(min(h0, h1), min(h2, h3)) <= limit {
                if h0 <= limit { return at + 1 }
                if h1 <= limit { return at + 2 }
                if h2 <= limit { return at + 3 }
                return at + 4
            }
            h = h3
            at += 4
        }
        while at < end {
            h = (h &<< 1) &+ gear[Int(base.load(fromByteOffset: at, as: UInt8.self))]
            at += 1
            if h <= limit { return at }
        }
        return nil
    }

    /// `cut` fed piece by piece: the first cut of a chunk found from only the bytes that decide
    /// it, `minSize..<cut`, read in pieces of any size. No hash reaches back before `minSize`,
    /// so the bytes before it need not be read at all: about half of each chunk with the
    /// standard sizes. The cut points are `cut`'s exactly.
    public struct Search {
        public let cdc: FastCDC
        /// The chunk's length when no cut comes first: the bytes left, up to `maxSize`.
        public let limit: Int
        /// Where in the chunk the next piece starts.
        public private(set) var position: Int
        /// The first chunk's length once known.
        public private(set) var cut: Int?
        private var fp: UInt64 = 0

        /// The search for a chunk that starts with `available` bytes left in its stream.
        public init(_ cdc: FastCDC, available: Int) {
            self.cdc = cdc
            limit = min(available, cdc.maxSize)
            position = min(cdc.minSize, limit)
            cut = limit <= cdc.minSize ? limit : nil
        }

        /// How many bytes the next piece may hold: those from `position` to `limit`.
        public var wanted: Int { cut == nil ? limit - position : 0 }

        /// Hashes `piece`, the chunk's bytes from `position` on (at most `wanted` of them are
        /// used); the chunk's length once a cut is found or `limit` is reached.
        @discardableResult
        public mutating func feed(_ piece: UnsafeRawBufferPointer) -> Int? {
            guard cut == nil, let start = piece.baseAddress, !piece.isEmpty else { return cut }
            let end = min(limit, position + piece.count)
            let normal = min(cdc.avgSize, limit)
            // `scan` indexes from the chunk's start; this piece holds its bytes from `position`.
            let base = start - position
            let (small, large) = (cdc.maskSmall, cdc.maskLarge)
            cut = Gear.table.withUnsafeBufferPointer { gear in
                if position < normal, let at = FastCDC.scan(base, gear, &fp, &position, to: min(normal, end), limit: ~small) { return at }
                if position >= normal, position < end, let at = FastCDC.scan(base, gear, &fp, &position, to: end, limit: ~large) { return at }
                return position == limit ? limit : nil
            }
            return cut
        }
    }

    /// `cut` one byte at a time, as the paper writes it: the reference `cut` is checked against.
    func cutBytewise(_ window: UnsafeRawBufferPointer) -> Int {
        let n = min(window.count, maxSize)
        if n <= minSize { return n }
        let normal = min(avgSize, n)
        guard let base = window.baseAddress else { return n }
        return Gear.table.withUnsafeBufferPointer { gear in
            var fp: UInt64 = 0
            var i = minSize
            while i < normal {
                fp = (fp &<< 1) &+ gear[Int(base.load(fromByteOffset: i, as: UInt8.self))]
                if fp & maskSmall == 0 { return i + 1 }
                i += 1
            }
            while i < n {
                fp = (fp &<< 1) &+ gear[Int(base.load(fromByteOffset: i, as: UInt8.self))]
                if fp & maskLarge == 0 { return i + 1 }
                i += 1
            }
            return n
        }
    }
}

/// The gear table: 256 values from SplitMix64 seeded with 0x6261726765 ("barge"). Part of the
/// on-disk contract, like a hash function's constants.
enum Gear {
    static let table: [UInt64] = {
        var state: UInt64 = 0x62_6172_6765
        return (0..<256).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }()
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
