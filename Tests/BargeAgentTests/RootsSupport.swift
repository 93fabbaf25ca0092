import Foundation

/// A source root and a destination root in a fresh temporary directory, removed afterwards.
final class Roots {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("barge-agent-\(UUID().uuidString)")
    var source: String { url.appendingPathComponent("src").path }
    var destination: String { url.appendingPathComponent("dst").path }

    init() throws {
        for d in [source, destination] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}
