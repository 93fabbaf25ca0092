import BargeCodec
import BargeDigest
@testable import BargeTier
import Foundation
import Testing

/// The test vector of docs/cold-store.md: one chunk, "hello, cold store\n", stored raw in an
/// unencrypted pack. Any reader written from the document must produce and accept these bytes.
struct PackVectorTests {
    static let raw = Array("hello, cold store\n".utf8)
    /// As docs/cold-store.md gives it, line by line.
    static let packHex = [
        "424152475041434b0100000000000000",  // header: BARGPACK, version 1, flags 0
        "4247434b01000000" + "0000000000000012" + "0000000000000012" + "3114b0f50593c11282a216a8aba8a38f",  // chunk header
        "68656c6c6f2c20636f6c642073746f72650a",  // the 18 raw bytes
        "24cbbf3c2f3bdcbef633dfe209e22e3e8e55b34d6856b982225fd02a22d626b5",  // index: chunk id (SHA-256)
        "1000000000000000" + "3a000000" + "12000000",  // offset 16, stored 58, raw 18
        "4a00000000000000" + "30000000" + "01000000" + "4241524749445831",  // trailer
    ].joined()
    static let packName = "a4a0ef83a87b8425287f8b42d812f0f12f2c4aa89c144ec938417e0d01a46483"

    @Test func theDocumentedPackIsWhatTheWriterWrites() throws {
        let s = try ColdSandbox()
        let store = try ColdStore(directory: s.cold)
        let writer = try PackWriter(layout: store.layout, keys: nil)
        let encoded = try ChunkEncoder().encode(Self.raw, as: .none)
        let id = SHA256.hash(Self.raw).bytes
        try encoded.withUnsafeBytes { try writer.append(id: id, encoded: $0, rawLength: Self.raw.count) }
        let sealed = try writer.seal()
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: store.layout.packPath(for: sealed.id))))
        #expect(Hex.encode(bytes) == Self.packHex)
        #expect(sealed.id == Self.packName && sealed.id == SHA256.hash(bytes).description)
        #expect(Hex.encode(XXH3.hash128(Self.raw).canonicalBytes) == "3114b0f50593c11282a216a8aba8a38f")
        // And it reads back through the reader.
        let reader = try PackReader(path: store.layout.packPath(for: sealed.id), keys: nil)
        let entries = try reader.index()
        #expect(entries == [PackFormat.Entry(id: id, offset: 16, stored: 58, raw: 18)])
        #expect(try ChunkDecoder().decode(try reader.blob(entries[0])) == Self.raw)
    }

    /// The vector above is the one docs/cold-store.md prints: its hex words, line by line up to
    /// each line's description, and the pack's name.
    @Test func theDocumentPrintsThisVector() throws {
        let doc = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../docs/cold-store.md"), encoding: .utf8)
        let section = try #require(doc.components(separatedBy: "## Test vector").last)
        #expect(section.contains("`\(Self.packName)`"))
        let block = try #require(section.components(separatedBy: "```").dropFirst().first)
        let isHex = { (w: Substring) in !w.isEmpty && w.count % 2 == 0 && w.allSatisfy(\.isHexDigit) }
        let hex = block.split(separator: "\n").map { line in
            line.split(separator: " ").prefix { isHex($0) }.joined()
        }.joined()
        #expect(hex == Self.packHex)
        #expect(hex.count == 2 * 146)
    }
}
