import BargeDigest
import Foundation
import Synchronization

/// The coordinator's API tokens: kept in the journal as SHA-256 hashes of the secret, and in
/// memory for the check each request makes. A token is `barge_` and 64 hex digits (256 random
/// bits), so a plain hash is enough: there is nothing to guess from it.
public final class APITokens: Sendable {
    /// A token as listed: never its secret.
    public struct Entry: Codable, Sendable, Equatable {
        public let name: String
        public let role: APIRole
        public let createdAt: Double
    }

    public static let adminFileName = "admin.token"
    static let prefix = "barge_"

    private let journal: Journal
    private let byHash: Mutex<[SHA256Digest: Entry]>
    /// Serialises creations and revocations (each a journal write), apart from the lookups.
    private let changes = Mutex(())

    public init(journal: Journal) throws {
        self.journal = journal
        var map: [SHA256Digest: Entry] = [:]
        for (hash, entry) in try journal.apiTokens() { map[hash] = entry }
        byHash = Mutex(map)
    }

    /// The identity a presented secret stands for, or nil.
    public func identify(_ secret: String) -> APIIdentity? {
        let hash = Self.hash(secret)
        return byHash.withLock { $0[hash] }.map { APIIdentity(name: $0.name, role: $0.role) }
    }

    public var entries: [Entry] {
        byHash.withLock { Array($0.values) }.sorted { $0.name < $1.name }
    }

    /// Makes a token; returns its secret, which is shown once and never stored.
    public func create(name: String, role: APIRole, now: Double = Date().timeIntervalSince1970) throws -> String {
        try Self.check(name: name)
        let secret = Self.newSecret()
        let entry = Entry(name: name, role: role, createdAt: now)
        try changes.withLock { _ in
            guard !entries.contains(where: { $0.name == name }) else { throw APITokenError.exists(name) }
            // The journal write (an fsync) happens outside the map's lock, so that requests
            // being checked meanwhile do not wait for it.
            try journal.insertAPIToken(entry, hash: Self.hash(secret))
            byHash.withLock { $0[Self.hash(secret)] = entry }
        }
        return secret
    }

    /// Revokes a token by name; requests with it get 401 from now on. The last admin token
    /// stays, checked and removed under one lock, so two revocations cannot both pass.
    public func revoke(name: String) throws {
        try changes.withLock { _ in
            let all = byHash.withLock { $0 }
            guard let (hash, entry) = all.first(where: { $0.value.name == name }) else { throw APITokenError.unknown(name) }
            if entry.role == .admin, all.values.filter({ $0.role == .admin }).count == 1 { throw APITokenError.lastAdmin(name) }
            try journal.deleteAPIToken(name: name)
            _ = byHash.withLock { $0.removeValue(forKey: hash) }
        }
    }

    /// On the first start (no token at all), an `admin` token written to `directory/admin.token`
    /// (mode 0600, by a temporary name and a rename); returns the file's path when it made one.
    @discardableResult
    public func ensureAdmin(in directory: String) throws -> String? {
        guard entries.isEmpty else { return nil }
        let path = directory + "/" + Self.adminFileName
        let temporary = path + ".tmp"
        let secret = Self.newSecret()
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw APITokenError.io("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array((secret + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw APITokenError.io("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        // The name durable before the journal holds its hash: after a power cut the journal
        // could hold it with `admin.token` gone, and no token to give (a reading review).
        let parent = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        let parentSynced = parent >= 0 && fsync(parent) == 0
        let code = errno
        if parent >= 0 { close(parent) }
        guard parentSynced else { throw APITokenError.io("cannot sync \(directory) after writing \(path): \(String(cString: strerror(code)))") }
        let entry = Entry(name: "admin", role: .admin, createdAt: Date().timeIntervalSince1970)
        try journal.insertAPIToken(entry, hash: Self.hash(secret))
        byHash.withLock { $0[Self.hash(secret)] = entry }
        return path
    }

    static func hash(_ secret: String) -> SHA256Digest { SHA256.hash(Array(secret.utf8)) }

    static func newSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        return prefix + Hex.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    /// Names are for people and logs: 1 to 64 letters, digits, `.`, `_` and `-`.
    static func check(name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard (1...64).contains(name.count), name.allSatisfy(allowed.contains) else { throw APITokenError.badName(name) }
    }
}

public enum APITokenError: Error, CustomStringConvertible, Equatable {
    case exists(String)
    case unknown(String)
    case lastAdmin(String)
    case badName(String)
    case io(String)

    public var description: String {
        switch self {
        case .exists(let n): "a token named '\(n)' exists; revoke it first or choose another name"
        case .unknown(let n): "no token named '\(n)'"
        case .lastAdmin(let n): "'\(n)' is the last admin token: create another admin token before revoking it"
        case .badName(let n): "'\(n)' is not a token name: use 1 to 64 letters, digits, '.', '_' or '-'"
        case .io(let m): m
        }
    }
}
