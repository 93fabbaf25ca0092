import BargeStore
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One coordinator per state directory: an exclusive `flock` on `<state>/coordinator.lock`,
/// held while the coordinator runs and let go by the kernel when it exits, however it exits. Two
/// coordinators on one journal would both hand out the same units and both recover them after a
/// restart; before, a second one started beside the first without a word. A coordinator started
/// while the previous one is still stopping (SIGTERM takes up to 10 s) waits for it.
public final class StateLock: Sendable {
    public static let fileName = "coordinator.lock"
    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }

    /// Takes the lock, waiting up to `patience` for a coordinator that holds it to stop. A file
    /// system without `flock` gives no lock and a warning rather than no coordinator.
    public static func acquire(directory: String, patience: Duration = .seconds(15), logger: Logger) async throws -> StateLock? {
        let path = directory + "/" + fileName
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw CoordinatorStartError("cannot open \(path): \(String(cString: strerror(errno))); the coordinator needs to write its --state directory")
        }
        let deadline = ContinuousClock.now + patience
        var said = false
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            guard e == EWOULDBLOCK || e == EINTR else {
                logger.warning("cannot lock \(path) (\(String(cString: strerror(e)))): nothing stops a second coordinator from using \(directory) at once; make sure only one runs")
                close(fd)
                return nil
            }
            let pid = Self.holder(fd)
            let holder = pid.map { "pid \($0)" } ?? "another process"
            // A holder that is stopped (SIGSTOP, a debugger) is not stopping: waiting for it
            // would only delay the same refusal.
            if let pid, LockHolders.isStopped(pid) {
                close(fd)
                throw CoordinatorStartError("another coordinator (\(holder)) holds the state directory \(directory) but is stopped (SIGSTOP or a debugger): it would go on handing out units once continued. End it (kill \(pid)) or let it go on (kill -CONT \(pid)), or give this one another --state")
            }
            guard ContinuousClock.now < deadline else {
                close(fd)
                throw CoordinatorStartError("another coordinator (\(holder)) runs on the state directory \(directory): two would hand out the same units. Stop it first, or give this one another --state")
            }
            if !said {
                logger.notice("waiting up to \(patience) for the coordinator that holds \(directory) (\(holder)) to stop")
                said = true
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        // Who holds it, for the next one's message.
        let text = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = text.utf8CString.withUnsafeBufferPointer { pwrite(fd, $0.baseAddress, $0.count - 1, 0) }
        return StateLock(fd: fd)
    }

    /// The pid the holder wrote, if it did.
    private static func holder(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = pread(fd, &buffer, buffer.count, 0)
        guard n > 0 else { return nil }
        return Int32(String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
