import Foundation

/// A source root and a destination root in a fresh temporary directory, removed afterwards.
final class Roots {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("barge-agent-\(UUID().uuidString)")
    var source: String { url.appendingPathComponent("src").path }
    var destination: String { url.appendingPathComponent("dst").path }

    init() throws {
        for d in [source, destination] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
    }

    /// Background work of the test (a listener being cancelled, a database closing its log) can
    /// still add or drop a file while the tree is removed, which stops `removeItem` part-way; so
    /// it tries again a few times.
    deinit {
        for _ in 0..<5 {
            try? FileManager.default.removeItem(at: url)
            if !FileManager.default.fileExists(atPath: url.path) { return }
            usleep(20_000)
        }
    }
}
