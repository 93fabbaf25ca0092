import BargeStore
import BargeWire
#if canImport(Glibc)
import Glibc
#endif

/// A source agent's answer to `scan request`: the tree under its root as pages of `scan reply`,
/// sent while the walk goes on. Pages go out through the outbox, which lets only a few wait for
/// the connection at once, so a walk of ten million files holds a few pages, not the tree.
///
/// The walk reads directories and looks at every entry (`getdents`, `fstatat`): blocking I/O,
/// which on a parallel file system can take milliseconds an entry. So each page is filled on a
/// Dispatch thread (`BlockingWork`), and the task on the cooperative pool only hands pages to the
/// outbox: a long walk never holds a pool thread, which also carries the agent's streams.
enum TreeListing {
    /// `pageDelay`: a pause after each page but the last (fault injection, tests only).
    /// Walks and sends pages until the last, or until the connection `connection` (the one the
    /// request came on) ends: the coordinator asks again on the next, and an old walk left going
    /// would walk the whole tree a second time beside the new one.
    static func send(_ request: ScanRequest, root: String, outbox: Outbox, on connection: UInt64, pageDelay: Duration? = nil) async {
        let walk = Walk(request, root: root)
        while true {
            guard let reply = try? await BlockingWork.run({ walk.nextPage() }) else { return }
            guard await outbox.sendPaced(.scanReply(reply), on: connection) else { return }
            if reply.final { return }
            if let pageDelay { try? await Task.sleep(for: pageDelay) }
        }
    }

    /// One walk, a page at a time. Its pages are asked for one after the other, never at once.
    private final class Walk: @unchecked Sendable {
        private let request: ScanRequest
        private let root: String
        private var started = false
        private var walker: TreeWalker?
        /// Skipped entries not yet sent: a page carries at most `skippedPerPage` of them.
        private var skipped: [String] = []

        init(_ request: ScanRequest, root: String) {
            self.request = request
            self.root = root
        }

        /// The next page: up to `ScanReply.pageSize` entries, final once the walk ends or fails.
        func nextPage() -> ScanReply {
            var page: [FileEntry] = []
            if !started {
                started = true
                do throws(StoreError) {
                    // `a:/src/` (the coordinator keeps the slash): a link there is followed to the
                    // directory it names, inside the root, as `rsync -a link/ dst` does; without
                    // the slash the link itself is sent, as `rsync -a link dst` sends it.
                    // It must then be a directory, as rsync says "Not a directory" for `file/`.
                    let following = request.path.hasSuffix("/")
                    let path = following ? try RootedPath.resolveThroughLinks(request.path, under: root)
                        : try RootedPath.resolveTakingALinkAsIs(request.path, under: root)
                    let top = try TreeScanner.entry(at: path)
                    if following, top.kind != .directory {
                        throw StoreError.invalidPath(path: String(request.path.dropLast()), reason: "is not a directory (the source was given with a slash, which names one)")
                    }
                    if top.kind == .directory { walker = try TreeWalker(directory: path) }
                    // The scanned path itself is the entry with the empty path: a directory (its
                    // mode and mtime go to the destination directory) or the single file being sent.
                    page.append(TreeListing.entry(top, path: "", identity: request.identities))
                } catch {
                    return ScanReply(request: request.request, final: true, error: TreeListing.topProblem(error, request.path, root: root))
                }
            }
            do {
                while page.count < ScanReply.pageSize, let e = try walker?.next() {
                    page.append(TreeListing.entry(e, path: e.path, identity: request.identities))
                }
            } catch {
                return ScanReply(request: request.request, final: true, error: error.description)
            }
            skipped += walker?.takeSkipped().map(\.description) ?? []
            let sent = Array(skipped.prefix(TreeListing.skippedPerPage))
            skipped.removeFirst(sent.count)
            // The walk is over once a page comes back short; what it skipped may take more pages.
            return ScanReply(request: request.request, final: page.count < ScanReply.pageSize && skipped.isEmpty, entries: page, skipped: sent)
        }
    }

    /// Why the scanned path itself cannot be walked, in the words of the usual cases: a source
    /// that is not there (a typo, the wrong site or root), or one the agent may not read.
    static func topProblem(_ error: StoreError, _ path: String, root: String) -> String {
        let shown = StoreError.shortened(path.isEmpty ? "." : path)
        return switch error.errno {
        case ENOENT: "the source '\(shown)' does not exist under the agent's root \(root) (ENOENT)"
        case ENOTDIR: "the source '\(shown)' is not under the agent's root \(root): a part of it is a file (ENOTDIR)"
        case EACCES: "the source '\(shown)' cannot be read by the agent, which runs as uid \(getuid()) (EACCES)"
        default: error.description
        }
    }

    /// Skipped entries per page: with a page's entries (two paths of up to 4 KiB each), a page
    /// stays under the 16 MiB frame limit. A directory of 100,000 names that cannot be sent
    /// (not UTF-8, or past PATH_MAX) took one page past it, and the connection was dropped.
    static let skippedPerPage = 4096

    /// `identity`: a regular file carries its inode and ctime (protocol version 19, when the
    /// coordinator asked for them).
    fileprivate static func entry(_ e: TreeEntry, path: String, identity: Bool = false) -> FileEntry {
        var entry = FileEntry(path: path, kind: kind(e.kind), size: e.size, mode: e.mode, mtimeSeconds: e.mtimeSeconds,
                              mtimeNanoseconds: e.mtimeNanoseconds, linkTarget: e.linkTarget ?? "")
        if identity, e.kind == .file { entry.identity = FileIdentity(inode: e.inode, ctimeSeconds: e.ctimeSeconds, ctimeNanoseconds: e.ctimeNanoseconds) }
        return entry
    }

    private static func kind(_ k: TreeEntry.Kind) -> FileEntry.Kind {
        switch k {
        case .file: .file
        case .directory: .directory
        case .symlink: .symlink
        }
    }
}
