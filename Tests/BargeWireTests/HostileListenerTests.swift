import BargeWire
import Foundation
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real `BargeServer` on loopback against raw sockets that misbehave. Each bad peer costs only
/// its own connection, and an honest client is served afterwards.
struct HostileListenerTests {
    static let token = try! ClusterToken(bytes: Array("hostile-listener-test-token-01".utf8))

    /// A raw TCP socket to the listener.
    final class RawPeer {
        let fd: Int32
        /// `from`: the local address to connect from (any of 127.0.0.0/8 on loopback).
        init(port: Int, from: String? = nil) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if let from {
                var local = sockaddr_in()
                local.sin_family = sa_family_t(AF_INET)
                local.sin_addr.s_addr = inet_addr(from)
                let bound = withUnsafePointer(to: &local) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
                }
                guard bound else { throw CocoaError(.fileReadUnknown) }
            }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = UInt16(port).bigEndian
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard ok else { throw CocoaError(.fileReadUnknown) }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        deinit { close(fd) }

        func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

        /// Everything the server sends until it closes the connection (or 10 s pass).
        func readToClose() -> [UInt8] {
            var out: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return out }
                out += buffer[0..<n]
            }
        }
    }

    /// Serves `server` with sessions that echo every frame; the errors it reports are collected.
    func echoing(_ server: BargeServer) -> (ErrorLog, Task<Void, Error>) {
        let errors = ErrorLog()
        let serving = Task {
            try await server.serve(session: { _, inbound, outbound in
                for try await frame in inbound { try await outbound.write(frame) }  // echo
            }, onError: { _, error in errors.add("\(error)") })
        }
        return (errors, serving)
    }

    func honestClientIsServed(_ port: Int) async throws {
        let reply = try await BargeConnection.withConnection(host: "127.0.0.1", port: port, token: Self.token, name: "honest", role: .peer) { _, inbound, outbound in
            try await outbound.write(Message.heartbeat(Heartbeat(sequence: 1, inFlight: 0)).frame())
            var frames = inbound.makeAsyncIterator()
            return try await frames.next().map { try Message(frame: $0) }
        }
        #expect(reply == .heartbeat(Heartbeat(sequence: 1, inFlight: 0)))
    }

    @Test func garbageTruncatedAbsurdSlowAndFloodingPeersCostOnlyThemselves() async throws {
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "listener",
                                                handshakeTimeout: .seconds(2), idleTimeout: .seconds(3), maxConnections: 8, maxHandshakes: 8)
        let (errors, serving) = echoing(server)
        defer { serving.cancel() }
        let port = server.localAddress!.port!

        // Garbage: an error frame (bad magic), then a close.
        let garbage = try RawPeer(port: port)
        garbage.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        var reply = ByteBuffer(bytes: garbage.readToClose())
        let first = try #require(try reply.readFrame(maxPayloadLength: 4096))
        guard case .error(let e) = try Message(frame: first) else { Issue.record("no error frame"); return }
        #expect(e.code == .badMagic)

        // An absurd length: refused from the header alone.
        let absurd = try RawPeer(port: port)
        absurd.send([0x42, 0x41, 0x52, 0x47, 1, 0x01, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 8))
        var absurdReply = ByteBuffer(bytes: absurd.readToClose())
        guard case .error(let tooLarge) = try Message(frame: try #require(try absurdReply.readFrame(maxPayloadLength: 4096))) else {
            Issue.record("no error frame"); return
        }
        #expect(tooLarge.code == .frameTooLarge)

        // A truncated frame, and a half frame sent one byte at a time, then silence: closed by the timers.
        let truncated = try RawPeer(port: port)
        truncated.send([0x42, 0x41, 0x52, 0x47, 1, 0x01, 0, 0, 0, 0, 0, 40])
        let slow = try RawPeer(port: port)
        for byte: UInt8 in [0x42, 0x41, 0x52, 0x47, 1] {
            slow.send([byte])
            try await Task.sleep(for: .milliseconds(200))
        }
        let started = Date()
        _ = truncated.readToClose()
        _ = slow.readToClose()
        #expect(Date().timeIntervalSince(started) < 8, "timers closed the stalled peers")

        // A flood (from three addresses, each under its share of the handshakes): connections
        // over the limit are closed at once, and the listener stays up.
        var flood: [RawPeer]? = try (0..<20).map { i in try RawPeer(port: port, from: "127.0.0.\(2 + i % 3)") }
        try await Task.sleep(for: .milliseconds(300))
        #expect(server.activeConnections <= server.maxConnections)
        #expect(errors.contains("already serving 8 connections"))
        #expect(flood?.count == 20)
        flood = nil  // the flood ends; its connections close
        #expect(try await eventually { server.activeConnections == 0 })

        try await honestClientIsServed(port)
    }

    /// Before the handshake ends, only handshake frames are read: any other type is refused from
    /// its header, unparsed, and so is a sealed hello. The refusal names the handshake's state in
    /// words, never a Swift value (it once sent `awaitingAuth(BargeWire.Hello(…nonce…))`).
    @Test func framesBeforeTheHandshakeAreRefusedFromTheirHeader() async throws {
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "listener")
        let serving = Task {
            try await server.serve(session: { _, inbound, _ in for try await _ in inbound {} }, onError: { _, _ in })
        }
        defer { serving.cancel() }
        let port = server.localAddress!.port!
        func refusal(_ bytes: [UInt8]) throws -> ErrorMessage? {
            let peer = try RawPeer(port: port)
            peer.send(bytes)
            var reply = ByteBuffer(bytes: peer.readToClose())
            while let frame = try reply.readFrame(maxPayloadLength: 1 << 16) {
                if case .error(let e) = try Message(frame: frame) { return e }
            }
            return nil
        }
        func bytes(_ message: Message, flags: UInt16 = 0) -> [UInt8] {
            var frame = message.frame()
            frame.flags = flags
            var b = ByteBuffer()
            b.writeFrame(frame)
            return Array(b.readableBytesView)
        }
        let hello = Message.hello(Hello(minVersion: WireVersion.supported.lowerBound, maxVersion: WireVersion.supported.upperBound,
                                        role: .peer, name: "raw", nonce: [UInt8](repeating: 7, count: Hello.nonceLength)))
        // A register (a control message) with a payload that would not even parse.
        let register = try #require(try refusal(bytes(.heartbeat(Heartbeat(sequence: 1, inFlight: 0)))))
        #expect(register.code == .unexpectedMessage && register.reason == "unexpected heartbeat message while in the handshake, before it ended", "\(register)")
        let sealedHello = try #require(try refusal(bytes(hello, flags: Frame.sealedFlag)))
        #expect(sealedHello.code == .sealBroken, "\(sealedHello)")
        // A hello, then a second hello where the auth belongs: the state in words.
        let twice = try #require(try refusal(bytes(hello) + bytes(hello)))
        #expect(twice.reason == "unexpected hello message while in the handshake, waiting for auth", "\(twice)")
        #expect(!twice.reason.contains("BargeWire") && !twice.reason.contains("nonce"))
    }

    /// Idle connections that never start their handshake hold at most `maxHandshakes` slots (and
    /// descriptors) until the handshake timeout, and those from one address at most half of them;
    /// the rest are closed at accept, and a session already open goes on meanwhile. Before, a
    /// thousand idle connections to an agent whose soft limit on descriptors was 1,024 were all
    /// held, and the agent's next file open failed with EMFILE, failing the job it was sending;
    /// and one client could hold every slot, so that no peer got in while it kept them (a 0.4 s
    /// transfer took 39 s).
    @Test func idleUnauthenticatedConnectionsHoldFewSlotsAndASessionGoesOn() async throws {
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "listener",
                                                handshakeTimeout: .seconds(30), maxConnections: 64)
        #expect(server.maxHandshakes == 16 && server.maxHandshakesPerAddress == 8)
        let (errors, serving) = echoing(server)
        defer { serving.cancel() }
        let port = server.localAddress!.port!
        try await BargeConnection.withConnection(host: "127.0.0.1", port: port, token: Self.token, name: "honest", role: .peer) { _, inbound, outbound in
            var frames = inbound.makeAsyncIterator()
            var flood: [RawPeer]? = try (0..<200).map { _ in try RawPeer(port: port, from: "127.0.0.2") }
            #expect(try await eventually { errors.contains("8 connections from this address are already in their handshake") })
            #expect(server.handshakingConnections == 8 && server.activeConnections == 9, "\(server.handshakingConnections) \(server.activeConnections)")
            // A peer at another address is let in meanwhile, and the open session is served.
            try await honestClientIsServed(port)
            try await outbound.write(Message.heartbeat(Heartbeat(sequence: 2, inFlight: 0)).frame())
            #expect(try await frames.next().map { try Message(frame: $0) } == .heartbeat(Heartbeat(sequence: 2, inFlight: 0)))
            // A second address takes the other half; then every slot is held.
            var second: [RawPeer]? = try (0..<50).map { _ in try RawPeer(port: port, from: "127.0.0.3") }
            #expect(try await eventually { server.handshakingConnections == 16 }, "\(server.handshakingConnections)")
            #expect(flood?.count == 200 && second?.count == 50)
            // The rest refused, reported once (then once per 10 s with how many more).
            #expect(errors.count("refused") == 1)
            flood = nil
            second = nil
        }
        #expect(try await eventually { server.activeConnections == 0 && server.handshakingConnections == 0 })
        try await honestClientIsServed(port)
    }

    /// Idle connections from three addresses, each opened again as soon as it was closed, held
    /// every handshake slot, and no agent or peer got in while they went on (h2 of session 52,
    /// F2: the limit per address is half the slots). Now a newcomer takes the slot of the oldest
    /// connection from the address holding the most, which is told `busy`.
    @Test func aFloodFromSeveralAddressesKeepsNoPeerOut() async throws {
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "listener",
                                                handshakeTimeout: .seconds(30), maxConnections: 64)
        let (errors, serving) = echoing(server)
        defer { serving.cancel() }
        let port = server.localAddress!.port!
        let flood = Flood(port: port, addresses: ["127.0.0.2", "127.0.0.3", "127.0.0.4"], each: server.maxHandshakesPerAddress)
        defer { flood.stop() }
        #expect(try await eventually { server.handshakingConnections == server.maxHandshakes && flood.reopened > 20 })
        // Each is served at once (before, each was refused `busy` for as long as the flood went on).
        for _ in 0..<5 { try await honestClientIsServed(port) }
        #expect(errors.contains("its slot went to a newer connection"))
        // The flood still holds the rest.
        #expect(try await eventually { server.handshakingConnections == server.maxHandshakes }, "\(server.handshakingConnections)")
    }

    /// Silent connections from `addresses`, `each` from every one, each opened again as soon as
    /// the listener closes it (a refusal, a slot given away), from a thread of its own until
    /// `stop()`.
    final class Flood: @unchecked Sendable {
        private let lock = NSLock()
        private var stopped = false, reopens = 0
        private let done = DispatchSemaphore(value: 0)

        var reopened: Int { lock.withLock { reopens } }

        init(port: Int, addresses: [String], each: Int) {
            Thread.detachNewThread { [self] in
                var peers = addresses.flatMap { address in (0..<each).map { _ in (address, try? RawPeer(port: port, from: address)) } }
                while !lock.withLock({ stopped }) {
                    for i in peers.indices {
                        if let peer = peers[i].1 {
                            var polled = pollfd(fd: peer.fd, events: Int16(POLLIN), revents: 0)
                            if poll(&polled, 1, 0) == 0 { continue }  // still held open
                        }
                        peers[i].1 = try? RawPeer(port: port, from: peers[i].0)
                        lock.withLock { reopens += 1 }
                    }
                    usleep(5_000)
                }
                peers.removeAll()
                done.signal()
            }
        }

        /// Stops the flood and closes its connections.
        func stop() {
            lock.withLock { stopped = true }
            done.wait()
        }
    }

    /// Handshakes that fail (a client with another token) are reported once per address, then
    /// once per 10 s with how many more there were: each was a warning of its own, 36,681 lines
    /// in 30 s from 50 clients without the token (h2 of session 52).
    @Test func failedHandshakesAreReportedOncePerAddressAndInterval() async throws {
        let server = try await BargeServer.bind(host: "127.0.0.1", port: 0, token: Self.token, name: "listener")
        let (errors, serving) = echoing(server)
        defer { serving.cancel() }
        let port = server.localAddress!.port!
        let wrong = try ClusterToken(bytes: Array("another-cluster-token-entirely-02".utf8))
        for _ in 0..<12 {
            await #expect(throws: (any Error).self) {
                try await BargeConnection.withConnection(host: "127.0.0.1", port: port, token: wrong, name: "intruder", role: .peer) { _, _, _ in () }
            }
        }
        #expect(try await eventually { errors.count("intruder") >= 1 })
        try await Task.sleep(for: .milliseconds(200))
        #expect(errors.count("intruder") == 1, "\(errors.count("intruder")) lines")
        try await honestClientIsServed(port)

        // The policy: the first line from an address, then one an interval later with the count.
        let log = RefusalLog(), t0 = ContinuousClock.now
        #expect(log.admit("10.0.0.1", now: t0) == 0)
        for k in 1...5 { #expect(log.admit("10.0.0.1", now: t0 + .seconds(k)) == nil) }
        #expect(log.admit("10.0.0.2", now: t0 + .seconds(5)) == 0)
        #expect(log.admit("10.0.0.1", now: t0 + .seconds(11)) == 5)
        #expect(log.admit("10.0.0.1", now: t0 + .seconds(12)) == nil)
        #expect(RefusedHandshake(failure: CocoaError(.fileReadUnknown), alsoRefused: 5).description.hasSuffix(" (5 more failed handshakes from this address since the last report)"))
    }

    func eventually(_ condition: () -> Bool) async throws -> Bool {
        for _ in 0..<100 {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
}

/// Errors the listener reported, for assertions.
final class ErrorLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func add(_ line: String) { lock.withLock { lines.append(line) } }
    func contains(_ text: String) -> Bool { lock.withLock { lines.contains { $0.contains(text) } } }
    func count(_ text: String) -> Int { lock.withLock { lines.filter { $0.contains(text) }.count } }
}
