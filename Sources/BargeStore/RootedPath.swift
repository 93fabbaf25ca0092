#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A path inside an agent's root. Every job path goes through `resolve` before anything is read or
/// written: `a:/ds` and `a:ds` both mean `<root>/ds`; `..` that would climb out of the root, and any
/// symbolic link on the way that leads outside it, are refused.
public struct RootedPath: Hashable, Sendable, CustomStringConvertible {
    /// The root, fully resolved (no symbolic links).
    public let root: String
    /// The path's components below the root; empty for the root itself.
    public let components: [String]

    public var relative: String { components.joined(separator: "/") }
    public var absolute: String { components.isEmpty ? root : root + "/" + relative }
    public var description: String { absolute }

    public static func resolve(_ path: String, under root: String) throws(StoreError) -> RootedPath {
        guard !path.utf8.contains(0) else { throw .invalidPath(path: path, reason: "contains a NUL byte") }
        guard let realRoot = realPath(root) else {
            throw .rootUnusable(root: root, reason: String(cString: strerror(errno)))
        }
        var components: [String] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..":
                guard !components.isEmpty else { throw .escapesRoot(path: path) }
                components.removeLast()
            default:
                guard part.utf8.count <= 255 else { throw .invalidPath(path: path, reason: "a component is over 255 bytes") }
                components.append(String(part))
            }
        }
        let rooted = RootedPath(root: realRoot, components: components)
        // The deepest part of the path that exists must resolve inside the root; what does not exist
        // yet will be created inside it.
        var existing = components
        while true {
            let candidate = existing.isEmpty ? realRoot : realRoot + "/" + existing.joined(separator: "/")
            if let real = realPath(candidate) {
                guard real == realRoot || real.hasPrefix(realRoot == "/" ? "/" : realRoot + "/") else {
                    throw .symlinkEscape(path: path, resolved: real)
                }
                break
            }
            guard errno == ENOENT, !existing.isEmpty else {
                throw .system(operation: "resolve", path: candidate, errno: errno)
            }
            // ENOENT from something that exists is a dangling symbolic link: creating through it
            // would follow it wherever it points.
            var st = stat()
            if lstat(candidate, &st) == 0 {
                throw .symlinkEscape(path: path, resolved: linkTarget(candidate) ?? "a missing target")
            }
            existing.removeLast()
        }
        return rooted
    }

    static func linkTarget(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}
