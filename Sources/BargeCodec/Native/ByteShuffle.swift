/// Byte shuffle and unshuffle, as Blosc does: for a stride of N, the input is read as N-byte
/// elements, and byte k of every element goes to plane k. The planes of a typed numeric array
/// (sign and exponent bytes in one plane, noisy low mantissa bytes in another) compress much better
/// than the interleaved original. Trailing bytes that do not fill an element are copied as they are.
///
/// The loops work on blocks of eight elements: each plane gets one 8-byte store per block, and
/// each block of elements one contiguous store. A switch on literal strides inlines one copy of
/// each loop per stride so that the inner loops unroll; an earlier generic version was left
/// unspecialised in the package build and ran at a tenth of the speed (seen with callgrind).
public enum ByteShuffle {
    public static func shuffle(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, stride: Int) {
        precondition(dst.count >= src.count, "shuffle output too small")
        switch stride {
        case 2: shuffle(src, dst, 2)
        case 4: shuffle(src, dst, 4)
        case 8: shuffle(src, dst, 8)
        default: preconditionFailure("shuffle stride \(stride)")
        }
    }

    public static func unshuffle(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, stride: Int) {
        precondition(dst.count >= src.count, "unshuffle output too small")
        switch stride {
        case 2: unshuffle(src, dst, 2)
        case 4: unshuffle(src, dst, 4)
        case 8: unshuffle(src, dst, 8)
        default: preconditionFailure("shuffle stride \(stride)")
        }
    }

    @inline(__always)
    private static func shuffle(_ src: UnsafeRawBufferPointer, _ dst: UnsafeMutableRawBufferPointer, _ stride: Int) {
        guard let s = src.baseAddress, let d = dst.baseAddress else { return }
        let n = src.count / stride
        let blocks = n / 8
        for b in 0..<blocks {
            let i = b &* 8
            for k in 0..<stride {
                var plane: UInt64 = 0
                for e in 0..<8 {
                    plane |= UInt64(s.load(fromByteOffset: (i &+ e) &* stride &+ k, as: UInt8.self)) &<< UInt64(e &* 8)
                }
                d.storeBytes(of: plane.littleEndian, toByteOffset: k &* n &+ i, as: UInt64.self)
            }
        }
        for i in (blocks * 8)..<n {
            for k in 0..<stride {
                d.storeBytes(of: s.load(fromByteOffset: i &* stride &+ k, as: UInt8.self), toByteOffset: k &* n &+ i, as: UInt8.self)
            }
        }
        copyTail(s, d, from: n * stride, count: src.count)
    }

    @inline(__always)
    private static func unshuffle(_ src: UnsafeRawBufferPointer, _ dst: UnsafeMutableRawBufferPointer, _ stride: Int) {
        guard let s = src.baseAddress, let d = dst.baseAddress else { return }
        let n = src.count / stride
        let blocks = n / 8
        for b in 0..<blocks {
            let i = b &* 8
            let out = d + i &* stride
            for k in 0..<stride {
                let plane = UInt64(littleEndian: s.loadUnaligned(fromByteOffset: k &* n &+ i, as: UInt64.self))
                for e in 0..<8 {
                    out.storeBytes(of: UInt8(truncatingIfNeeded: plane &>> UInt64(e &* 8)), toByteOffset: e &* stride &+ k, as: UInt8.self)
                }
            }
        }
        for i in (blocks * 8)..<n {
            for k in 0..<stride {
                d.storeBytes(of: s.load(fromByteOffset: k &* n &+ i, as: UInt8.self), toByteOffset: i &* stride &+ k, as: UInt8.self)
            }
        }
        copyTail(s, d, from: n * stride, count: src.count)
    }

    @inline(__always)
    private static func copyTail(_ s: UnsafeRawPointer, _ d: UnsafeMutableRawPointer, from start: Int, count: Int) {
        if start < count { (d + start).copyMemory(from: s + start, byteCount: count - start) }
    }
}
