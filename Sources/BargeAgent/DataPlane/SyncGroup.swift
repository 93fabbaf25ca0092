import BargeStore
import Foundation

/// Group commit of `syncfs` (pure): whose writes a sync covers, and who runs the next one. One
/// sync runs at a time. A caller whose writes are done needs a sync that starts after it arrives:
/// the running one may have started before its writes. Whoever finds none running starts the next
/// one, and it covers every caller that arrived before it started, so N batches that finish their
/// writes while a sync runs share the next one.
struct SyncTurns {
    /// Syncs started; they are numbered from 1 and end in order.
    private(set) var started = 0
    /// The number of the last sync that ended.
    private(set) var ended = 0
    private(set) var running = false
    /// The errno of recent syncs that failed, by number.
    private var failures: [Int: Int32] = [:]

    /// The sync a caller arriving now needs: the next to start.
    var ticket: Int { started + 1 }

    enum Action: Equatable {
        /// Another caller's sync runs: wait for it to end, then ask again.
        case wait
        /// Run sync number `n`, then report `ended(n, errno:)`.
        case run(Int)
        /// The sync for this ticket ended, with this errno when it failed.
        case done(errno: Int32?)
    }

    mutating func next(for ticket: Int) -> Action {
        if ended >= ticket { return .done(errno: failures[ticket]) }
        if running { return .wait }
        running = true
        started += 1
        return .run(started)
    }

    mutating func ended(_ n: Int, errno: Int32?) {
        running = false
        ended = n
        if let errno { failures[n] = errno }
        failures = failures.filter { $0.key > n - 256 }
    }
}

/// Makes every write done so far on one file system durable with `syncfs`, sharing each sync
/// among the callers that wait at once (`SyncTurns`). Blocks: call it on a blocking thread.
final class SyncGroup: @unchecked Sendable {
    private let condition = NSCondition()
    private var turns = SyncTurns()

    /// Returns once a `syncfs` of the file system of `fd` that started after this call has ended:
    /// 0, or the errno it failed with. `fd` must stay open until it returns.
    func sync(_ fd: Int32) -> Int32 {
        condition.lock()
        defer { condition.unlock() }
        let ticket = turns.ticket
        while true {
            switch turns.next(for: ticket) {
            case .done(let errno):
                return errno ?? 0
            case .wait:
                condition.wait()
            case .run(let n):
                condition.unlock()
                let failed = RootDirectory.syncFileSystem(of: fd) == 0 ? nil : errno
                condition.lock()
                turns.ended(n, errno: failed)
                condition.broadcast()
            }
        }
    }
}
