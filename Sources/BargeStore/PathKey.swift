/// A path or file name that is equal, hashed and ordered by its bytes.
///
/// Swift's `String` compares and hashes by Unicode canonical equivalence: "é" (U+00E9) and
/// "e\u{301}" (e and a combining accent) are equal as strings. To Linux they are two names, and
/// both may sit in one directory (files from a Mac, or from two tools that normalise differently).
/// Every set or dictionary of paths, and every comparison of one path with another, goes through
/// this type, so that two such files are never taken for one: a destination agent that did so
/// wrote one file's bytes under the other's name.
public struct PathKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let string: String

    public init(_ string: String) { self.string = string }
    public init(_ string: Substring) { self.string = String(string) }

    public static func == (a: PathKey, b: PathKey) -> Bool { sameBytes(a.string, b.string) }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(string.utf8.count)
        var copy = string
        copy.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// By bytes, as `memcmp` (and SQLite's BINARY collation, and the scan's listing order) order them.
    public static func < (a: PathKey, b: PathKey) -> Bool { a.string.utf8.lexicographicallyPrecedes(b.string.utf8) }

    public var description: String { string }

    /// Whether two strings hold the same bytes (not merely canonically equivalent characters).
    public static func sameBytes(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a.utf8.elementsEqual(b.utf8)
    }

    /// Whether `path` is `ancestor` or lies beneath it (`ancestor/…`), by bytes.
    public static func isWithin(_ path: String, _ ancestor: String) -> Bool {
        let p = path.utf8, a = ancestor.utf8
        guard p.starts(with: a) else { return false }
        return p.count == a.count || p[p.index(p.startIndex, offsetBy: a.count)] == UInt8(ascii: "/")
    }
}

extension PathKey {
    /// The non-empty parts of `path` between its "/" bytes. `split(separator: "/")` on a `String`
    /// splits between characters, and a name that begins with a combining mark makes one
    /// character of the "/" before it: "a/\u{301}b" would be a single part.
    public static func components(_ path: String) -> [Substring] {
        var parts: [Substring] = []
        var start = path.startIndex
        var i = path.utf8.startIndex
        while i < path.utf8.endIndex {
            if path.utf8[i] == UInt8(ascii: "/") {
                if start < i { parts.append(path[start..<i]) }
                start = path.utf8.index(after: i)
            }
            i = path.utf8.index(after: i)
        }
        if start < path.endIndex { parts.append(path[start...]) }
        return parts
    }

    /// Where the last "/" byte of `path` is, if any (`components` says why not `lastIndex(of:)`).
    public static func lastSlash(_ path: String) -> String.Index? {
        path.utf8.lastIndex(of: UInt8(ascii: "/"))
    }
}
