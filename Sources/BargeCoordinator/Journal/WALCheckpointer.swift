import Dispatch
import Foundation
import GRDB
import Synchronization

/// Copies the WAL back into the database on a connection of its own, on a dispatch worker,
/// instead of in the writer's commits. SQLite's automatic checkpoint ran inside the `COMMIT`
/// that crossed its threshold, on the writer's thread: a fifth of the commits' time with 1,000
/// agents. A passive checkpoint never blocks the writer or readers (it copies what no reader
/// still needs), so one runs after a commit whenever none is running and the last began at
/// least `interval` ago. `Journal.truncateWAL` still starts a WAL over that grew past its limit.
final class WALCheckpointer: Sendable {
    static let interval: Double = 0.25
    private let connection: DatabaseQueue
    /// Whether one runs, and when the last began (monotonic seconds).
    private let state = Mutex<(running: Bool, began: Double)>((false, -.infinity))

    init(path: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(0.2)
        configuration.foreignKeysEnabled = false
        connection = try DatabaseQueue(path: path, configuration: configuration)
        // FULL, as the writer's: the database file is synced before the WAL is reused.
        try connection.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
    }

    /// After a commit: starts a passive checkpoint unless one runs or began lately.
    func poke() {
        let now = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        let start = state.withLock { s -> Bool in
            guard !s.running, now - s.began >= Self.interval else { return false }
            s = (true, now)
            return true
        }
        guard start else { return }
        DispatchQueue.global(qos: .utility).async { [self] in
            _ = try? connection.writeWithoutTransaction { db in try db.checkpoint(.passive) }
            state.withLock { $0.running = false }
        }
    }
}
