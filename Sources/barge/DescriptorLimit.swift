#if canImport(Glibc)
import Glibc
#endif

/// Open descriptors. Many systems start a process with a soft limit of 1,024 open files (and a
/// hard limit far above): an agent's sockets, the files its units read and write, and its
/// index share them, and a flood of idle connections to its data port once took the rest, so
/// that a unit's next `open` failed with EMFILE and the job failed. Agents and coordinators
/// raise the soft limit to the hard one (at most 1,048,576) at start, as Go's runtime and nginx
/// do; the listeners then size their connection limits from it (`BargeServer.connectionLimit`: an agent's data port serves at most 1,024 or a
/// quarter of them, the coordinator's agent port at most 16,384 or half).
enum DescriptorLimit {
    static let most: rlim_t = 1 << 20

    /// Raises the soft limit to the hard limit (capped at `most`); returns the limit before and
    /// after (equal when it could not be raised).
    @discardableResult
    static func raise() -> (before: UInt64, now: UInt64) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (0, 0) }
        let before = UInt64(limit.rlim_cur)
        let wanted = limit.rlim_max == rlim_t.max ? most : min(limit.rlim_max, most)
        guard wanted > limit.rlim_cur else { return (before, before) }
        limit.rlim_cur = wanted
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (before, before) }
        return (before, UInt64(wanted))
    }

    /// A warning when the limit stays low enough to run out under load; nil otherwise.
    static func warning(_ limit: (before: UInt64, now: UInt64), process: String) -> String? {
        guard limit.now > 0, limit.now < 4096 else { return nil }
        return "\(process) may open only \(limit.now) files and sockets at once (the hard limit, ulimit -Hn): connections are capped to leave room for the files its units read and write; raise it (LimitNOFILE= in a systemd unit) for many peers or many files in flight"
    }
}
