/// Filters that work on the byte planes a byte shuffle makes (`ByteShuffle`): a plane is the n
/// bytes at the same position of every element, n = count / stride; the bytes after the last
/// whole element are not in any plane and stay as they are.
///
/// - **Bit shuffle** (Blosc's BITSHUFFLE): within each byte plane, groups of 8 bytes are
///   transposed as 8 × 8 bit matrices, so that plane k becomes 8 bit planes of n / 8 bytes each
///   (bit 0 of every byte first); the last n mod 8 bytes of a plane follow its bit planes as they
///   are. Sign and exponent bits that rarely change become long runs.
/// - **Byte delta** (Blosc2's BYTEDELTA): within each byte plane, every byte but the first is
///   replaced by its difference (mod 256) from the one before. Smooth fields' high planes become
///   mostly zeros.
public enum PlaneFilters {
    /// The 8 × 8 bit transpose of the 8 bytes in `x` (byte i, bit j → byte j, bit i); its own inverse.
    @inline(__always)
    static func transpose8(_ x: UInt64) -> UInt64 {
        var x = x
        var t = (x ^ (x &>> 7)) & 0x00AA_00AA_00AA_00AA
        x = x ^ t ^ (t &<< 7)
        t = (x ^ (x &>> 14)) & 0x0000_CCCC_0000_CCCC
        x = x ^ t ^ (t &<< 14)
        t = (x ^ (x &>> 28)) & 0x0000_0000_F0F0_F0F0
        x = x ^ t ^ (t &<< 28)
        return x
    }

    /// Bit-shuffles each plane of `src` (already byte-shuffled with `stride`) into `dst`.
    public static func bitShuffle(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, stride: Int) {
        precondition(dst.count >= src.count)
        guard let s = src.baseAddress, let d = dst.baseAddress else { return }
        let n = src.count / stride
        let groups = n / 8
        for k in 0..<stride {
            let plane = k &* n
            for j in 0..<groups {
                let t = transpose8(UInt64(littleEndian: s.loadUnaligned(fromByteOffset: plane &+ j &* 8, as: UInt64.self)))
                for b in 0..<8 {
                    d.storeBytes(of: UInt8(truncatingIfNeeded: t &>> UInt64(b &* 8)), toByteOffset: plane &+ b &* groups &+ j, as: UInt8.self)
                }
            }
            for r in (groups &* 8)..<n { d.storeBytes(of: s.load(fromByteOffset: plane &+ r, as: UInt8.self), toByteOffset: plane &+ r, as: UInt8.self) }
        }
        for r in (n &* stride)..<src.count { d.storeBytes(of: s.load(fromByteOffset: r, as: UInt8.self), toByteOffset: r, as: UInt8.self) }
    }

    /// The inverse of `bitShuffle`.
    public static func bitUnshuffle(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, stride: Int) {
        precondition(dst.count >= src.count)
        guard let s = src.baseAddress, let d = dst.baseAddress else { return }
        let n = src.count / stride
        let groups = n / 8
        for k in 0..<stride {
            let plane = k &* n
            for j in 0..<groups {
                var t: UInt64 = 0
                for b in 0..<8 {
                    t |= UInt64(s.load(fromByteOffset: plane &+ b &* groups &+ j, as: UInt8.self)) &<< UInt64(b &* 8)
                }
                d.storeBytes(of: transpose8(t).littleEndian, toByteOffset: plane &+ j &* 8, as: UInt64.self)
            }
            for r in (groups &* 8)..<n { d.storeBytes(of: s.load(fromByteOffset: plane &+ r, as: UInt8.self), toByteOffset: plane &+ r, as: UInt8.self) }
        }
        for r in (n &* stride)..<src.count { d.storeBytes(of: s.load(fromByteOffset: r, as: UInt8.self), toByteOffset: r, as: UInt8.self) }
    }

    /// Byte delta of each plane, in place.
    public static func byteDelta(_ buffer: UnsafeMutableRawBufferPointer, stride: Int) {
        guard let p = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let n = buffer.count / stride
        for k in 0..<stride {
            let plane = p + k &* n
            var i = n &- 1
            while i > 0 {
                plane[i] = plane[i] &- plane[i &- 1]
                i &-= 1
            }
        }
    }

    /// The inverse of `byteDelta`, in place: a running sum per plane.
    public static func byteUndelta(_ buffer: UnsafeMutableRawBufferPointer, stride: Int) {
        guard let p = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let n = buffer.count / stride
        for k in 0..<stride {
            let plane = p + k &* n
            var previous: UInt8 = 0
            for i in 0..<n {
                previous = previous &+ plane[i]
                plane[i] = previous
            }
        }
    }
}
