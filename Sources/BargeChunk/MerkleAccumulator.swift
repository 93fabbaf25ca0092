import BargeDigest

/// `MerkleTree.root` over ids that arrive one at a time, in O(log n) memory: it keeps the roots of
/// the complete subtrees so far (at most one per power of two), merging equal sizes as they meet.
/// Folding them from the right at the end gives the tree's root, because a level that pairs left
/// to right and lifts its odd last node is exactly that decomposition. Its state is a few hundred
/// bytes (`encoded`), so a long computation can be journaled and resumed.
public struct MerkleAccumulator: Sendable, Equatable {
    /// Complete subtrees, largest (leftmost) first: their root and number of leaves.
    private var stack: [(root: SHA256Digest, leaves: UInt64)] = []
    public private(set) var count: UInt64 = 0

    public init() {}

    public mutating func add(_ id: ChunkID) {
        var node = (root: Self.hash(0x00, id), leaves: UInt64(1))
        while let top = stack.last, top.leaves == node.leaves {
            stack.removeLast()
            node = (Self.hash(0x01, top.root, node.root), top.leaves * 2)
        }
        stack.append(node)
        count += 1
    }

    /// The root over every id added; SHA-256 of the empty string for none.
    public var root: SHA256Digest {
        guard var acc = stack.last?.root else { return SHA256Hasher().finalize() }
        for node in stack.dropLast().reversed() { acc = Self.hash(0x01, node.root, acc) }
        return acc
    }

    /// The state: the count, then each subtree's leaves and root.
    public var encoded: [UInt8] {
        var out: [UInt8] = []
        func put(_ v: UInt64) { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
        put(count)
        for node in stack {
            put(node.leaves)
            out += node.root.bytes
        }
        return out
    }

    /// A state from `encoded`; nil if it is not one.
    public init?(encoded bytes: [UInt8]) {
        func get(_ at: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * $1) } }
        guard bytes.count >= 8, (bytes.count - 8) % 40 == 0 else { return nil }
        count = get(0)
        var at = 8
        while at < bytes.count {
            guard let root = SHA256Digest(bytes: Array(bytes[(at + 8)..<(at + 40)])) else { return nil }
            stack.append((root, get(at)))
            at += 40
        }
        guard stack.reduce(UInt64(0), { $0 + $1.leaves }) == count else { return nil }
    }

    public static func == (a: MerkleAccumulator, b: MerkleAccumulator) -> Bool { a.encoded == b.encoded }

    private static func hash(_ prefix: UInt8, _ parts: SHA256Digest...) -> SHA256Digest {
        let sha = SHA256Hasher()
        sha.update([prefix])
        for p in parts { sha.update(p.bytes) }
        return sha.finalize()
    }
}
