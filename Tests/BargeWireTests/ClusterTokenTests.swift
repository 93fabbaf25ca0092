import BargeWire
import Foundation
import Testing

struct ClusterTokenTests {
    func file(_ contents: [UInt8]) throws -> (URL, String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-token-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("token").path
        try Data(contents).write(to: URL(fileURLWithPath: path))
        return (dir, path)
    }

    @Test func surroundingWhiteSpaceIsIgnored() throws {
        let (dir, path) = try file(Array("  s3cret-cluster-token-0123\n".utf8))
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(try ClusterToken(contentsOf: path).bytes == Array("s3cret-cluster-token-0123".utf8))
    }

    @Test func shortEmptyMissingAndHugeFilesAreRefusedWithReasons() throws {
        let (dir, short) = try file(Array("tiny\n".utf8))
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: TokenError.invalid(short, .tooShort(4))) { try ClusterToken(contentsOf: short) }
        #expect(throws: TokenError.tooShort(0)) { try ClusterToken(bytes: Array("\n\n".utf8)) }
        #expect(throws: TokenError.unreadable("/nonexistent/token", "No such file or directory")) {
            try ClusterToken(contentsOf: "/nonexistent/token")
        }
        let (dir2, huge) = try file([UInt8](repeating: 0x41, count: 5000))
        defer { try? FileManager.default.removeItem(at: dir2) }
        #expect(throws: TokenError.tooLarge(huge)) { try ClusterToken(contentsOf: huge) }
        #expect(TokenError.tooShort(4).description.contains("at least 16"))
    }
}
