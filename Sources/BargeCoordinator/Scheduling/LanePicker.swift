/// Chooses the lane (source agent, destination agent) for a unit: the least-loaded agent on each
/// side that is under its bound, ties broken by name. Pure, so the policy is tested directly.
public enum LanePicker {
    public struct Candidate: Hashable, Sendable {
        public var name: String
        /// Units it holds now, as source or destination.
        public var load: Int
        public var bound: Int

        public init(name: String, load: Int, bound: Int) {
            self.name = name
            self.load = load
            self.bound = bound
        }

        var hasRoom: Bool { load < bound }
    }

    /// `pinned`: the destination a file's earlier ranges went to; its later ranges and its finish
    /// must go there too, since the partial file and its received ranges are at that agent.
    public static func pick(sources: [Candidate], destinations: [Candidate], pinned: String? = nil) -> (source: String, destination: String)? {
        func best(_ c: [Candidate]) -> Candidate? {
            c.filter(\.hasRoom).min { ($0.load, $0.name) < ($1.load, $1.name) }
        }
        let destination: Candidate?
        if let pinned {
            destination = destinations.first { $0.name == pinned && $0.hasRoom }
        } else {
            destination = best(destinations)
        }
        guard let destination, let source = best(sources) else { return nil }
        return (source.name, destination.name)
    }
}
