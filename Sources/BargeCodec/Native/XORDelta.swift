/// XOR delta over N-byte elements: each element is replaced by itself XOR the element before it
/// (the first is kept). In a smooth numeric field neighbours share their sign, exponent and top
/// mantissa bits, which XOR turns into zero bytes; the `delta` filters run it before a byte shuffle.
/// Decoding is a running XOR. Trailing bytes that do not fill an element are copied unchanged.
public enum XORDelta {
    public static func encode(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, stride: Int) {
        precondition(dst.count >= src.count, "delta output too small")
        guard let s = src.baseAddress, let d = dst.baseAddress else { return }
        let n = src.count / stride
        switch stride {
        case 2:
            var prev: UInt16 = 0
            for i in 0..<n {
                let x = s.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)
                d.storeBytes(of: x ^ prev, toByteOffset: i &* 2, as: UInt16.self)
                prev = x
            }
        case 4:
            var prev: UInt32 = 0
            for i in 0..<n {
                let x = s.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)
                d.storeBytes(of: x ^ prev, toByteOffset: i &* 4, as: UInt32.self)
                prev = x
            }
        case 8:
            var prev: UInt64 = 0
            for i in 0..<n {
                let x = s.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self)
                d.storeBytes(of: x ^ prev, toByteOffset: i &* 8, as: UInt64.self)
                prev = x
            }
        default:
            preconditionFailure("delta stride \(stride)")
        }
        if n * stride < src.count { (d + n * stride).copyMemory(from: s + n * stride, byteCount: src.count - n * stride) }
    }

    /// Undoes `encode` in place.
    public static func decode(_ buffer: UnsafeMutableRawBufferPointer, stride: Int) {
        guard let b = buffer.baseAddress else { return }
        let n = buffer.count / stride
        switch stride {
        case 2:
            var prev: UInt16 = 0
            for i in 0..<n {
                prev ^= b.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)
                b.storeBytes(of: prev, toByteOffset: i &* 2, as: UInt16.self)
            }
        case 4:
            var prev: UInt32 = 0
            for i in 0..<n {
                prev ^= b.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)
                b.storeBytes(of: prev, toByteOffset: i &* 4, as: UInt32.self)
            }
        case 8:
            var prev: UInt64 = 0
            for i in 0..<n {
                prev ^= b.loadUnaligned(fromByteOffset: i &* 8, as: UInt64.self)
                b.storeBytes(of: prev, toByteOffset: i &* 8, as: UInt64.self)
            }
        default:
            preconditionFailure("delta stride \(stride)")
        }
    }
}
