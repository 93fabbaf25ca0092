import BargeStore
import BargeWire

/// A source agent's answer to `scan request`: the tree under its root as pages of `scan reply`.
enum TreeListing {
    static func replies(to request: ScanRequest, root: String) -> [ScanReply] {
        let result: TreeScanner.Result
        let top: TreeEntry
        do {
            let path = try RootedPath.resolve(request.path, under: root)
            top = try TreeScanner.entry(at: path)
            result = try TreeScanner.scan(path)
        } catch {
            return [ScanReply(request: request.request, final: true, error: error.description)]
        }
        // The scanned path itself is the entry with the empty path: a directory (its mode and
        // mtime go to the destination directory) or the single file being sent.
        var entries = [entry(top, path: "")]
        if top.kind == .directory { entries += result.entries.map { entry($0, path: $0.path) } }
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

    private static func entry(_ e: TreeEntry, path: String) -> FileEntry {
        FileEntry(path: path, kind: kind(e.kind), size: e.size, mode: e.mode, mtimeSeconds: e.mtimeSeconds,
                  mtimeNanoseconds: e.mtimeNanoseconds, linkTarget: e.linkTarget ?? "")
    }

    private static func kind(_ k: TreeEntry.Kind) -> FileEntry.Kind {
        switch k {
        case .file: .file
        case .directory: .directory
        case .symlink: .symlink
        }
    }
}
