#if canImport(Glibc)
import Glibc
#endif

/// Who holds a lock a process waits for, as the kernel lists it in `/proc/locks`, and whether
/// each holder is stopped (SIGSTOP, a debugger). A lock held by a stopped process is let go only
/// once it goes on or ends, so a wait for it is said in words rather than waited out.
public enum LockHolders {
    /// The processes holding a lock (`flock`, POSIX or OFD) on the file open as `fd`, not those
    /// waiting for one (`->` in `/proc/locks`). Empty where `/proc/locks` cannot be read, or the
    /// holders are on other hosts (a network file system). OFD locks list no process (-1).
    public static func of(_ fd: Int32) -> [Int32] {
        var st = stat()
        guard fstat(fd, &st) == 0, let text = read("/proc/locks") else { return [] }
        let dev = UInt64(st.st_dev)
        let device = hex2(major(dev)) + ":" + hex2(minor(dev)) + ":" + String(st.st_ino)
        var pids: [Int32] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 6, fields[1] != "->", fields[5] == device, let pid = Int32(fields[4]), pid > 0 else { continue }
            pids.append(pid)
        }
        return pids
    }

    /// Whether process `pid` is stopped: its state in `/proc/PID/stat` (after the name in
    /// parentheses, which may hold spaces) is `T` (stopped by a signal) or `t` (by a tracer).
    public static func isStopped(_ pid: Int32) -> Bool {
        guard let stat = read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].drop(while: { $0 == " " }).first
        return state == "T" || state == "t"
    }

    private static func hex2(_ n: UInt32) -> String {
        let s = String(n, radix: 16)
        return s.count < 2 ? "0" + s : s
    }

    private static func major(_ dev: UInt64) -> UInt32 { UInt32(((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)) }
    private static func minor(_ dev: UInt64) -> UInt32 { UInt32((dev & 0xff) | ((dev >> 12) & ~0xff)) }

    /// A small file of /proc, whole (its size reads as 0).
    private static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += buffer[0..<n]
            if bytes.count > 16 << 20 { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
