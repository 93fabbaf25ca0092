import BargeWire
import BargeStore
/// A `SITE:PATH` path as the coordinator keeps it: relative to the agents' root, `/`-separated,
/// without `.` or empty components. `a:/ds` and `a:ds` are the same path; `..` that would climb
/// out of the root is refused here, before any agent is asked (agents check again).
public enum JobPath {
    static let stateDirectory = ".barge"

    public static func normalize(_ path: String) throws(PlanError) -> String {
        var parts: [Substring] = []
        for part in PathKey.components(path) {
            switch part {
            case ".": continue
            case "..":
                guard !parts.isEmpty else { throw .outsideRoot(path) }
                parts.removeLast()
            default: parts.append(part)
            }
        }
        guard !path.utf8.contains(0) else { throw .invalid(path, "contains a NUL byte") }
        // Agents keep their own state in `<root>/.barge` (agents refuse it too).
        guard parts.first.map(String.init) != stateDirectory else { throw .invalid(path, "it is inside .barge, the agents' own state, which no job may read or write") }
        let normalized = parts.joined(separator: "/")
        guard normalized.utf8.count <= longest else { throw .invalid(String(decoding: path.utf8.prefix(80), as: UTF8.self) + "…", "it is \(normalized.utf8.count) bytes long, over the \(longest) a path may have") }
        return normalized
    }

    /// Why a job may not name `path` (normalized), nil when it may: a component named as a
    /// destination names its unfinished copies (`x.barge-partial`). A scan leaves such entries
    /// out, but a single file so named was sent, and the next job into its directory took it
    /// for its own partial copy of `x` and replaced it (h2 of session 53, F5).
    /// `lastOnly`: only the last component counts (a source: a directory so named above it
    /// collides with nothing, its contents landing under the destination).
    public static func partialCopyName(_ path: String, lastOnly: Bool = false) -> String? {
        let suffix = PartialFileWriter.suffix
        let parts = PathKey.components(path)
        guard let part = (lastOnly ? Array(parts.suffix(1)) : Array(parts)).first(where: { $0.utf8.count > suffix.utf8.count && $0.hasSuffix(suffix) }) else { return nil }
        return "'\(ControlCharacters.escaped(String(part.prefix(80))))' is named as Barge names its unfinished copies (\(suffix)); a job may not read or write it"
    }

    /// The longest path a job may name, or an entry under it have, in bytes: the agents' walk's
    /// own limit (`TreeScanner.longestPath`, one less than `PATH_MAX`), so both ends agree.
    public static let longest = TreeScanner.longestPath

    /// Why a scanned entry's `relative` path is not a path below the job's source (nil when it
    /// is): an empty, `.` or `..` component, or a leading `/`. A source agent never names one so
    /// (its walk cannot); one that did, its entry planned, would have the destination agents
    /// alone refuse what it leads to.
    public static func notBelow(_ relative: String) -> String? {
        guard !relative.isEmpty else { return nil }
        let parts = relative.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else { return nil }
        return "the source agent named an entry '\(ControlCharacters.escaped(String(relative.prefix(80))))', which is not a path below the job's source"
    }

    /// Why the scanned entry at `relative` cannot be transferred from `source` to `destination`
    /// (the job's paths): its path at either end is longer than `longest`. Nil when it fits.
    public static func tooLong(_ relative: String, source: String, destination: String) -> String? {
        // The joined lengths, without joining: this runs for every scanned entry.
        func joined(_ base: String) -> Int { relative.isEmpty ? base.utf8.count : (base.isEmpty ? 0 : base.utf8.count + 1) + relative.utf8.count }
        let n = max(joined(source), joined(destination))
        guard n > longest else { return nil }
        return StoreError.pathTooLong(start: String(decoding: relative.utf8.prefix(80), as: UTF8.self), bytes: n).description
    }

    /// Whether two jobs' destinations may hold the same files: the same site, and one path at or
    /// inside the other. Such jobs run one after the other (`Scheduler.startScan`): a partial copy
    /// has one name per file, so two jobs writing a file at once would mix their bytes in it.
    public static func overlaps(site: String, _ path: String, withSite other: String, _ otherPath: String) -> Bool {
        site == other && (contains(path, otherPath) || contains(otherPath, path))
    }

    /// Whether `inner` is `outer` or lies inside it (both normalized; "" is the root).
    public static func contains(_ outer: String, _ inner: String) -> Bool {
        // By bytes (`PathKey`): "é" and "e\u{301}" are two directories.
        outer.isEmpty || PathKey.isWithin(inner, outer)
    }

    /// Whether `path`, as the user gave it, names a directory to put things in: it ends with a
    /// slash (`b:/dst/`, or `b:/dst/.`) or is the root itself (`b:`, `b:/`). A single file sent
    /// there lands inside it under its own name, as `rsync file dst/` and `cp file dst/` do;
    /// without the slash it lands at the path itself. A directory's contents land under the path
    /// either way.
    public static func namesDirectory(_ path: String) -> Bool {
        guard let last = PathKey.components(path).last else { return true }
        return last == "." || last == ".." || path.utf8.last == UInt8(ascii: "/")
    }

    /// The last component of a normalized path ("" for the root).
    public static func name(_ path: String) -> String {
        PathKey.lastSlash(path).map { String(path[path.utf8.index(after: $0)...]) } ?? path
    }

    public static func join(_ base: String, _ relative: String) -> String {
        if relative.isEmpty { return base }
        return base.isEmpty ? relative : base + "/" + relative
    }
}

public enum PlanError: Error, Hashable, Sendable, CustomStringConvertible {
    case outsideRoot(String)
    case invalid(String, String)

    public var description: String {
        switch self {
        case .outsideRoot(let p): "path '\(p)' leads outside the agent's root"
        case .invalid(let p, let why): "invalid path '\(p)': \(why)"
        }
    }
}
