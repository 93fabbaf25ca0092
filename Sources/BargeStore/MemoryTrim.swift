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
    /// When the last trim was set to run, and whether one is set to run still.
    private static let state = Mutex<(last: ContinuousClock.Instant?, pending: Bool)>((nil, false))

    /// A trim two seconds from now; one asked within `interval` of the last is put off until the
    /// interval has passed, rather than dropped (a job that ended just after another).
    public static func soon() {
        let now = ContinuousClock.now
        let delay: Duration? = state.withLock { s in
            if s.pending { return nil }
            let at = max(now + .seconds(2), s.last.map { $0 + interval } ?? now)
            s.last = at
            s.pending = true
            return at - now
        }
        guard let delay else { return }
        DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + .milliseconds(Int(delay / .milliseconds(1)))) {
            state.withLock { $0.pending = false }
            trim()
        }
    }

    /// Trims at once, on the caller's thread; true when memory went back to the system.
    @discardableResult
    static func trim() -> Bool { barge_malloc_trim() == 1 }
}
