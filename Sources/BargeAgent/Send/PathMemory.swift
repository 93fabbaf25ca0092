import BargeFlow
import Foundation
import NIOConcurrencyHelpers

/// What each path from this agent is known to carry: per destination agent, the bottleneck rate
/// its lane last measured under a queue and the path's base delay. A new lane to a known
/// destination starts its window at their product (the bandwidth-delay product, within
/// `CongestionController.Parameters.startingWindow`'s bounds) rather than at 1 MiB, so a restarted
/// agent's first job does not slow-start from scratch. Kept in `<state>/paths.json`, written at most
/// every `saveInterval` (temporary name, then rename); a record older than `maxAge` is not used.
public final class PathMemory: Sendable {
    public struct Known: Codable, Equatable, Sendable {
        /// Bytes per second.
        public var rate: Double
        /// Nanoseconds.
        public var baseDelay: UInt64
        /// When it was measured, seconds since 1970.
        public var measuredAt: Double

        public init(rate: Double, baseDelay: UInt64, measuredAt: Double) {
            self.rate = rate
            self.baseDelay = baseDelay
            self.measuredAt = measuredAt
        }
    }

    public static let fileName = "paths.json"
    public static let maxAge: Double = 7 * 86_400
    public static let saveInterval: Double = 5

    private struct State {
        var paths: [String: Known]
        var dirty = false
        var savedAt: Double = 0
    }

    /// nil: kept in memory only.
    public let file: String?
    private let state: NIOLockedValueBox<State>

    /// Reads `file` if it is there; a file that cannot be read or parsed is ignored (it is only a
    /// starting point) and replaced at the next save.
    public init(file: String?) {
        self.file = file
        var paths: [String: Known] = [:]
        if let file, let data = FileManager.default.contents(atPath: file),
           let decoded = try? JSONDecoder().decode([String: Known].self, from: data) {
            paths = decoded.filter { $0.value.rate.isFinite && $0.value.rate > 0 }
        }
        state = NIOLockedValueBox(State(paths: paths))
    }

    /// What the path to `destination` is known to carry, unless the record is too old.
    public func known(_ destination: String, now: Double = Date().timeIntervalSince1970) -> Known? {
        state.withLockedValue { s in s.paths[destination].flatMap { now - $0.measuredAt <= Self.maxAge ? $0 : nil } }
    }

    public func remember(_ destination: String, _ known: Known) {
        state.withLockedValue { s in
            guard s.paths[destination] != known else { return }
            s.paths[destination] = known
            s.dirty = true
        }
    }

    /// Writes the file if something changed and the last write is `saveInterval` old; `force`
    /// writes whatever changed now. A write that fails is tried again at the next call.
    public func save(now: Double = Date().timeIntervalSince1970, force: Bool = false) {
        guard let file else { return }
        let snapshot = state.withLockedValue { s -> [String: Known]? in
            guard s.dirty, force || now - s.savedAt >= Self.saveInterval else { return nil }
            s.dirty = false
            s.savedAt = now
            return s.paths
        }
        guard let snapshot else { return }
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            try encoder.encode(snapshot).write(to: URL(fileURLWithPath: file), options: .atomic)
        } catch {
            state.withLockedValue { $0.dirty = true }
        }
    }
}
