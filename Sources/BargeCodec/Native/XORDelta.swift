/// XOR delta over N-byte elements: each element is replaced by itself XOR the element before it
/// (the first is kept). In a smooth numeric field neighbours share their sign, exponent and top
/// mantissa bits, which XOR turns into zero bytes; the `delta` filters run it before a byte shuffle.
/// Decoding is a running XOR. Trailing bytes that do not fill an element are copied unchanged.
public enum XORDelta {
    public static func encode(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, stride: Int) {
        precondition(dst.count >= src.count, "delta output too small")
        switch stride {
        case 2: encode(src, dst, UInt16.self)
        case 4: encode(src, dst, UInt32.self)
        case 8: encode(src, dst, UInt64.self)
        default: preconditionFailure("delta stride \(stride)")
        }
    }

    /// Undoes `encode` in place.
    public static func decode(_ buffer: UnsafeMutableRawBufferPointer, stride: Int) {
        switch stride {
        case 2: decode(buffer, UInt16.self)
        case 4: decode(buffer, UInt32.self)
        case 8: decode(buffer, UInt64.self)
        default: preconditionFailure("delta stride \(stride)")
        }
    }

    @inline(__always)
    private static func encode<Word: FixedWidthInteger>(_ src: UnsafeRawBufferPointer, _ dst: UnsafeMutableRawBufferPointer, _: Word.Type) {
        guard let s = src.baseAddress, let d = dst.baseAddress else { return }
        let width = MemoryLayout<Word>.size
        let n = src.count / width
        var prev = Word.zero
        for i in 0..<n {
            let x = s.loadUnaligned(fromByteOffset: i &* width, as: Word.self)
            d.storeBytes(of: x ^ prev, toByteOffset: i &* width, as: Word.self)
            prev = x
        }
        if n * width < src.count { (d + n * width).copyMemory(from: s + n * width, byteCount: src.count - n * width) }
    }

    @inline(__always)
    private static func decode<Word: FixedWidthInteger>(_ buffer: UnsafeMutableRawBufferPointer, _: Word.Type) {
        guard let b = buffer.baseAddress else { return }
        let width = MemoryLayout<Word>.size
        var prev = Word.zero
        for i in 0..<(buffer.count / width) {
            prev ^= b.loadUnaligned(fromByteOffset: i &* width, as: Word.self)
            b.storeBytes(of: prev, toByteOffset: i &* width, as: Word.self)
        }
    }
}
