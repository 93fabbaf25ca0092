import BargeStore
import BargeWire

/// A source agent's answer to `scan request`: the tree under its root as pages of `scan reply`.
enum TreeListing {
    static func replies(to request: ScanRequest, root: String) -> [ScanReply] {
        let result: TreeScanner.Result
        do {
            result = try TreeScanner.scan(try RootedPath.resolve(request.path, under: root))
        } catch {
            return [ScanReply(request: request.request, final: true, error: error.description)]
        }
        let entries = result.entries.map { e in
            FileEntry(path: e.path, kind: kind(e.kind), size: e.size, mode: e.mode, mtimeSeconds: e.mtimeSeconds,
                      mtimeNanoseconds: e.mtimeNanoseconds, linkTarget: e.linkTarget ?? "")
        }
        let skipped = result.skipped.map(\.description)
        var pages: [ScanReply] = []
        var start = 0
        repeat {
            let end = min(start + ScanReply.pageSize, entries.count)
            let last = end == entries.count
            pages.append(ScanReply(request: request.request, final: last, entries: Array(entries[start..<end]),
                                   skipped: last ? skipped : []))
            start = end
        } while start < entries.count
        return pages
    }

    private static func kind(_ k: TreeEntry.Kind) -> FileEntry.Kind {
        switch k {
        case .file: .file
        case .directory: .directory
        case .symlink: .symlink
        }
    }
}
