#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which directory an agent's root is, whatever path each node mounts it at: a random id kept in
/// `<root>/.barge/root-id`, made by the first agent that looks for it. Every agent that sees the
/// same directory (agents of a site on one parallel file system) reads the same id; an agent
/// given another directory by mistake (a node-local disk, a typo) has another. The coordinator
/// compares them (`AgentRegistry.register`): the agents of a site must share one root, or a
/// job's files would be split between two directories and the job would still succeed.
public enum RootIdentity {
    public static let fileName = "root-id"
    /// 16 random bytes as 32 lowercase hex digits.
    public static let length = 32

    /// Whether `text` has the form of an id.
    public static func isValid(_ text: String) -> Bool {
        text.utf8.count == length && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// The id of `root`, made now if no agent made it before. Made race-free among agents
    /// starting together: each writes its own temporary file, durably, and links it to the
    /// shared name; a link that finds the name taken reads the winner's id instead, so the
    /// name never holds a half-written id. The temporary file is named by the process and random
    /// bytes, not by the agent's name, which may be 255 bytes long; pids alone can meet on a
    /// file system that nodes share.
    public static func establish(root: String) throws(StoreError) -> String {
        let directory = root + "/" + TreeScanner.stateDirectory
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw .system(operation: "make the agents' state directory", path: directory, errno: errno)
        }
        let path = directory + "/" + fileName
        if let id = try existing(path) { return id }
        let id = randomHex(bytes: length / 2)
        let temporary = directory + "/" + fileName + ".\(getpid()).\(randomHex(bytes: 8)).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .system(operation: "write the root's id", path: temporary, errno: errno) }
        let text = id + "\n"
        let written = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        let synced = written == text.utf8.count && fsync(fd) == 0
        let failure = errno
        close(fd)
        defer { unlink(temporary) }
        guard synced else { throw .system(operation: "write the root's id", path: temporary, errno: failure) }
        if link(temporary, path) != 0 {
            guard errno == EEXIST else { throw .system(operation: "name the root's id", path: path, errno: errno) }
            guard let theirs = try existing(path) else { throw .system(operation: "read the root's id", path: path, errno: ENOENT) }
            return theirs
        }
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            _ = fsync(dirFD)
            close(dirFD)
        }
        return id
    }

    /// The id at `path`; nil when there is none yet. Anything else there is an error, so that an
    /// agent never compares a made-up id.
    static func existing(_ path: String) throws(StoreError) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw .system(operation: "read the root's id", path: path, errno: errno)
        }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = read(fd, &buffer, buffer.count)
        guard n >= 0 else { throw .system(operation: "read the root's id", path: path, errno: errno) }
        var text = String(decoding: buffer[0..<n], as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        guard isValid(text) else { throw .invalidPath(path: path, reason: "it should hold the root's id, 32 hex digits, and holds something else; remove it and start the agents again") }
        return text
    }

    /// `count` random bytes as lowercase hex.
    private static func randomHex(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in
            let b = UInt8.random(in: 0...255, using: &generator)
            return (b < 16 ? "0" : "") + String(b, radix: 16)
        }.joined()
    }
}
