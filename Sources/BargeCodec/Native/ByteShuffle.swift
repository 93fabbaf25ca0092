/// Byte shuffle and unshuffle, as Blosc does: for a stride of N, the input is read as N-byte
/// elements, and byte k of every element goes to plane k. The planes of a typed numeric array
/// (sign and exponent bytes in one plane, noisy low mantissa bytes in another) compress much better
/// than the interleaved original. Trailing bytes that do not fill an element are copied as they are.
public enum ByteShuffle {
    public static func shuffle(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, stride: Int) {
        precondition(dst.count >= src.count)
        switch stride {
        case 2: transpose(src, dst, UInt16.self, forward: true)
        case 4: transpose(src, dst, UInt32.self, forward: true)
        case 8: transpose(src, dst, UInt64.self, forward: true)
        default: preconditionFailure("shuffle stride \(stride)")
        }
    }

    public static func unshuffle(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, stride: Int) {
        precondition(dst.count >= src.count)
        switch stride {
        case 2: transpose(src, dst, UInt16.self, forward: false)
        case 4: transpose(src, dst, UInt32.self, forward: false)
        case 8: transpose(src, dst, UInt64.self, forward: false)
        default: preconditionFailure("shuffle stride \(stride)")
        }
    }

    /// One generic body, specialised per element width so that the inner loop over the bytes of an
    /// element unrolls. Elements are read and written little-endian, so the plane order is the
    /// memory order on every host.
    @inline(__always)
    private static func transpose<Word: FixedWidthInteger & UnsignedInteger>(
        _ src: UnsafeRawBufferPointer, _ dst: UnsafeMutableRawBufferPointer, _: Word.Type, forward: Bool
    ) {
        let width = MemoryLayout<Word>.size
        let elements = src.count / width
        guard let s = src.baseAddress, let d = dst.baseAddress else { return }
        if forward {
            for i in 0..<elements {
                let word = Word(littleEndian: s.loadUnaligned(fromByteOffset: i &* width, as: Word.self))
                for k in 0..<width {
                    d.storeBytes(of: UInt8(truncatingIfNeeded: word >> (k &* 8)), toByteOffset: k &* elements &+ i, as: UInt8.self)
                }
            }
        } else {
            for i in 0..<elements {
                var word = Word.zero
                for k in 0..<width {
                    word |= Word(s.load(fromByteOffset: k &* elements &+ i, as: UInt8.self)) << (k &* 8)
                }
                d.storeBytes(of: word.littleEndian, toByteOffset: i &* width, as: Word.self)
            }
        }
        let tail = elements * width
        if tail < src.count {
            (d + tail).copyMemory(from: s + tail, byteCount: src.count - tail)
        }
    }
}
