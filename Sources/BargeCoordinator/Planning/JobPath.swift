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
        return parts.joined(separator: "/")
    }

    /// Whether `inner` is `outer` or lies inside it (both normalized; "" is the root).
    public static func contains(_ outer: String, _ inner: String) -> Bool {
        // By bytes (`PathKey`): "é" and "e\u{301}" are two directories.
        outer.isEmpty || PathKey.isWithin(inner, outer)
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
