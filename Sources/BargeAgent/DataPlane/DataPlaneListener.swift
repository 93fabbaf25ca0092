import BargeStore
import BargeWire
import Logging
import NIOCore
import NIOPosix

/// An agent's data-plane listener: other agents open `peer` connections and send chunks, entries
/// and `file done`s for this agent's root. Each connection gets its own `ChunkReceiver` over the
/// agent's shared `DestinationFiles`; every message is answered with an ack or a nack. The chunk work runs in the connection's task (Swift's
/// cooperative pool), never on an event loop.
public final class DataPlaneListener: Sendable {
    public let root: String
    /// Files being received, shared by every connection.
    public let files: DestinationFiles
    private let server: BargeServer
    private let logger: Logger

    /// The address actually bound (port 0 binds a free port).
    public var localAddress: SocketAddress? { server.localAddress }

    private init(root: String, server: BargeServer, files: DestinationFiles, logger: Logger) {
        self.root = root
        self.server = server
        self.files = files
        self.logger = logger
    }

    /// With `index`, received chunks are recorded there: partial copies survive a restart, and
    /// chunks already held are copied locally when sent by reference, this agent's or those the
    /// other agents sharing the root hold (their indexes under `<root>/.barge`).
    public static func bind(host: String, port: Int, root: String, token: ClusterToken, name: String, index: ChunkIndex? = nil,
                            logger: Logger = Logger(label: "barge.agent")) async throws -> DataPlaneListener {
        DataPlaneListener(root: root, server: try await BargeServer.bind(host: host, port: port, token: token, name: name),
                          files: DestinationFiles(index: index, siblings: index.map { SiblingIndexes(root: $0.root, own: $0.path) }, logger: logger),
                          logger: logger)
    }

    /// Serves connections until closed or cancelled. The chunk index's held-back rows are written
    /// every `indexFlushInterval`, so an agent killed at any moment loses at most that much of its
    /// record of what arrived (those chunks are sent again).
    public func run(indexFlushInterval: Duration = .milliseconds(500)) async throws {
        let root = root, logger = logger, files = files
        let flusher = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: indexFlushInterval)
                _ = try? await BlockingWork.run { files.flush() }
            }
        }
        defer { flusher.cancel() }
        try await server.serve(session: { peer, inbound, outbound in
            guard peer.session.role == .peer else {
                try await outbound.write(Message.error(ErrorMessage(code: .unexpectedMessage,
                    reason: "this is a data-plane listener; \(peer.session.role) connections go to the coordinator")).frame())
                return
            }
            // Writes, fsync, renames and the chunk index's SQLite block: each message is handled on
            // a Dispatch thread, one at a time per connection, so the receiver is never shared.
            let receiver = Unshared(ChunkReceiver(root: root, files: files))
            for try await frame in inbound {
                let message = try Message(frame: frame)
                if case .error = message { return }
                guard let reply = try await BlockingWork.run({ receiver.value.handle(message) }) else {
                    try await outbound.write(Message.error(ErrorMessage(.unexpected(frame.type, state: "receiving chunks"))).frame())
                    return
                }
                try await outbound.write(reply.frame())
            }
        }, onError: { address, error in
            logger.warning("data-plane connection from \(address): \(error)")
        })
    }

    public func close() async {
        await server.close()
    }
}

/// A value handed from one thread to another while only one of them uses it at a time (the
/// connection's loop waits for each message's answer before it reads the next).
private struct Unshared<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
