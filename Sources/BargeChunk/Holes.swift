#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file's holes (`SEEK_DATA`), and zeros in memory: a sparse file's holes need not be read
/// to be chunked or sent. They read as zeros, so a chunk there is what reading would have made:
/// the same cut points, the same bytes and hashes.
public enum Holes {
    /// `SEEK_DATA`, which Swift's Glibc module leaves out (it needs `_GNU_SOURCE`).
    #if os(Linux)
    static let seekData: Int32 = 3
    #else
    static let seekData: Int32 = 4
    #endif

    /// Whether `fd` holds no data from `offset` for `length` bytes, within its size: all of
    /// it reads as zeros. False where the file system does not say (it then reports data
    /// everywhere), and for a range past the file's end (the read says how it ended).
    public static func contain(_ fd: Int32, from offset: UInt64, length: UInt64) -> Bool {
        guard length > 0, offset <= UInt64(off_t.max) else { return false }
        var st = stat()
        guard fstat(fd, &st) == 0, mayHave(st) else { return false }
        let next = lseek(fd, off_t(offset), Self.seekData)
        if next < 0 { return errno == ENXIO && offset + length <= UInt64(st.st_size) }
        return UInt64(next) >= offset + length
    }

    /// Whether the open file may have holes: its blocks do not cover its size. A file whose
    /// blocks do has none to look for, and `SEEK_DATA` may be a round trip to a file server.
    public static func mayHave(_ fd: Int32) -> Bool {
        var st = stat()
        return fstat(fd, &st) == 0 && mayHave(st)
    }

    private static func mayHave(_ st: stat) -> Bool {
        st.st_blocks >= 0 && UInt64(st.st_blocks) * 512 < UInt64(max(st.st_size, 0))
    }

    /// Whether every byte of `bytes` is zero: the first few looked at before the rest, so data
    /// costs nothing to tell from zeros.
    public static func allZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let n = bytes.count
        var i = 0
        while i + 8 <= n {
            if base.loadUnaligned(fromByteOffset: i, as: UInt64.self) != 0 { return false }
            i += 8
        }
        while i < n {
            if base.load(fromByteOffset: i, as: UInt8.self) != 0 { return false }
            i += 1
        }
        return true
    }
}
