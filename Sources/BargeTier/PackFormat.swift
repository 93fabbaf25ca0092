/// The byte layout of a cold-store pack file (`docs/cold-store.md` is the specification):
///
///     header (16) | blob … | index | trailer (24)
///
/// Integers are little-endian. A blob is one encoded chunk in Barge's chunk format
/// (`docs/chunk-format.md`); in an encrypted store it is `nonce (12) | AES-256-GCM ciphertext |
/// tag (16)` with the chunk's id as additional data. The index lists every blob (48 bytes each:
/// id, offset, stored length, raw length), sealed the same way in an encrypted store with
/// `BARGIDX1` as additional data; the trailer says where the index is. A pack is named by the
/// SHA-256 of all its bytes, so a reader can check it whole.
public enum PackFormat {
    public static let headerMagic: [UInt8] = Array("BARGPACK".utf8)
    public static let trailerMagic: [UInt8] = Array("BARGIDX1".utf8)
    public static let version: UInt8 = 1
    public static let headerLength = 16
    public static let trailerLength = 24
    public static let entryLength = 48
    public static let encryptedFlag: UInt8 = 0x01
    /// Packs are sealed once they pass this size (about 64 MiB, as the issue and restic suggest).
    public static let targetPackBytes = 64 << 20

    /// One blob in the index.
    public struct Entry: Sendable, Hashable {
        /// SHA-256 of the raw chunk; in an encrypted store, HMAC-SHA256 of that under the id key.
        public var id: [UInt8]
        public var offset: UInt64
        public var stored: UInt32
        public var raw: UInt32

        public init(id: [UInt8], offset: UInt64, stored: UInt32, raw: UInt32) {
            self.id = id
            self.offset = offset
            self.stored = stored
            self.raw = raw
        }
    }

    public static func header(encrypted: Bool) -> [UInt8] {
        headerMagic + [version, encrypted ? encryptedFlag : 0] + [UInt8](repeating: 0, count: 6)
    }

    /// Whether the pack is encrypted, or an error naming what is wrong with its header.
    public static func parseHeader(_ bytes: [UInt8]) throws -> Bool {
        guard bytes.count == headerLength, Array(bytes[0..<8]) == headerMagic else { throw ColdStoreError.damaged("not a Barge pack (bad header magic)") }
        guard bytes[8] == version else { throw ColdStoreError.damaged("pack version \(bytes[8]), this build reads version \(version)") }
        guard bytes[9] & ~encryptedFlag == 0, bytes[10..<16].allSatisfy({ $0 == 0 }) else { throw ColdStoreError.damaged("unknown pack flags") }
        return bytes[9] & encryptedFlag != 0
    }

    public static func encode(_ entries: [Entry]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(entries.count * entryLength)
        for e in entries {
            precondition(e.id.count == 32)
            out += e.id
            out += le(e.offset, 8) + le(UInt64(e.stored), 4) + le(UInt64(e.raw), 4)
        }
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws -> [Entry] {
        guard bytes.count % entryLength == 0 else { throw ColdStoreError.damaged("the pack index is \(bytes.count) bytes, not a multiple of \(entryLength)") }
        var entries: [Entry] = []
        entries.reserveCapacity(bytes.count / entryLength)
        var i = 0
        while i < bytes.count {
            entries.append(Entry(id: Array(bytes[i..<i + 32]), offset: readLE(bytes, i + 32, 8),
                                 stored: UInt32(readLE(bytes, i + 40, 4)), raw: UInt32(readLE(bytes, i + 44, 4))))
            i += entryLength
        }
        return entries
    }

    public static func trailer(indexOffset: UInt64, indexLength: UInt32, count: UInt32) -> [UInt8] {
        le(indexOffset, 8) + le(UInt64(indexLength), 4) + le(UInt64(count), 4) + trailerMagic
    }

    public static func parseTrailer(_ bytes: [UInt8], fileSize: UInt64) throws -> (indexOffset: UInt64, indexLength: Int, count: Int) {
        guard bytes.count == trailerLength, Array(bytes[16..<24]) == trailerMagic else { throw ColdStoreError.damaged("not a Barge pack (bad trailer magic)") }
        let offset = readLE(bytes, 0, 8), length = readLE(bytes, 8, 4), count = readLE(bytes, 12, 4)
        guard offset >= UInt64(headerLength), fileSize >= UInt64(trailerLength), offset <= fileSize - UInt64(trailerLength),
              length == fileSize - UInt64(trailerLength) - offset else {
            throw ColdStoreError.damaged("the pack trailer points outside the file")
        }
        return (offset, Int(length), Int(count))
    }

    static func le(_ value: UInt64, _ width: Int) -> [UInt8] { (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    static func readLE(_ bytes: [UInt8], _ at: Int, _ width: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<width { v |= UInt64(bytes[at + k]) << (8 * k) }
        return v
    }
}

public struct ColdStoreError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
    /// How every error about damage in the store begins: a file a promotion leaves cold for it
    /// is reported as not moved (exit status 2), not as merely left where it was.
    public static let damagedPrefix = "damaged cold store: "
    static func damaged(_ what: String) -> ColdStoreError { ColdStoreError(damagedPrefix + what) }
}
