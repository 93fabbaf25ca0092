import CBargeFS
import Dispatch
import Synchronization

/// Gives back to the system the memory glibc keeps after it is freed. After a job of 1.2 million
/// small files a coordinator's resident memory stayed at about twice its live heap; a trim took
/// it from 315 MB to 133 (h2 of session 50). Asked as a job ends; run two seconds later (what
/// the job held is let go by then), at most once per `interval`, on a thread of its own (a trim
/// walks the heap: milliseconds, more for a large one).
public enum MemoryTrim {
    public static let interval: Duration = .seconds(10)
    private static let last = Mutex<ContinuousClock.Instant?>(nil)

    public static func soon() {
        let now = ContinuousClock.now
        let due = last.withLock { last -> Bool in
            if let l = last, now - l < interval { return false }
            last = now
            return true
        }
        guard due else { return }
        DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + 2) { trim() }
    }

    /// Trims at once, on the caller's thread; true when memory went back to the system.
    @discardableResult
    static func trim() -> Bool { barge_malloc_trim() == 1 }
}
