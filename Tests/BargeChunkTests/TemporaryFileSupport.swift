import Foundation

/// A file in a fresh temporary directory, removed when the value is released.
final class TemporaryFile {
    let directory: URL
    let path: String

    init(_ bytes: [UInt8] = [], name: String = "data.bin") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("barge-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        path = directory.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    deinit { try? FileManager.default.removeItem(at: directory) }
}
