/// A 128-bit XXH3 digest. Its canonical byte form is big-endian: `high` then `low`, as xxHash's
/// `XXH128_canonical_t` and `xxhsum` print it.
public struct XXH128Digest: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Reads the 16-byte canonical form. `bytes` must hold at least 16 bytes.
    public init(canonical bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= 16, "an XXH128 digest is 16 bytes")
        self.high = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        self.low = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }

    /// Writes the 16-byte canonical form at the start of `buffer`.
    public func writeCanonical(to buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= 16, "an XXH128 digest is 16 bytes")
        buffer.storeBytes(of: high.bigEndian, toByteOffset: 0, as: UInt64.self)
        buffer.storeBytes(of: low.bigEndian, toByteOffset: 8, as: UInt64.self)
    }

    public var canonicalBytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 16) { buf, count in
            writeCanonical(to: UnsafeMutableRawBufferPointer(buf))
            count = 16
        }
    }

    public var description: String { Hex.encode(canonicalBytes) }
}
