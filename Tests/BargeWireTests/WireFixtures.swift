import BargeWire
import NIOCore

enum Fixtures {
    static let token = Array("correct horse battery staple 42".utf8)
    static let clientNonce = [UInt8](repeating: 0xC1, count: 32)
    static let serverNonce = [UInt8](repeating: 0x5E, count: 32)

    static let messages: [Message] = [
        .hello(Hello(minVersion: 1, maxVersion: 3, role: .agent, name: "dtn01.site-a ✓", nonce: clientNonce)),
        .challenge(Challenge(version: 1, nonce: serverNonce, proof: [UInt8](repeating: 7, count: 32), maxPayloadLength: 1 << 24)),
        .auth(Auth(proof: [UInt8](repeating: 9, count: 32))),
        .welcome(Welcome(serverName: "coordinator")),
        .register(Register(name: "dtn01", site: "site-a", root: "/data/archive", dataHost: "dtn01.example", dataPort: 7500, maxInFlight: 16)),
        .registered(Registered(heartbeatIntervalMillis: 1000, agentTimeoutMillis: 15000)),
        .heartbeat(Heartbeat(sequence: 42, inFlight: 3)),
        .error(ErrorMessage(code: .authenticationFailed, reason: "wrong token")),
    ]

    static func bytes(_ message: Message) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeFrame(message.frame())
        return b
    }
}
