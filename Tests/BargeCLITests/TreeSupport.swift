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
    /// Names are read, sorted and printed by their bytes (anything but printable ASCII as \xNN),
    /// so two names that Swift's `String` takes for one ("é" and "e\u{301}"), or a name that is
    /// not UTF-8, are told apart.
    static func snapshot(_ root: URL) throws -> [String] {
        var lines: [String] = []
        func walk(_ relative: [UInt8]) throws {
            let path = Array(root.path.utf8) + (relative.isEmpty ? [] : [UInt8(ascii: "/")] + relative)
            let shown = relative.isEmpty ? "." : escape(relative)
            var st = stat()
            guard withCPath(path, { lstat($0, &st) }) == 0 else { throw CocoaError(.fileReadNoSuchFile) }
            let type = st.st_mode & S_IFMT
            var line = "\(shown) mode=\(String(st.st_mode & 0o7777, radix: 8)) mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
            switch type {
            case S_IFDIR:
                line += " dir"
                if !relative.isEmpty { lines.append(line) }
                for name in try names(path) {
                    try walk(relative.isEmpty ? name : relative + [UInt8(ascii: "/")] + name)
                }
                if relative.isEmpty { lines.append(line) }
                return
            case S_IFLNK:
                var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = withCPath(path) { readlink($0, &buffer, buffer.count - 1) }
                guard n >= 0 else { throw CocoaError(.fileReadUnknown) }
                line = "\(shown) link -> \(escape(Array(buffer[0..<n]))) mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
            case S_IFREG:
                let fd = withCPath(path) { open($0, O_RDONLY) }
                guard fd >= 0 else { throw CocoaError(.fileReadNoPermission) }
                defer { close(fd) }
                var data = Data()
                var chunk = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let n = read(fd, &chunk, chunk.count)
                    guard n > 0 else { break }
                    data.append(contentsOf: chunk[0..<n])
                }
                line += " size=\(st.st_size) fnv=\(fnv(data))"
            default:
                line += " other"  // a FIFO, socket or device: never opened (a FIFO would block)
            }
            lines.append(line)
        }
        try walk([])
        return lines
    }

    /// The names in a directory other than `.` and `..`, by their bytes, sorted by them.
    static func names(_ directory: [UInt8]) throws -> [[UInt8]] {
        guard let dir = withCPath(directory, { opendir($0) }) else { throw CocoaError(.fileReadNoSuchFile) }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [0x2E] && name != [0x2E, 0x2E] { names.append(name) }
        }
        return names.sorted { $0.lexicographicallyPrecedes($1) }
    }

    static func withCPath<T>(_ path: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
        (path + [0]).withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) } }
    }

    /// Printable ASCII as is (but `\`), everything else as \xNN.
    static func escape(_ bytes: [UInt8]) -> String {
        bytes.map { $0 >= 0x20 && $0 < 0x7F && $0 != 0x5C ? String(UnicodeScalar($0)) : "\\x" + String($0, radix: 16) }.joined()
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
