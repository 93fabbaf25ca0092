import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// A TCP listener speaking the Barge protocol: framing and the authenticated handshake in each
/// connection's pipeline, then the caller's session code in plain async code, one child task per
/// connection. Each connection catches its own errors, so one bad peer never takes the listener
/// down. The coordinator's agent listener and the agents' data-plane listeners are both one of these.
public final class BargeServer: Sendable {
    /// `refusal`: the listener was full when it came; it was told `busy` and closed, with no
    /// handshake.
    /// `id`: the connection's number, as `HandshakeSlots` knows it.
    typealias Connection = (channel: NIOAsyncChannel<Frame, Frame>, session: EventLoopFuture<Session>, faults: ProtocolFaults, address: String,
                            ip: String, id: Int, refusal: ServerFull?)

    /// A connection after its handshake.
    public struct Peer: Sendable {
        public let session: Session
        /// "ip:port" of the other end, for logs.
        public let address: String
    }

    private let server: NIOAsyncChannel<Connection, Never>
    /// Connections served at once; more are closed as soon as they are accepted.
    public let maxConnections: Int
    /// Of those, connections whose handshake has not ended: a peer that connects and says
    /// nothing holds one until the handshake timeout. So idle unauthenticated connections (a
    /// port scan, a flood) never take every slot, nor the descriptors the process's files need;
    /// agents and peers refused meanwhile connect again.
    public let maxHandshakes: Int
    /// Of those, from any one address: half. A single client that held every handshake slot
    /// (128 silent connections, each opened again as soon as it was closed) kept every peer out:
    /// a 0.4 s transfer took 39 s, and an agent could not register for 24 s. When every slot is
    /// held, a newcomer takes one from the address holding the most (`HandshakeSlots`).
    public var maxHandshakesPerAddress: Int { max(1, maxHandshakes / 2) }
    private let active: NIOLockedValueBox<Active>

    struct Active {
        var served = 0
        var slots: HandshakeSlots
        /// The channels of connections in their handshake, by id, to close one whose slot is
        /// given to a newcomer.
        var channels: [Int: (channel: Channel, ended: NIOLockedValueBox<Bool>)] = [:]
        var lastID = 0

        /// Connection `id`'s handshake ended: its slot is free. Run on its event loop as the
        /// handshake ends, not when its task next runs: a slot held meanwhile could be given
        /// away, its client, past its `auth`, connected already.
        mutating func handshakeEnded(_ id: Int, from ip: String) {
            channels.removeValue(forKey: id)
            slots.end(id, from: ip)
        }
    }

    /// The address actually bound (port 0 binds a free port).
    public var localAddress: SocketAddress? { server.channel.localAddress }

    private init(server: NIOAsyncChannel<Connection, Never>, maxConnections: Int, maxHandshakes: Int, active: NIOLockedValueBox<Active>) {
        self.server = server
        self.active = active
        self.maxConnections = maxConnections
        self.maxHandshakes = maxHandshakes
    }

    /// A limit on connections served at once: `most`, or the process's limit on open descriptors
    /// divided by `share` when that is lower, so that connections leave room for files (the soft
    /// limit is often 1,024; with it, an agent's connections, refused only at EMFILE, had taken
    /// every descriptor, and a running job failed opening its next file).
    public static func connectionLimit(most: Int = 1024, share: Int = 4) -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return most }
        return max(16, min(most, Int(limit.rlim_cur) / share))
    }

    /// Connections being served now.
    public var activeConnections: Int { active.withLockedValue { $0.served } }

    /// Connections in their handshake now.
    public var handshakingConnections: Int { active.withLockedValue { $0.slots.held } }

    public static func bind(host: String, port: Int, token: ClusterToken, name: String, maxPayloadLength: Int = Frame.defaultMaxPayload,
                            handshakeTimeout: TimeAmount = .seconds(10), idleTimeout: TimeAmount = .seconds(120),
                            maxConnections: Int = BargeServer.connectionLimit(), maxHandshakes: Int? = nil,
                            group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> BargeServer {
        let token = token.bytes
        let maxHandshakes = maxHandshakes ?? max(1, min(128, maxConnections / 4))
        // Counted as each connection is set up, before its handshake can begin: a connection
        // refused later, once its handshake had run (it is quick), looked established to the
        // peer, which then saw a bare close.
        let perAddress = max(1, maxHandshakes / 2)
        let active = NIOLockedValueBox(Active(slots: HandshakeSlots(limit: maxHandshakes, perAddress: perAddress)))
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            // Reads of up to 2 MiB when that much waits in the socket (NIO's default stops at
            // 64 KiB): a chunk's frame then mostly arrives within one read, and `FrameReader`
            // passes it on as a slice of it, where pieces of 64 KiB had to be gathered (a copy of
            // every byte received). It grows only while reads fill it: control traffic stays small.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 2 << 20))
            .bind(host: host, port: port) { channel -> EventLoopFuture<Connection> in
                channel.eventLoop.makeCompletedFuture {
                    let address = Self.describe(channel.remoteAddress)
                    let ip = channel.remoteAddress?.ipAddress ?? "?"
                    let session = channel.eventLoop.makePromise(of: Session.self)
                    let ended = NIOLockedValueBox(false)
                    let (id, refusal, evicted) = active.withLockedValue { n -> (Int, ServerFull?, (channel: Channel, ended: NIOLockedValueBox<Bool>)?) in
                        n.lastID += 1
                        guard n.served < maxConnections else { return (n.lastID, ServerFull(limit: maxConnections, handshaking: false), nil) }
                        switch n.slots.arrive(n.lastID, from: ip) {
                        case .refuse(let fromOneAddress):
                            return (n.lastID, ServerFull(limit: fromOneAddress ? perAddress : maxHandshakes, handshaking: true, fromOneAddress: fromOneAddress), nil)
                        case .admit(let evicting):
                            n.served += 1
                            n.channels[n.lastID] = (channel, ended)
                            return (n.lastID, nil, evicting.flatMap { n.channels.removeValue(forKey: $0) })
                        }
                    }
                    if let evicted { Self.giveWay(evicted.channel, ended: evicted.ended, limit: maxHandshakes) }
                    if let refusal {
                        // Told in words (`busy`), so the peer waits and tries again rather than
                        // fail its unit on a closed connection; nothing it sends is read.
                        try channel.pipeline.syncOperations.addHandler(FrameWriter())
                        try channel.pipeline.syncOperations.addHandler(BusyRefusal(refusal.description))
                        session.fail(refusal)
                        return (channel: try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel), session: session.futureResult,
                                faults: ProtocolFaults(), address: address, ip: ip, id: id, refusal: Optional(refusal))
                    }
                    let handshake = ServerHandshake(token: token, name: name, maxPayloadLength: maxPayloadLength, nonce: freshNonce())
                    let faults = ProtocolFaults()
                    let async: NIOAsyncChannel<Frame, Frame>
                    do {
                        try channel.pipeline.syncOperations.addBargeHandlers(.server(handshake), handshakeTimeout: handshakeTimeout, idleTimeout: idleTimeout)
                        try channel.pipeline.syncOperations.addHandler(FirstByte { active.withLockedValue { $0.slots.heard(id, from: ip) } }, position: .first)
                        try channel.pipeline.syncOperations.addHandler(SessionStartHandler(promise: session))
                        try channel.pipeline.syncOperations.addHandler(faults)
                        async = try NIOAsyncChannel<Frame, Frame>(wrappingChannelSynchronously: channel)
                    } catch {
                        // Never served (the peer closed at once): counted out again.
                        active.withLockedValue { n in
                            n.served -= 1
                            n.handshakeEnded(id, from: ip)
                            _ = n.slots.forget(id)
                        }
                        session.fail(error)
                        throw error
                    }
                    session.futureResult.whenComplete { _ in
                        ended.withLockedValue { $0 = true }
                        active.withLockedValue { $0.handshakeEnded(id, from: ip) }
                    }
                    // The address is read at accept: once the peer has closed (a client that gave
                    // up its handshake at once), the channel no longer knows it, and the refusal
                    // was logged as from an "unknown peer".
                    return (channel: async, session: session.futureResult, faults: faults, address: address, ip: ip, id: id, refusal: nil)
                }
            }
        return BargeServer(server: server, maxConnections: maxConnections, maxHandshakes: maxHandshakes, active: active)
    }

    /// Serves until the task is cancelled or `close()` is called, which ends the open sessions
    /// too. `session` runs for each
    /// authenticated connection; `onRefused` hears of each connection whose handshake failed and of
    /// each session that ended with an error.
    public func serve(
        session: @escaping @Sendable (Peer, NIOAsyncChannelInboundStream<Frame>, NIOAsyncChannelOutboundWriter<Frame>) async throws -> Void,
        onError: @escaping @Sendable (String, Error) -> Void
    ) async throws {
        let refusals = RefusalLog()
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { inbound in
                // Refusals are reported once per 10 s, with how many more there were: a flood
                // of a thousand connections was a thousand warnings.
                var lastReported: ContinuousClock.Instant?
                var unreported = 0
                for try await connection in inbound {
                    if var refusal = connection.refusal {
                        // A flood: refuse at once rather than hold a handshake timer for each.
                        let now = ContinuousClock.now
                        if let last = lastReported, now - last < .seconds(10) {
                            unreported += 1
                        } else {
                            refusal.alsoRefused = unreported
                            onError(connection.address, refusal)
                            lastReported = now
                            unreported = 0
                        }
                        try? await connection.channel.executeThenClose { _, _ in }
                        continue
                    }
                    group.addTask { [active] in
                        await Self.handle(connection, session: session, onError: onError, refusals: refusals,
                                          gaveWay: {
                                              active.withLockedValue { $0.slots.forget(connection.id) }
                                          })
                        active.withLockedValue { $0.served -= 1 }
                    }
                }
            }
            // The listening socket is closed (`close()`, a graceful shutdown): the open sessions
            // end too, or a coordinator with agents connected would never stop.
            group.cancelAll()
        }
    }

    /// A peer's address as the logs give it: `ip:port`.
    static func describe(_ address: SocketAddress?) -> String {
        address.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown peer"
    }

    /// Why a connection was closed on arrival.
    public struct ServerFull: Error, Sendable, CustomStringConvertible {
        public let limit: Int
        /// The limit is that on connections still in their handshake.
        public var handshaking = false
        /// The limit is that on connections from one address still in their handshake.
        public var fromOneAddress = false
        /// Connections refused since the last one reported.
        public var alsoRefused = 0
        public var description: String {
            (fromOneAddress ? "refused: \(limit) connections from this address are already in their handshake"
                : handshaking ? "refused: \(limit) connections are already in their handshake" : "refused: already serving \(limit) connections")
                + (alsoRefused > 0 ? " (\(alsoRefused) more refused since the last report)" : "")
        }
    }

    public func close() async {
        try? await server.channel.close()
    }

    /// A connection still in its handshake gives its slot to a newcomer: it is told `busy`, as a
    /// connection refused on arrival is (a peer waits and tries again), and closed. One whose
    /// handshake ended meanwhile (on its own event loop, where this runs) is left alone.
    static func giveWay(_ channel: Channel, ended: NIOLockedValueBox<Bool>, limit: Int) {
        channel.eventLoop.execute {
            guard !ended.withLockedValue({ $0 }) else { return }
            let reason = "all \(limit) handshake slots are held, most by your address; this connection's slot went to a newer one"
            channel.writeAndFlush(Message.error(ErrorMessage(code: .busy, reason: reason)).frame(allocator: channel.allocator)).whenComplete { _ in
                channel.close(promise: nil)
            }
        }
    }

    /// Tells the listener that a connection's first byte arrived (`HandshakeSlots.heard`: a
    /// connection that has sent nothing is the first to give its slot away), then steps aside.
    final class FirstByte: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        private let heard: () -> Void

        init(_ heard: @escaping () -> Void) { self.heard = heard }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            heard()
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    /// A connection closed in its handshake because its slot went to a newer connection
    /// (`HandshakeSlots`).
    public struct GaveWay: Error, Sendable, CustomStringConvertible {
        public var description: String {
            "closed in its handshake: every handshake slot was held, most by this address, and its slot went to a newer connection"
        }
    }

    /// The whole pipeline of a connection refused on arrival: it says `busy` with the reason,
    /// closes, and reads nothing the peer sends.
    final class BusyRefusal: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = Frame
        private let reason: String
        private var said = false

        init(_ reason: String) { self.reason = reason }

        func handlerAdded(context: ChannelHandlerContext) { if context.channel.isActive { say(context) } }
        func channelActive(context: ChannelHandlerContext) { say(context) }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

        private func say(_ context: ChannelHandlerContext) {
            guard !said else { return }
            said = true
            context.closeAfterWriting(wrapOutboundOut(Message.error(ErrorMessage(code: .busy, reason: reason)).frame(allocator: context.channel.allocator)))
        }
    }

    private static func handle(
        _ connection: Connection,
        session run: @Sendable (Peer, NIOAsyncChannelInboundStream<Frame>, NIOAsyncChannelOutboundWriter<Frame>) async throws -> Void,
        onError: @Sendable (String, Error) -> Void,
        refusals: RefusalLog,
        gaveWay: @Sendable () -> Bool
    ) async {
        let address = connection.address
        // Asked once on every path: a connection that gave its slot away is marked until then.
        var asked = false
        defer { if !asked { _ = gaveWay() } }
        // Everything happens inside executeThenClose, which closes the connection and finishes its
        // writer on every path (an NIOAsyncChannel left without it traps when released).
        try? await connection.channel.executeThenClose { inbound, outbound in
            let session: Session
            do {
                session = try await connection.session.get()
            } catch {
                // The handshake handler has already told the peer and closed the connection (or
                // the connection gave its slot away). The listener hears of the first from an
                // address, then of one every 10 s with a count.
                asked = true
                let failure: Error = gaveWay() ? GaveWay() : error
                if let unsaid = refusals.admit(connection.ip) { onError(address, RefusedHandshake(failure: failure, alsoRefused: unsaid)) }
                return
            }
            do {
                try await run(Peer(session: session, address: address), inbound, outbound)
            } catch {
                // A write that failed because the connection was closed for a protocol error is
                // reported as that error.
                onError(address, connection.faults.first ?? error)
                return
            }
            // The session ended because the peer broke the protocol (a frame that did not open,
            // say): the error handler told the peer and closed; the listener's owner hears of it too.
            if let fault = connection.faults.first { onError(address, fault) }
        }
    }
}

/// The first protocol error on a connection after its handshake (`ProtocolEvent.protocolError`),
/// for the listener to report once the session has ended.
final class ProtocolFaults: ChannelInboundHandler, Sendable {
    typealias InboundIn = Frame
    typealias InboundOut = Frame

    private let recorded = NIOLockedValueBox<ProtocolFault?>(nil)

    var first: ProtocolFault? { recorded.withLockedValue { $0 } }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .protocolError(let message)? = event as? ProtocolEvent {
            recorded.withLockedValue { if $0 == nil { $0 = ProtocolFault(error: message) } }
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// A peer broke the protocol after its handshake; it was sent `error` and the connection closed.
public struct ProtocolFault: Error, CustomStringConvertible {
    public let error: ErrorMessage
    public var description: String { "closed after a protocol error: \(error.reason)" }
}
