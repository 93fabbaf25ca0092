import BargeBench
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Builds the edge-case tree the transfer tests send, and compares trees the way a user would
/// check a copy: type, mode, size, mtime (to the nanosecond), link target and bytes of every entry.
enum TreeSupport {
    /// Every edge case the cluster issue names: a file cut into several units, a sparse file,
    /// empty files and directories, symbolic links (relative, absolute, dangling), unusual modes,
    /// unicode and odd names, and many small files.
    static func makeEdgeCaseTree(at root: URL, smallFiles: Int = 200) throws {
        let fm = FileManager.default
        func put(_ path: String, _ bytes: [UInt8], mode: Int = 0o644) throws {
            let url = root.appendingPathComponent(path)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(bytes).write(to: url)
            try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
        }
        try put("big/field.f32", SampleData.float32Field(bytes: (9 << 20) + 123))
        try put("big/noise.bin", SampleData.random(bytes: (5 << 20) + 7, seed: 9))
        // Sparse: 6 MiB with only its last MiB written.
        let sparse = root.appendingPathComponent("sparse.bin")
        fm.createFile(atPath: sparse.path, contents: nil)
        let handle = try FileHandle(forWritingTo: sparse)
        try handle.seek(toOffset: 5 << 20)
        try handle.write(contentsOf: Data(SampleData.text(bytes: 1 << 20)))
        try handle.close()
        try put("empty.txt", [])
        try put("données à ü 🚀.txt", Array("unicode\n".utf8))
        try put("odd 'name' $&;|.txt", Array("odd\n".utf8))
        try put("new\nline.txt", Array("newline in the name\n".utf8))
        try put("modes/read-only.txt", Array("0444\n".utf8), mode: 0o444)
        try put("modes/run.sh", Array("#!/bin/sh\n".utf8), mode: 0o750)
        try put("deep/a/b/c/d/e/leaf.txt", SampleData.text(bytes: 3000))
        for i in 0..<smallFiles {
            try put("small/\(i % 7)/f\(i).dat", SampleData.generate(i % 2 == 0 ? .text : .random, bytes: 1 + (i * 997) % 20_000, seed: UInt64(i)))
        }
        try fm.createDirectory(at: root.appendingPathComponent("empty-dir/nested-empty"), withIntermediateDirectories: true)
        try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: root.appendingPathComponent("empty-dir/nested-empty").path)
        try fm.createDirectory(at: root.appendingPathComponent("links"), withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("links/to-field").path, withDestinationPath: "../big/field.f32")
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("links/dangling").path, withDestinationPath: "no/such/target")
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("links/absolute").path, withDestinationPath: "/etc/hostname")
        // Directory mtimes last, so they are not moved by what was created inside.
        setMtime(root.appendingPathComponent("deep/a").path, seconds: 1_500_000_000, nanoseconds: 123_456_789)
    }

    static func setMtime(_ path: String, seconds: Int, nanoseconds: Int) {
        var times = [timespec(tv_sec: seconds, tv_nsec: nanoseconds), timespec(tv_sec: seconds, tv_nsec: nanoseconds)]
        _ = utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
    }

    /// One line per entry: path, type, mode, size, mtime, link target, and a hash of the bytes.
    static func snapshot(_ root: URL) throws -> [String] {
        var lines: [String] = []
        func walk(_ relative: String) throws {
            let path = relative.isEmpty ? root.path : root.path + "/" + relative
            var st = stat()
            guard lstat(path, &st) == 0 else { throw CocoaError(.fileReadNoSuchFile) }
            let type = st.st_mode & S_IFMT
            var line = "\(relative.isEmpty ? "." : relative) mode=\(String(st.st_mode & 0o7777, radix: 8)) mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
            switch type {
            case S_IFDIR:
                line += " dir"
                if !relative.isEmpty { lines.append(line) }
                for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted() {
                    try walk(relative.isEmpty ? name : relative + "/" + name)
                }
                if relative.isEmpty { lines.append(line) }
                return
            case S_IFLNK:
                line = "\(relative) link -> \(try FileManager.default.destinationOfSymbolicLink(atPath: path)) mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
            default:
                let data = try Data(contentsOf: URL(fileURLWithPath: path))
                line += " size=\(st.st_size) fnv=\(fnv(data))"
            }
            lines.append(line)
        }
        try walk("")
        return lines
    }

    static func fnv(_ data: Data) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in data { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(h, radix: 16)
    }

    /// Leftovers a transfer must never leave behind.
    static func partials(_ root: URL) -> [String] {
        let e = FileManager.default.enumerator(atPath: root.path)
        var found: [String] = []
        while let p = e?.nextObject() as? String {
            if p.contains(".barge-") { found.append(p) }
        }
        return found
    }
}
