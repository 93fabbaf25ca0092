/// The order in which a scan's pages list entries: depth first, a directory before what it holds,
/// and the entries of each directory by the bytes of their names. So a path precedes another
/// exactly when its components, compared one by one as bytes, come first (an ancestor before its
/// descendants). A coordinator that restarts a scan skips every entry up to the last one it
/// planned, and relies on this order to do so.
public enum ScanOrder {
    /// True when `a` comes before `b` (both relative, `/`-separated; the empty path, the scanned
    /// entry itself, comes first).
    public static func precedes(_ a: String, _ b: String) -> Bool {
        var x = a.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true).makeIterator()
        var y = b.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true).makeIterator()
        while true {
            switch (x.next(), y.next()) {
            case (nil, nil): return false
            case (nil, _): return true
            case (_, nil): return false
            case (let p?, let q?):
                if p.elementsEqual(q) { continue }
                return p.lexicographicallyPrecedes(q)
            }
        }
    }
}
