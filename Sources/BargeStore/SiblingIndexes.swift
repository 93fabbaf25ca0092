import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The chunk indexes of the other agents that share this agent's root, as nodes of a site share
/// a parallel filesystem: `<root>/.barge/<agent>/chunk-index.sqlite`, opened to read only. A
/// destination agent looks there when its own index does not know a chunk, so dedup works
/// whichever agent of the site receives a unit. Each place found is checked by re-hashing before
/// it is used, like one from its own index.
///
/// The directory is listed again when its mtime changes (an agent's state directory appeared)
/// and at least every `refresh`; an index that could not be opened yet (its agent is still
/// creating it) is tried again at the next lookup.
public final class SiblingIndexes: @unchecked Sendable {
    public let root: String
    private let own: String
    private let refresh: TimeInterval
    private let lock = NSLock()
    // By bytes (`PathKey`): agents' names that Swift takes for one are two directories.
    private var opened: [PathKey: ChunkIndex] = [:]
    private var unopened: Set<PathKey> = []
    private var listed: (at: Date, mtime: timespec)?

    /// `own`: this agent's index file, left out.
    public init(root: String, own: String, refresh: TimeInterval = 5) {
        self.root = root
        self.own = URL(fileURLWithPath: own).standardizedFileURL.path
        self.refresh = refresh
    }

    /// The other agents' indexes under the root now.
    public func indexes() -> [ChunkIndex] {
        lock.lock()
        defer { lock.unlock() }
        let state = root + "/" + TreeScanner.stateDirectory
        var st = stat()
        let mtime = stat(state, &st) == 0 ? st.st_mtim : timespec()
        if let l = listed, Date().timeIntervalSince(l.at) < refresh, l.mtime.tv_sec == mtime.tv_sec, l.mtime.tv_nsec == mtime.tv_nsec {
            for path in unopened { open(path) }
        } else {
            listed = (Date(), mtime)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: state)) ?? []
            let paths = Set(names.map { PathKey(URL(fileURLWithPath: state + "/" + $0 + "/" + ChunkIndex.fileName).standardizedFileURL.path) }).subtracting([PathKey(own)])
            opened = opened.filter { paths.contains($0.key) }
            unopened = []
            for path in paths where opened[path] == nil { open(path) }
        }
        return opened.keys.sorted().compactMap { opened[$0] }
    }

    private func open(_ path: PathKey) {
        if FileManager.default.fileExists(atPath: path.string), let index = try? ChunkIndex(readingOnly: path.string, root: root) {
            opened[path] = index
            unopened.remove(path)
        } else {
            unopened.insert(path)
        }
    }
}
