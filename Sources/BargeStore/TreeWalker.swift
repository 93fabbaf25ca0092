/// Walks a directory tree one entry at a time, depth first: a directory comes right before its
/// contents, and each directory's entries come by the bytes of their names (the order of
/// `ScanOrder` in the wire protocol). It holds one directory's names per level, never the whole
/// tree, so an agent pages through ten million files in bounded memory. Links are not followed.
public struct TreeWalker: Sendable {
    private struct Level: Sendable {
        let absolute: String
        let prefix: String
        let names: [String]
        var next = 0
    }

    private var stack: [Level] = []
    private var skipped: [StoreError] = []

    /// Walks below `directory`; paths are relative to it. At an agent's root, its `.barge`
    /// state directory is left out, and so is any directory `StatePaths` protects or marks.
    public init(directory: RootedPath) throws(StoreError) {
        let names = try TreeScanner.children(of: directory.absolute, prefix: "", skipState: directory.components.isEmpty, skipped: &skipped)
        stack = [Level(absolute: directory.absolute, prefix: "", names: names)]
    }

    /// The next entry, or nil at the end. A directory that cannot be opened fails the walk.
    public mutating func next() throws(StoreError) -> TreeEntry? {
        while let top = stack.last {
            guard top.next < top.names.count else {
                stack.removeLast()
                continue
            }
            let name = top.names[top.next]
            stack[stack.count - 1].next += 1
            let absolute = top.absolute + "/" + name
            let relative = top.prefix.isEmpty ? name : top.prefix + "/" + name
            // An agent's state directory given with --state below the root is not data.
            if StatePaths.isProtected(absolute) { continue }
            guard let e = TreeScanner.entry(at: absolute, relative: relative, skipped: &skipped) else { continue }
            if e.kind == .directory {
                let names = try TreeScanner.children(of: absolute, prefix: relative, skipState: false, skipped: &skipped)
                // Another agent's state directory (it carries the marker) is not data either.
                if StatePaths.isStateDirectory(names: names) { continue }
                stack.append(Level(absolute: absolute, prefix: relative, names: names))
            }
            return e
        }
        return nil
    }

    /// Entries that could not be transferred since the last call, with the reason.
    public mutating func takeSkipped() -> [StoreError] {
        defer { skipped = [] }
        return skipped
    }
}
