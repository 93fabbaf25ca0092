import BargeStore
import Foundation
import Testing

/// A fresh directory to use as an agent root, removed afterwards.
final class Sandbox {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("barge-store-\(UUID().uuidString)")
    var root: String { url.appendingPathComponent("root").path }

    init() throws { try FileManager.default.createDirectory(atPath: url.appendingPathComponent("root").path, withIntermediateDirectories: true) }
    deinit {
        // Emptied by descriptor first: `FileManager` gives up on paths past PATH_MAX (the
        // scanner's test of them left its directory behind).
        let fd = open(url.path, O_RDONLY | O_DIRECTORY)
        if fd >= 0 { Self.empty(fd); close(fd) }
        try? FileManager.default.removeItem(at: url)
    }

    /// Removes everything in the directory open as `fd`, a level at a time from the bottom.
    private static func empty(_ fd: Int32) {
        guard let dir = fdopendir(dup(fd)) else { return }
        defer { closedir(dir) }
        while let ent = readdir(dir) {
            // By the name's bytes (some tests make names that are not UTF-8).
            let name = withUnsafeBytes(of: ent.pointee.d_name) { Array($0.prefix { $0 != 0 }) + [0] }
            if name == [0x2E, 0] || name == [0x2E, 0x2E, 0] { continue }
            name.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { n in
                let child = openat(fd, n.baseAddress!, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
                if child >= 0 {
                    empty(child)
                    close(child)
                    unlinkat(fd, n.baseAddress!, AT_REMOVEDIR)
                } else {
                    unlinkat(fd, n.baseAddress!, 0)
                }
            } }
        }
    }

    func file(_ relative: String, _ contents: String = "", mode: Int = 0o644) throws {
        let path = root + "/" + relative
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
    }

    func link(_ relative: String, to target: String) throws {
        try FileManager.default.createSymbolicLink(atPath: root + "/" + relative, withDestinationPath: target)
    }

    /// A sandbox whose root is a tmpfs of `size` (tmpfs's spelling: 1m, 4m), for tests of a full
    /// disk, and the path of `file` in it. Needs `Tmpfs.available`. Undo with `unmount`.
    static func onTmpfs(_ size: String, file: String, inodes: Int? = nil) throws -> (Sandbox, RootedPath) {
        let s = try Sandbox()
        #expect(Tmpfs.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)" + (inodes.map { ",nr_inodes=\($0)" } ?? ""), "tmpfs", s.root]))
        return (s, try RootedPath.resolve(file, under: s.root))
    }

    /// Lazy: the root's cached directory descriptor keeps the mount busy until the process ends.
    func unmount() { Tmpfs.run("/bin/umount", ["-l", root]) }
}

/// Whether this process can mount a small tmpfs (root with CAP_SYS_ADMIN), for full-disk tests.
enum Tmpfs {
    static let available: Bool = {
        guard geteuid() == 0 else { return false }
        let probe = FileManager.default.temporaryDirectory.appendingPathComponent("barge-tmpfs-probe-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: probe, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: probe) }
        guard run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe]) else { return false }
        _ = run("/bin/umount", [probe])
        return true
    }()

    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }
}
