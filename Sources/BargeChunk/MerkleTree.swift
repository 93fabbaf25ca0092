import BargeDigest

/// The Merkle root over a file's (or a job's) chunk ids, in order. Leaves and inner nodes are
/// hashed with different prefixes so that no inner node can pass for a leaf:
///
/// - leaf = SHA-256(0x00 ‖ chunk id)
/// - node = SHA-256(0x01 ‖ left ‖ right); an odd node at the end of a level moves up unchanged
/// - the root of no chunks is SHA-256 of the empty string
public enum MerkleTree {
    public static func root(_ ids: [ChunkID]) -> SHA256Digest {
        let sha = SHA256Hasher()
        guard !ids.isEmpty else { return sha.finalize() }
        var level = ids.map { id in hash(sha, 0x00, id) }
        while level.count > 1 {
            var next: [SHA256Digest] = []
            next.reserveCapacity((level.count + 1) / 2)
            var i = 0
            while i + 1 < level.count {
                next.append(hash(sha, 0x01, level[i], level[i + 1]))
                i += 2
            }
            if i < level.count { next.append(level[i]) }
            level = next
        }
        return level[0]
    }

    private static func hash(_ sha: SHA256Hasher, _ prefix: UInt8, _ parts: SHA256Digest...) -> SHA256Digest {
        sha.update([prefix])
        for p in parts { sha.update(p.bytes) }
        return sha.finalize()
    }
}
