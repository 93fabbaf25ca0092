import Foundation

/// The chunk indexes of the other agents that share this agent's root, as nodes of a site share
/// a parallel filesystem: `<root>/.barge/<agent>/chunk-index.sqlite`, opened to read only. A
/// destination agent looks there when its own index does not know a chunk, so dedup works
/// whichever agent of the site receives a unit. Each place found is checked by re-hashing before
/// it is used, like one from its own index. The list is read again at most every `refresh`.
public final class SiblingIndexes: @unchecked Sendable {
    public let root: String
    private let own: String
    private let refresh: TimeInterval
    private let lock = NSLock()
    private var opened: [String: ChunkIndex] = [:]
    private var listedAt: Date?

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
        if listedAt.map({ Date().timeIntervalSince($0) >= refresh }) ?? true {
            listedAt = Date()
            let state = root + "/" + TreeScanner.stateDirectory
            let names = (try? FileManager.default.contentsOfDirectory(atPath: state)) ?? []
            var found: [String: ChunkIndex] = [:]
            for name in names.sorted() {
                let path = URL(fileURLWithPath: state + "/" + name + "/" + ChunkIndex.fileName).standardizedFileURL.path
                guard path != own, FileManager.default.fileExists(atPath: path) else { continue }
                found[path] = opened[path] ?? (try? ChunkIndex(readingOnly: path, root: root))
            }
            opened = found
        }
        return opened.keys.sorted().compactMap { opened[$0] }
    }
}
