import BargeDigest
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where things are in a cold store directory (`--cold DIR`), which a site's agents share:
///
///     DIR/config.json          format, store id, encryption and key check (written once)
///     DIR/catalog.sqlite       the site's catalog: packs, chunks, files (SQLite, WAL)
///     DIR/packs/XX/<id>.pack   sealed packs, named by their SHA-256 (XX: its first two digits)
///     DIR/tmp/                 packs being written
///     DIR/lock                 writers hold it shared, `gc` exclusive (flock)
///     DIR/locks/<hash>.lock    a tier job's pages run one at a time, whichever agent (flock)
public struct ColdLayout: Sendable {
    public let directory: String

    public init(directory: String) {
        var d = directory
        while d.count > 1 && d.hasSuffix("/") { d.removeLast() }
        self.directory = d
    }

    public var configPath: String { directory + "/config.json" }
    public var catalogPath: String { directory + "/catalog.sqlite" }
    public var packsDirectory: String { directory + "/packs" }
    public var temporaryDirectory: String { directory + "/tmp" }
    public var lockPath: String { directory + "/lock" }
    public var locksDirectory: String { directory + "/locks" }
    /// The lock of a tier job's pages: named by the SHA-256 of the job's id, which comes from the
    /// coordinator.
    public func pageLockPath(job: String) -> String {
        locksDirectory + "/" + SHA256.hash(Array(job.utf8)).bytes.prefix(16).map { String(format: "%02x", $0) }.joined() + ".lock"
    }
    public func packDirectory(for id: String) -> String { packsDirectory + "/" + String(id.prefix(2)) }
    public func packPath(for id: String) -> String { packDirectory(for: id) + "/" + id + ".pack" }

    func createDirectories() throws {
        for d in [directory, packsDirectory, temporaryDirectory] where mkdir(d, 0o755) != 0 && errno != EEXIST {
            throw ColdStoreError.system("create", d, errno)
        }
    }

    static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ColdStoreError.system("open", path, errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw ColdStoreError.system("fsync", path, errno) }
    }
}

/// `config.json`: written once, by whichever agent opens the store first.
struct ColdConfig: Codable, Equatable {
    static let currentFormat = "barge-cold/1"
    var format: String
    /// 16 random bytes, hex: the salt of the key derivation.
    var storeID: String
    /// `none` or `aes-256-gcm`.
    var encryption: String
    /// With encryption: HKDF's key-check output, so a wrong key file is refused by name.
    var keyCheck: String?
    /// Raw chunk size used when files are cut for the store.
    var chunkSize: Int

    enum CodingKeys: String, CodingKey {
        case format, storeID = "store_id", encryption, keyCheck = "key_check", chunkSize = "chunk_size"
    }

    /// Reads the store's config, or creates it (by a temporary file and `link`, so that two agents
    /// starting together agree on one).
    static func openOrCreate(_ layout: ColdLayout, keyMaterial: [UInt8]?) throws -> (ColdConfig, ColdKeys?) {
        if let existing = try read(layout) { return (existing, try keys(existing, keyMaterial, layout)) }
        var random = SystemRandomNumberGenerator()
        let id = (0..<16).map { _ in UInt8.random(in: 0...255, using: &random) }
        var config = ColdConfig(format: currentFormat, storeID: Hex.encode(id), encryption: keyMaterial == nil ? "none" : "aes-256-gcm",
                                keyCheck: nil, chunkSize: 1 << 20)
        if let keyMaterial { config.keyCheck = try ColdKeys(keyMaterial: keyMaterial, storeID: id).check }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do { data = try encoder.encode(config) } catch { throw ColdStoreError("cannot encode the cold-store config: \(error)") }
        let temporary = layout.temporaryDirectory + "/config-" + config.storeID + ".json"
        do { try data.write(to: URL(fileURLWithPath: temporary)) } catch { throw ColdStoreError("cannot write \(temporary): \(error)") }
        // Durable before it is linked: a config lost to a power cut (empty, or garbage) makes
        // every agent refuse the store, and an encrypted store's packs unreadable (its store id
        // is the key's salt). Before, the fsync's result was ignored (a reading review).
        let fd = open(temporary, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            unlink(temporary)
            throw ColdStoreError.system("open", temporary, code)
        }
        let synced = fsync(fd) == 0 ? 0 : errno
        close(fd)
        guard synced == 0 else {
            unlink(temporary)
            throw ColdStoreError.system("fsync", temporary, synced)
        }
        let linked = link(temporary, layout.configPath)
        let code = errno
        unlink(temporary)
        if linked != 0 && code != EEXIST { throw ColdStoreError.system("create", layout.configPath, code) }
        try ColdLayout.syncDirectory(layout.directory)
        guard let settled = try read(layout) else { throw ColdStoreError("\(layout.configPath) vanished while it was created") }
        return (settled, try keys(settled, keyMaterial, layout))
    }

    private static func read(_ layout: ColdLayout) throws -> ColdConfig? {
        guard let data = FileManager.default.contents(atPath: layout.configPath) else { return nil }
        let config: ColdConfig
        do { config = try JSONDecoder().decode(ColdConfig.self, from: data) } catch {
            throw ColdStoreError("\(layout.configPath) is not a Barge cold-store config: \(error)")
        }
        guard config.format == currentFormat else {
            throw ColdStoreError("\(layout.configPath) is format \(config.format); this build reads \(currentFormat)")
        }
        return config
    }

    private static func keys(_ config: ColdConfig, _ keyMaterial: [UInt8]?, _ layout: ColdLayout) throws -> ColdKeys? {
        switch (config.encryption, keyMaterial) {
        case ("none", nil): return nil
        case ("none", .some):
            throw ColdStoreError("the cold store \(layout.directory) was created without encryption; drop --cold-key-file, or use a new directory")
        case ("aes-256-gcm", nil):
            throw ColdStoreError("the cold store \(layout.directory) is encrypted: pass --cold-key-file with its key")
        case ("aes-256-gcm", .some(let material)):
            guard let id = Hex.decode(config.storeID), id.count == 16 else { throw ColdStoreError("\(layout.configPath) has a malformed store_id") }
            let keys = try ColdKeys(keyMaterial: material, storeID: id)
            guard keys.check == config.keyCheck else {
                throw ColdStoreError("--cold-key-file does not hold the key of the cold store \(layout.directory)")
            }
            return keys
        default:
            throw ColdStoreError("\(layout.configPath) names an unknown encryption '\(config.encryption)'")
        }
    }
}
