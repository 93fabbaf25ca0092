import BargeAgent
import BargeBench
import BargeWire
import Foundation
import Testing

/// Chunks between two agents' roots over real loopback TCP, through the data-plane listener.
struct DataPlaneSocketTests {
    static let token = try! ClusterToken(bytes: Array("data-plane-test-token-0123456".utf8))

    @Test func aFileCrossesTheWireIntactDespiteCorruption() async throws {
        let roots = try Roots()
        let bytes = SampleData.float64Field(bytes: (5 << 20) + 77)
        try Data(bytes).write(to: URL(fileURLWithPath: roots.source + "/field.f64"))
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: Self.token, name: "b1")
        let serving = Task { try await listener.run() }
        defer { serving.cancel() }

        var rng = SplitMix64(seed: 9)
        let source = ChunkSource(root: roots.source, corruptFraction: 0.2, random: { rng.next() })
        let client = DataPlaneClient(host: "127.0.0.1", port: listener.localAddress!.port!, token: Self.token, name: "a1")
        let (sent, resent) = try await client.withStream { stream -> (Int, Int) in
            var sent = 0, resent = 0
            var offset = 0
            while offset < bytes.count {
                let length = min(1 << 20, bytes.count - offset)
                let place = ChunkPlace(job: "j", path: "in/field.f64", offset: UInt64(offset))
                while true {
                    let chunk = try source.chunk(sourcePath: "field.f64", offset: UInt64(offset), length: length, fileSize: UInt64(bytes.count), destination: place)
                    sent += 1
                    let reply = try await stream.send(.chunkData(chunk))
                    if case .chunkAck = reply { break }
                    guard case .chunkNack(let nack) = reply, nack.reason == .corrupt, resent < 50 else { throw CocoaError(.coderInvalidValue) }
                    resent += 1
                }
                offset += length
            }
            let done = try await stream.send(.fileDone(FileDone(place: ChunkPlace(job: "j", path: "in/field.f64", offset: 0),
                                                                  size: UInt64(bytes.count), mode: 0o600, mtimeSeconds: 1_500_000_000, mtimeNanoseconds: 42)))
            guard case .chunkAck = done else { throw CocoaError(.coderInvalidValue) }
            return (sent, resent)
        }
        #expect(resent > 0)
        #expect(sent == 6 + resent)
        let path = roots.destination + "/in/field.f64"
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) == bytes)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect(attributes[.posixPermissions] as? Int == 0o600)
        #expect((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 == 1_500_000_000.000000042)
        await listener.close()
    }

    @Test func wrongTokensAndAgentRolesAreRefused() async throws {
        let roots = try Roots()
        let listener = try await DataPlaneListener.bind(host: "127.0.0.1", port: 0, root: roots.destination, token: Self.token, name: "b1")
        let serving = Task { try await listener.run() }
        defer { serving.cancel() }
        let port = listener.localAddress!.port!
        let wrong = DataPlaneClient(host: "127.0.0.1", port: port, token: try ClusterToken(bytes: Array("not-this-clusters-token-00000".utf8)), name: "x")
        await #expect(throws: HandshakeFailure.self) { try await wrong.withStream { _ in () } }
        // A coordinator-style (agent role) connection gets an error instead of a data plane.
        let reply = try await BargeConnection.withConnection(host: "127.0.0.1", port: port, token: Self.token, name: "a1", role: .agent) { _, inbound, _ in
            var frames = inbound.makeAsyncIterator()
            return try await frames.next().map { try Message(frame: $0) }
        }
        guard case .error(let e)? = reply else { Issue.record("no error for the wrong role"); return }
        #expect(e.reason.contains("data-plane listener"))
        await listener.close()
    }
}
