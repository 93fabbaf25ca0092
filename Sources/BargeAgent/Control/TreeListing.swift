import BargeStore
import BargeWire

/// A source agent's answer to `scan request`: the tree under its root as pages of `scan reply`,
/// sent while the walk goes on. Pages go out through the outbox, which lets only a few wait for
/// the connection at once, so a walk of ten million files holds a few pages, not the tree.
enum TreeListing {
    static func send(_ request: ScanRequest, root: String, outbox: Outbox) async {
        var walker: TreeWalker?
        let top: TreeEntry
        do {
            let path = try RootedPath.resolve(request.path, under: root)
            top = try TreeScanner.entry(at: path)
            if top.kind == .directory { walker = try TreeWalker(directory: path) }
        } catch {
            await outbox.sendPaced(.scanReply(ScanReply(request: request.request, final: true, error: error.description)))
            return
        }
        // The scanned path itself is the entry with the empty path: a directory (its mode and
        // mtime go to the destination directory) or the single file being sent.
        var page = [entry(top, path: "")]
        do {
            while let e = try walker?.next() {
                page.append(entry(e, path: e.path))
                if page.count == ScanReply.pageSize {
                    let skipped = walker?.takeSkipped().map(\.description) ?? []
                    await outbox.sendPaced(.scanReply(ScanReply(request: request.request, final: false, entries: page, skipped: skipped)))
                    page = []
                }
            }
        } catch {
            await outbox.sendPaced(.scanReply(ScanReply(request: request.request, final: true, error: error.description)))
            return
        }
        let skipped = walker?.takeSkipped().map(\.description) ?? []
        await outbox.sendPaced(.scanReply(ScanReply(request: request.request, final: true, entries: page, skipped: skipped)))
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
