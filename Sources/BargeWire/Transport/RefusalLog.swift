import NIOConcurrencyHelpers

/// Which failed handshakes are worth a line of their own: the first from an address, then at
/// most one every `interval` per address, which says how many more there were meanwhile. Anyone
/// who can reach a port can fail a handshake (a wrong token, a forged proof, random bytes), and
/// each was a warning of its own: 50 clients without the token wrote 36,681 lines (12 MB) to an
/// agent's log in 30 s (h2 of session 52). A pure policy; the server carries it out.
public final class RefusalLog: Sendable {
    public static let interval: Duration = .seconds(10)
    /// Addresses remembered at most; past it, those not heard of for an interval are forgotten
    /// (and, failing that, all: a flood from that many addresses says its first line again).
    static let mostAddresses = 4096

    private struct Seen {
        var last: ContinuousClock.Instant
        var unreported: Int
    }
    private let seen = NIOLockedValueBox<[String: Seen]>([:])

    public init() {}

    /// Nil when the failure from `ip` is not to be logged; else how many from it went unsaid since
    /// the last line (0 for the first).
    public func admit(_ ip: String, now: ContinuousClock.Instant = .now) -> Int? {
        seen.withLockedValue { seen in
            if var s = seen[ip] {
                guard now - s.last >= Self.interval else {
                    s.unreported += 1
                    seen[ip] = s
                    return nil
                }
                seen[ip] = Seen(last: now, unreported: 0)
                return s.unreported
            }
            if seen.count >= Self.mostAddresses {
                seen = seen.filter { now - $0.value.last < Self.interval }
                if seen.count >= Self.mostAddresses { seen.removeAll() }
            }
            seen[ip] = Seen(last: now, unreported: 0)
            return 0
        }
    }
}

/// A failed handshake as the listener hears of it, with how many more from the same address went
/// unsaid since the last one it heard of (`RefusalLog`).
public struct RefusedHandshake: Error, Sendable, CustomStringConvertible {
    public let failure: any Error
    public let alsoRefused: Int
    public init(failure: any Error, alsoRefused: Int) {
        self.failure = failure
        self.alsoRefused = alsoRefused
    }
    public var description: String {
        "\(failure)" + (alsoRefused > 0 ? " (\(alsoRefused) more failed handshakes from this address since the last report)" : "")
    }
}
