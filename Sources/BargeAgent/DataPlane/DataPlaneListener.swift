import BargeStore
import BargeTier
import BargeWire
import Foundation
import Logging
import NIOConcurrencyHelpers
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
    /// With `intake`, files placed cold (by a job's `--tier` or by `sitePolicy`) go straight into
    /// the site's cold store.
    public static func bind(host: String, port: Int, root: String, token: ClusterToken, name: String, index: ChunkIndex? = nil,
                            intake: ColdIntake? = nil, sitePolicy: TierPolicy? = nil,
                            logger: Logger = Logger(label: "barge.agent")) async throws -> DataPlaneListener {
        DataPlaneListener(root: root, server: try await BargeServer.bind(host: host, port: port, token: token, name: name),
                          files: DestinationFiles(index: index, siblings: index.map { SiblingIndexes(root: $0.root, own: $0.path) },
                                                  intake: intake, sitePolicy: sitePolicy, logger: logger),
                          logger: logger)
    }

    /// Serves connections until closed or cancelled. The chunk index's held-back rows are written
    /// every `indexFlushInterval`, so an agent killed at any moment loses at most that much of its
    /// record of what arrived (those chunks are sent again).
    ///
    /// With `fence` (the agent's `FreezeFence`), a connection accepted before this agent was
    /// stopped for about its agent timeout handles nothing more once it goes on: the coordinator
    /// took the agent for down and gave the units that connection carried to other agents (one
    /// sharing the root may have finished their files). Each message first checks the ticket its
    /// connection took, and a watch checks it every half second while the connection is idle; a
    /// fenced connection is answered `marked down` and closed. The source's pool drops it, and a
    /// unit still the source's own opens a new one. Before, a destination agent let go on after
    /// such a stop wrote the chunks still in its sockets, and left a new partial copy beside the
    /// file another agent had finished.
    public func run(fence: FreezeFence? = nil, indexFlushInterval: Duration = .milliseconds(500)) async throws {
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
            // a Dispatch thread, each by a receiver of its own (a receiver is never shared).
            // - Chunks and entries: `chunksAtOnce` at a time per connection (one by default),
            //   answered as each ends.
            // - File batches: `batchesAtOnce` at a time per connection, beside the chunks. Each
            //   ends in a `syncfs` that batches waiting at the same time share (`SyncGroup`), so
            //   while one waits for the disk the next writes its files.
            // - `files done` and `have query`: one at a time, in order, on a second queue, since
            //   replies that name no place are matched in order. A batch's durability (an `fsync`
            //   or `syncfs`: 0.1-0.4 s through the delay test bed) then does not stop the
            //   connection from reading the chunks behind it. A batch covers only chunks already
            //   acked, so nothing it needs is still on the first queue.
            // Replies go out in the order they are ready; the sender matches them by place.
            let ticket = fence?.ticket()
            // A finish asks once more just before it names files: a batch under way when the
            // agent was stopped goes on from there when it resumes.
            let receivers = ReceiverPool(root: root, files: files, mayName: {
                guard let ticket else { return true }
                do { try ticket.check() } catch { return false }
                return true
            })
            let (slow, slowQueue) = AsyncStream<(Message, MessageType, Int)>.makeStream()
            // What waits on the second queue: a peer that sends `have query`s and never reads
            // the replies would grow it without end (each may be megabytes).
            let slowWaiting = NIOLockedValueBox((messages: 0, bytes: 0))
            @Sendable func handle(_ message: Message, _ type: MessageType) async throws -> Bool {
                do throws(UnitFailure) { try ticket?.check() } catch {
                    logger.notice("data-plane connection from \(peer.session.peerName): \(error.description)")
                    try await outbound.write(Message.error(ErrorMessage(code: .markedDown, reason: error.description)).frame())
                    return false
                }
                let began = ContinuousClock.now
                let receiver = receivers.take()
                defer { receivers.give(receiver) }
                let handled = try await BlockingWork.run({ receiver.value.handle(message) })
                if LaneFlow.tracing, ContinuousClock.now - began > .milliseconds(50) {
                    logger.notice("trace: \(type) took \(ContinuousClock.now - began) to handle")
                }
                guard let reply = handled else {
                    try await outbound.write(Message.error(ErrorMessage(.unexpected(type, state: "receiving chunks"))).frame())
                    return false
                }
                try await outbound.write(reply.frame())
                return true
            }
            @Sendable func serveMessages() async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await (message, type, bytes) in slow {
                        guard try await handle(message, type) else { throw DataPlaneListener.Ended() }
                        slowWaiting.withLockedValue { $0.messages -= 1; $0.bytes -= bytes }
                    }
                }
                defer { slowQueue.finish() }
                let ended = try await withThrowingTaskGroup(of: (ok: Bool, batch: Bool).self) { workers -> Bool in
                    // Chunk messages and file batches running now, each kind within its limit.
                    var running = (chunks: 0, batches: 0)
                    for try await frame in inbound {
                        let message: Message
                        do throws(WireError) { message = try Message(frame: frame) } catch {
                            // Answered with the reason before the connection closes (protocol.md).
                            try? await outbound.write(Message.error(ErrorMessage(error)).frame())
                            throw error
                        }
                        switch message {
                        case .error:
                            return true
                        case .filesDone, .haveQuery:
                            let bytes = frame.payload.readableBytes
                            let waiting = slowWaiting.withLockedValue { w -> (messages: Int, bytes: Int) in
                                w.messages += 1
                                w.bytes += bytes
                                return w
                            }
                            guard waiting.messages <= Self.slowMessagesWaiting, waiting.bytes <= Self.slowBytesWaiting else {
                                let reason = "\(waiting.messages) have queries and files done (\(waiting.bytes) bytes) wait to be answered, over the "
                                    + "\(Self.slowMessagesWaiting) (\(Self.slowBytesWaiting) bytes) a connection may have: its peer does not read the answers"
                                // Closed without a last word: one the peer does not read would wait for ever.
                                logger.warning("data-plane connection from \(peer.session.peerName) closed: \(reason)")
                                return true
                            }
                            slowQueue.yield((message, frame.type, bytes))
                        default:
                            let batch = if case .fileBatch = message { true } else { false }
                            while batch ? running.batches == Self.batchesAtOnce : running.chunks == Self.chunksAtOnce {
                                guard let done = try await workers.next() else { break }
                                if !done.ok { return true }
                                if done.batch { running.batches -= 1 } else { running.chunks -= 1 }
                            }
                            if batch { running.batches += 1 } else { running.chunks += 1 }
                            workers.addTask { (try await handle(message, frame.type), batch) }
                        }
                    }
                    while let done = try await workers.next() { if !done.ok { return true } }
                    return false
                }
                slowQueue.finish()
                if ended { group.cancelAll() }
                do { try await group.waitForAll() } catch is DataPlaneListener.Ended {}
            }
            }
            // With a fence, a watch beside the messages ends the connection within half a second of
            // a freeze even while it is idle: the source's pool then drops it, rather than handing
            // it to a new unit whose first message would be refused.
            try await withThrowingTaskGroup(of: Void.self) { connection in
                connection.addTask { try await serveMessages() }
                if let ticket {
                    connection.addTask {
                        while true {
                            try await Task.sleep(for: .milliseconds(500))
                            do throws(UnitFailure) { try ticket.check() } catch {
                                logger.notice("data-plane connection from \(peer.session.peerName): \(error.description)")
                                try await outbound.write(Message.error(ErrorMessage(code: .markedDown, reason: error.description)).frame())
                                return
                            }
                        }
                    }
                }
                defer { connection.cancelAll() }
                try await connection.next()
            }
        }, onError: { address, error in
            // The agent stopping (SIGTERM) cancels its open connections: not worth a warning.
            if error is CancellationError || Task.isCancelled {
                logger.debug("data-plane connection from \(address) closed as the agent stops")
                return
            }
            // Too many handshakes at once from one address: a source opening its streams all at
            // once under a low descriptor limit (two at `ulimit -n 64`), which asks again on its
            // own. Said as a warning at every start (h1 of session 50, F8).
            if let full = error as? BargeServer.ServerFull, full.fromOneAddress {
                logger.notice("data-plane connection from \(address): \(full); the peer asks again")
                return
            }
            logger.warning("data-plane connection from \(address): \(ConnectionFailure.describe(error))")
        })
    }

    public func close() async {
        await server.close()
    }

    /// A queue answered a message with an error frame: the connection ends.
    struct Ended: Error {}

    /// Chunk messages handled at once per connection: one by default. Through the delay test bed
    /// at 100 ms (a loop-mounted ext4), eight at once took 12.5-16.4 s for 1 GiB against 11.1-12.5 s
    /// one at a time (three rounds each): more writes in flight only contended for the device
    /// while another file's `fsync` ran. `BARGE_RECEIVE_AT_ONCE` (1-64) sets it, to measure on
    /// other storage. Memory: one staging buffer (a chunk: 1 MiB usually, 4 MiB at most) for each.
    static let chunksAtOnce = ProcessInfo.processInfo.environment["BARGE_RECEIVE_AT_ONCE"].flatMap(Int.init).map { max(1, min($0, 64)) } ?? 1

    /// `have query`s and `files done` waiting to be answered on a connection, at most. A unit
    /// has one `have query` and a `files done` per 1,024 files waiting at once, so even 256 units
    /// sharing one connection (the most `--max-units` allows) stay far below these.
    static let slowMessagesWaiting = 4096
    static let slowBytesWaiting = 256 << 20

    /// File batches handled at once per connection: while one waits for its `syncfs`, the others
    /// write theirs and join the next one. Memory: each holds its frame (at most a few MiB).
    static let batchesAtOnce = 4
}

/// The receivers of one connection, each used by one message at a time.
private final class ReceiverPool: Sendable {
    private let root: String
    private let files: DestinationFiles
    private let free = NIOLockedValueBox<[Unshared<ChunkReceiver>]>([])
    private let mayName: @Sendable () -> Bool

    init(root: String, files: DestinationFiles, mayName: @escaping @Sendable () -> Bool) {
        self.root = root
        self.files = files
        self.mayName = mayName
    }

    func take() -> Unshared<ChunkReceiver> {
        free.withLockedValue { $0.popLast() } ?? Unshared(ChunkReceiver(root: root, files: files, mayName: mayName))
    }

    func give(_ receiver: Unshared<ChunkReceiver>) { free.withLockedValue { $0.append(receiver) } }
}

/// A value handed from one thread to another while only one of them uses it at a time (a
/// receiver is taken from its connection's pool for one message, and given back after).
private struct Unshared<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
