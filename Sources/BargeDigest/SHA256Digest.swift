import CBargeCrypto

/// A 32-byte SHA-256 (or HMAC-SHA256) value. Chunk ids are SHA-256 digests of a chunk's raw bytes.
/// Stored as four big-endian words so that hashing and equality are cheap.
public struct SHA256Digest: Hashable, Sendable, CustomStringConvertible, Comparable {
    public static let byteCount = 32
    private var w0, w1, w2, w3: UInt64

    /// Reads 32 bytes. `bytes` must hold at least 32.
    public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= Self.byteCount, "a SHA-256 digest is 32 bytes")
        w0 = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        w1 = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        w2 = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        w3 = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self = bytes.withUnsafeBytes { SHA256Digest(bytes: $0) }
    }

    public init?(hex: String) {
        guard let b = Hex.decode(hex) else { return nil }
        self.init(bytes: b)
    }

    public func write(to buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Self.byteCount, "a SHA-256 digest is 32 bytes")
        buffer.storeBytes(of: w0.bigEndian, toByteOffset: 0, as: UInt64.self)
        buffer.storeBytes(of: w1.bigEndian, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: w2.bigEndian, toByteOffset: 16, as: UInt64.self)
        buffer.storeBytes(of: w3.bigEndian, toByteOffset: 24, as: UInt64.self)
    }

    public var bytes: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.byteCount) { buf, count in
            write(to: UnsafeMutableRawBufferPointer(buf))
            count = Self.byteCount
        }
    }

    public var description: String { Hex.encode(bytes) }

    /// Equality whose time does not depend on where the values differ: use it to check MACs.
    public func constantTimeEquals(_ other: SHA256Digest) -> Bool {
        let a = bytes, b = other.bytes
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in barge_memcmp_consttime(pa.baseAddress, pb.baseAddress, Self.byteCount) == 0 }
        }
    }

    /// Byte-wise (big-endian) order, so sorted ids match sorted hex strings.
    public static func < (a: SHA256Digest, b: SHA256Digest) -> Bool {
        (a.w0, a.w1, a.w2, a.w3) < (b.w0, b.w1, b.w2, b.w3)
    }
}
