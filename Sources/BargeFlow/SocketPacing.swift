/// The most each of a lane's sockets may send per second (`SO_MAX_PACING_RATE`): its share of the
/// lane's bottleneck, with some headroom. Pure.
///
/// Why: a lane's sockets run the host's TCP (BBR by default), and each paces at its own estimate
/// of the path's rate. A socket fed whole chunks measures bursts: its estimate, and so its pacing,
/// approach the whole link's rate, and BBR sends at 1.25–2.89 times that while it probes or
/// starts. Four such sockets together sent several times what the bottleneck drains. Through the
/// delay test bed at 1 Gbit/s and 50 ms, a pair of 1 GiB jobs lost 52,000–132,000 packets in the
/// bed's queues and stalled sockets in recovery (the first job 15.8–17.8 s); with this cap,
/// 2,500–10,000, and 11.3–11.6 s.
///
/// The share is of the sockets that carried the lane's traffic lately, so a lane whose work sits
/// on fewer sockets still has its whole rate; and the headroom lets the lane find a faster path
/// (its delivered rate, and then its estimate, can grow by that factor an interval).
public enum SocketPacing {
    /// The lane's sockets together may pace at this multiple of its bottleneck.
    public static let headroom = 1.25
    /// Never less than this per socket (bytes per second): a lane whose estimate is far too low
    /// (measured while the destination stalled) still grows back quickly.
    public static let least: Double = 1_000_000

    /// No cap at or above this per socket (bytes per second, 8 Tbit/s): beyond any link, and far
    /// inside what a `UInt64` holds. An unmeasured lane's estimate doubles every interval of its
    /// first slow start, however little it delivers (`LaneFlow`): held back by its source for
    /// 20 s (zstd-9 on loopback, `cluster/bench-link.sh` part `codecs`), it passed `UInt64.max`,
    /// and the conversion crashed the source agent.
    public static let most: Double = 1e12

    /// Each socket's cap, in bytes per second, for a lane whose bottleneck is `bottleneck` (nil:
    /// not known, so no cap) spread over `sockets` recently active sockets. An estimate beyond any
    /// link is no cap either, rather than a number that does not fit.
    public static func cap(bottleneck: Double?, sockets: Int) -> UInt64? {
        guard let bottleneck, bottleneck.isFinite, bottleneck > 0 else { return nil }
        let share = headroom * bottleneck / Double(max(1, sockets))
        guard share < most else { return nil }
        return UInt64(max(least, share).rounded())
    }

    /// Whether a socket paced at `current` (nil: no cap) should be set to `wanted`: the cap comes
    /// or goes, or moves by an eighth or more. Smaller moves are not worth a system call each.
    public static func needsUpdate(current: UInt64?, wanted: UInt64?) -> Bool {
        switch (current, wanted) {
        case (nil, nil): return false
        case (nil, _), (_, nil): return true
        case let (c?, w?): return Double(max(c, w) - min(c, w)) * 8 >= Double(c)
        }
    }
}
