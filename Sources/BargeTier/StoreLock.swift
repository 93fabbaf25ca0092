import BargeStore
#if canImport(Glibc)
import Glibc
#endif

/// `DIR/lock`, held with `flock`: shared by demotions, verifications and a cold intake's open
/// pack, exclusive by promotions, `gc` and the restore of directory times. A wait for a holder
/// that is running lasts as long as its work (gc waits for demotions, and they for it). A holder
/// that is stopped (SIGSTOP, a debugger: an agent of the site sharing the root, or a hung node)
/// lets go only once it goes on: after `stoppedGrace` the wait ends with an error that names it,
/// and the tier request fails, retryable, with that reason. Before, the site's tier jobs stood
/// still with nothing said for as long as it was stopped (h3 of session 50, 4 of 4; 10 minutes
/// once).
struct StoreLock {
    let fd: Int32

    init(_ path: String, exclusive: Bool, stoppedGrace: Duration = .seconds(5)) throws {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ColdStoreError.system("open", path, errno) }
        var stoppedSince: [Int32: ContinuousClock.Instant] = [:]
        var nextLook = ContinuousClock.now
        while flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0 {
            let e = errno
            guard e == EWOULDBLOCK || e == EINTR else {
                close(fd)
                throw ColdStoreError.system("lock", path, e)
            }
            let now = ContinuousClock.now
            if now >= nextLook {
                // Looked at every quarter second: /proc/locks lists every lock of the host.
                nextLook = now + .milliseconds(250)
                let stopped = LockHolders.of(fd).filter { $0 != getpid() && LockHolders.isStopped($0) }
                stoppedSince = stopped.reduce(into: [:]) { $0[$1] = stoppedSince[$1] ?? now }
                if let (pid, since) = stoppedSince.min(by: { $0.value < $1.value }), now - since >= stoppedGrace {
                    close(fd)
                    throw ColdStoreError("the cold store's lock \(path) is held by process \(pid), which is stopped (SIGSTOP or a debugger; an agent of this site sharing the root?): the store cannot change until it goes on (kill -CONT \(pid)) or ends")
                }
            }
            usleep(20_000)
        }
    }

    func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
