import Foundation

/// Runs the `barge` executable that `swift test` built next to the test bundle.
struct BargeProcess {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static var executable: URL {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("barge")
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        // xctest may be started through a helper; fall back to the build folder of this checkout.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/barge")
    }

    static func run(_ arguments: [String], environment: [String: String] = [:], executable tool: URL? = nil, directory: URL? = nil) throws -> Result {
        let process = Process()
        process.executableURL = tool ?? executable
        if let directory { process.currentDirectoryURL = directory }
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes before waiting, so a full pipe cannot stall the child.
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
    }
}

/// A fresh temporary directory, removed when released.
final class TemporaryDirectory {
    let url: URL
    var path: String { url.path }

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("barge-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { removeTree(url) }
}

/// Removes a tree, deep ones too: `FileManager` gives up on paths past PATH_MAX (the tests of
/// such paths left their directories behind), so `rm -rf`, which walks by descriptor, finishes.
func removeTree(_ url: URL) {
    if (try? FileManager.default.removeItem(at: url)) != nil { return }
    let rm = Process()
    rm.executableURL = URL(fileURLWithPath: "/bin/rm")
    rm.arguments = ["-rf", "--", url.path]
    try? rm.run()
    rm.waitUntilExit()
}

