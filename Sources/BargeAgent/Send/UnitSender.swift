#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import BargeChunk
import BargeCodec
import BargeDigest
import BargeStore
import BargeWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Synchronization

/// Why a unit stopped. `retryable` failures (a corrupt chunk past its attempts, a dropped
/// connection, a write error at the destination) go back to the coordinator for another lane;
/// the others (a path outside a root, a source that cannot be read) fail the job. A source file
/// gone, changed or unreadable since the scan does not fail the unit: it is left out (`leftOut`).
public struct UnitFailure: Error, CustomStringConvertible {
    public let retryable: Bool
    public let description: String
    /// It failed on the data plane to the destination (`TaskFailed.lane`), not on its own data.
    public var lane = false

    public init(retryable: Bool, description: String, lane: Bool = false) {
        self.retryable = retryable
        self.description = description
        self.lane = lane
    }
}

/// Runs one unit at the source agent: its steps shared out over several parallel streams to the
/// destination agent, each stream pipelined (`depth` workers, each with one message outstanding,
/// and each taking a step only with one of the stream's write slots). A chunk nacked as corrupt is
/// read and sent again, up to `maxAttempts` times. A file is finished (`file done`, or in a batch
/// `files done`) only once every one of its chunks is acked, so it is renamed once every byte is in.
public struct UnitSender: Sendable {
    public struct Settings: Sendable {
        /// Streams per unit, and connections per destination (`StreamPool.perDestination`).
        public var streams: Int
        /// To a destination at least `StreamPool.longPathRTT` away, this many instead
        /// (`StreamPool.longPath`); nil: `streams` everywhere (`agent --streams`).
        public var longPathStreams: Int?
        public var maxAttempts: Int
        /// Send chunks the destination already holds by reference (when it speaks version 2).
        public var dedup: Bool
        /// Files of at least this many bytes are cut by content (FastCDC, 512 KiB / 1 MiB / 4 MiB),
        /// so that an insertion moves only nearby chunk boundaries; nil: always fixed-size.
        public var contentDefinedAbove: UInt64?
        /// Messages outstanding on each stream at once (pipelining): each stream runs this many
        /// workers. The lane's window bounds the bytes in flight whatever the depth.
        public var depth: Int = 8

        public static let defaultContentDefinedAbove = ChunkingStrategy.defaultContentDefinedAbove
        /// The agent's `--bwlimit`, charged for every chunk frame's payload sent on the data plane
        /// (the default `UnitFlow`'s agent limit).
        public var limiter: RateLimiter?

        public init(streams: Int = 4, longPathStreams: Int? = nil, maxAttempts: Int = 4, dedup: Bool = true,
                    contentDefinedAbove: UInt64? = Self.defaultContentDefinedAbove) {
            self.streams = streams
            self.longPathStreams = longPathStreams
            self.maxAttempts = maxAttempts
            self.dedup = dedup
            self.contentDefinedAbove = contentDefinedAbove
        }
    }

    public let task: TaskAssign
    public let client: DataPlaneClient
    public let sources: SourcePool
    public let settings: Settings
    public let progress: UnitProgress
    public let flow: UnitFlow
    /// Connections kept open between units; nil: each unit opens its own.
    public let pool: StreamPool?
    /// `auto`, or the codec the job asked for.
    private let codec: CodecChoice
    /// Files read in more than one chunk, each held open for the whole unit.
    private let held = HeldSources()
    /// The unit's place in the queue for a stream's write slots: its lane order (older units
    /// first), but first of all for a unit of directories only, a job's last step (a few small
    /// entries). Behind another job's units it waited until they ended: a job whose every byte
    /// had arrived stayed running for seconds (a black-box review, h6).
    private let slotOrder: UInt64

    public init(task: TaskAssign, client: DataPlaneClient, sources: SourcePool, settings: Settings, progress: UnitProgress,
                flow: UnitFlow? = nil, pool: StreamPool? = nil) {
        self.task = task
        self.client = client
        self.pool = pool
        self.sources = sources
        self.settings = settings
        self.progress = progress
        self.flow = flow ?? UnitFlow(agentLimit: settings.limiter)
        codec = (try? CodecChoice(name: task.codec)) ?? .auto
        slotOrder = task.files.allSatisfy { $0.entry.kind == .directory } ? 0 : self.flow.order
    }

    /// Runs the unit to `task done`, or throws `UnitFailure`.
    public func run() async throws(UnitFailure) -> TaskDone {
        if LaneFlow.tracing { Self.trace("start", task) }
        defer { if LaneFlow.tracing { Self.trace("end", task) } }
        // The plan is made while the first stream connects and asks what the destination holds,
        // and while the streams send the steps found so far.
        let queue = StepQueue(UnitPlan(task))
        let planning = Task { await plan(queue) }
        defer { queue.abandon() }
        defer { held.closeAll() }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                // The first stream asks what the destination already holds; the others open (a
                // handshake of three round trips on a new connection) meanwhile, and start sending
                // once it knows.
                let start = OneShot<Start>()
                group.addTask {
                    do {
                        try await withStream(holder: queue) { first in
                            // A peer of version 6 finishes files in batches, each stream sending
                            // those whose last chunk it saw acked when it runs out of steps.
                            let begun = Start(refs: try await references(first), ready: first.version >= WireVersion.batches ? ReadyFiles() : nil)
                            start.set(.success(begun))
                            try await work(first, queue, begun.refs, begun.ready)
                        }
                    } catch {
                        start.set(.failure(error))
                        throw error
                    }
                }
                let another: @Sendable () async throws -> Void = {
                    try await withStream(holder: queue) { stream in
                        let begun = try await start.value
                        try await work(stream, queue, begun.refs, begun.ready)
                    }
                }
                let known = max(1, try await queue.known(atLeast: pool?.streams(to: client) ?? settings.streams))
                for _ in 1..<known { group.addTask(operation: another) }
                // A destination's first connection tells the pool how far it is (`StreamPool.longPath`).
                // The streams a far one may add wait for the first stream's answer, then go only if
                // the pool now keeps that many connections there and the unit has steps for them
                // (a failed or cancelled unit adds none).
                if let pool, let most = pool.longPath, most > known {
                    for k in known..<most {
                        group.addTask {
                            if await mayAdd(stream: k, pool: pool, once: start, queue) { try await another() }
                        }
                    }
                }
                try await group.waitForAll()
            }
            try Task.checkCancellation()
            try await finishRepairs(queue)
            await removeLeftOut(queue)
        } catch let failure as UnitFailure {
            if !Task.isCancelled { try? await finishRepairs(queue) }
            throw failure
        } catch let changed as SourceChanged {
            if !Task.isCancelled { try? await finishRepairs(queue) }
            throw UnitFailure(retryable: false, description: changed.description)
        } catch let store as StoreError {
            throw Self.sourceFailure(store)
        } catch {
            // A source that cannot be read says more than a destination that could not be reached
            // (the plan is not abandoned before it has had its say). A unit stopped (`task drop`,
            // `cancel job`) abandons it first: it read and cut its whole range to no end before,
            // holding the agent's one cut-point scan from the units that came next.
            if Task.isCancelled { queue.abandon() }
            if case .failure(let failure) = await planning.value { throw failure }
            throw UnitFailure(retryable: true, description: Task.isCancelled ? "cancelled" : Self.dataPlaneFailure(error, to: task.destination.name, at: "\(task.destination.host):\(task.destination.port)"),
                              lane: !Task.isCancelled && Self.isLaneFailure(error))
        }
        return progress.done(task)
    }

    /// A repair unit's files (`verify --repair`) get their mode and mtime from the job's scan once
    /// every repair of theirs is written (`repair done`, protocol version 15), one message per
    /// file, pipelined. Before, each repair put back the mtime it found: the damage's, or that of
    /// a repair of the same file on another stream (seen with 18 chunks or more repaired).
    ///
    /// Only files whose every repair was written: also after the unit failed on another file (a
    /// path refused, say), so that what it did repair gets its mtime back. Before, those kept the
    /// damage's, and a second pass, finding their bytes right, left them so.
    private func finishRepairs(_ queue: StepQueue) async throws {
        var seen = Set<String>()
        let left = progress.leftOutFiles, written = progress.repairsWritten
        let unwritten = Set(task.files.indices.filter { task.files[$0].repair && !written.contains($0) }.map { task.files[$0].entry.path })
        let repaired = task.files.indices.filter {
            task.files[$0].repair && task.files[$0].entry.kind == .file && left[$0] == nil && !unwritten.contains(task.files[$0].entry.path)
                && seen.insert(task.files[$0].entry.path).inserted
        }
        guard !repaired.isEmpty else { return }
        try await withStream(holder: queue) { stream in
            guard stream.version >= WireVersion.repairDone else { return }
            try flow.check()
            let replies = repaired.map { i in
                let e = task.files[i].entry
                return stream.queue(.repairDone(FileDone(place: ChunkPlace(job: task.job, path: e.path, offset: 0), size: e.size, mode: e.mode,
                                                         mtimeSeconds: e.mtimeSeconds, mtimeNanoseconds: e.mtimeNanoseconds)))
            }
            for (i, reply) in zip(repaired, replies) { try expectAck(try await reply.value, task.files[i]) }
        }
    }

    /// The files this unit was to finish and left out (gone, changed or unreadable at the source
    /// when it came to read them) lose their partial copies at the destination (`file left out`,
    /// protocol version 16), as rsync removes its temporary file: once every chunk of the unit is
    /// answered, so none lands after. Before, a copy stayed until a later job finished the file:
    /// for ever for one that had gone. Best effort: a destination that cannot remove one is no
    /// reason to fail the unit (the copy stays, as before).
    private func removeLeftOut(_ queue: StepQueue) async {
        let left = progress.leftOutFiles
        var seen = Set<PathKey>()
        let files = task.files.indices.filter {
            left[$0] != nil && task.files[$0].finish && !task.files[$0].repair && task.files[$0].entry.kind == .file
                && seen.insert(PathKey(task.files[$0].entry.path)).inserted
        }
        guard !files.isEmpty else { return }
        do {
            try await withStream(holder: queue) { stream in
                guard stream.version >= WireVersion.fileLeftOut else { return }
                let replies = files.map { stream.queue(.fileLeftOut(ChunkPlace(job: task.job, path: task.files[$0].entry.path, offset: 0))) }
                for reply in replies { _ = try await reply.value }
            }
        } catch {
            // The copies stay, as they did before version 16.
        }
    }

    /// Whether the unit's stream `k` (counted from 0) goes to a far destination: once the first
    /// stream has its answer (`start`), if the unit is still running, the pool now keeps more
    /// than `k` connections there, and the unit has more than `k` steps.
    private func mayAdd(stream k: Int, pool: StreamPool, once start: OneShot<Start>, _ queue: StepQueue) async -> Bool {
        guard (try? await start.value) != nil, !Task.isCancelled, k < pool.streams(to: client) else { return false }
        return ((try? await queue.known(atLeast: k + 1)) ?? 0) > k
    }

    /// `BARGE_TRACE_LANES=1`: a unit's start and end, on the lanes' clock.
    static func trace(_ event: String, _ task: TaskAssign) {
        LaneFlow.writeTrace("unit \(event) t=\(LaneFlow.traceTime()) job=\(task.job) unit=\(task.unit) files=\(task.files.count) to=\(task.destination.name)\n")
    }

    /// Whether a data plane's failure is its path's, which time may cure (the destination agent,
    /// or the network to it, went away, stalled, or refused for now: busy, stopping, taken for
    /// down, or a frame damaged on its way: `ErrorCode.isDamageOnTheWire`), rather than one that
    /// trying again will not change: another cluster token or protocol version (a handshake
    /// refused), or a message the destination refused as malformed or unexpected. Only the first
    /// gives its attempt back (up to the coordinator's 10 a unit, with backoff); the others fail
    /// the job in three, in seconds. A frame header's damage (flags, length, magic) cannot be told
    /// from a peer that sends such frames every time, so a peer that does fails the job only after
    /// its 10 given back and 3 counted: minutes, not seconds.
    static func isLaneFailure(_ error: any Error) -> Bool {
        switch error {
        case let refused as HandshakeFailure: refused.error.code == .busy || refused.error.code == .timedOut
        // Also a frame the destination found damaged on its way (its seal or checksum did not
        // hold): the path's fault, as a connection cut is. Counted, three flipped bits on a
        // network failed a whole job, its chunks never fetched again.
        case let refused as PeerRefused: [ErrorCode.busy, .stopping, .markedDown, .timedOut].contains(refused.error.code) || refused.error.code.isDamageOnTheWire
        default: true
        }
    }

    /// Why the data plane to a destination failed, in words: a connection that could not be made
    /// says so with the system's reason and where to look, rather than NIO's nested error.
    public static func dataPlaneFailure(_ error: any Error, to name: String, at address: String) -> String {
        guard let connect = error as? NIOConnectionError else {
            // NIO's words for a connection that closed under a request: say what happened.
            if ConnectionFailure.isClosed(error) {
                return "data plane to \(name) at \(address): the connection closed (the network between the agents, or \(name), went away)"
            }
            return "data plane to \(name) at \(address): \(error)"
        }
        let why: String
        if let io = connect.connectionErrors.first?.error as? IOError {
            why = String(cString: strerror(io.errnoCode)).lowercased()
        } else if let first = connect.connectionErrors.first?.error {
            if case ChannelError.connectTimeout = first { why = "timed out" } else { why = "\(first)" }
        } else {
            why = "the address did not resolve"
        }
        return "cannot connect to \(name)'s data plane at \(address) (\(why)): check that this node reaches that address (\(name)'s --advertise and --listen)"
    }

    /// A source that cannot be read fails the unit for good, with the reason. A file gone since
    /// the scan says what to do: `resume` runs the same plan and looks for it again, while a new
    /// submission scans anew and leaves it out.
    static func sourceFailure(_ store: StoreError) -> UnitFailure {
        if case .system(_, let path, ENOENT) = store { return vanishedFailure(path) }
        return UnitFailure(retryable: false, description: "source: \(store)")
    }

    /// A source file gone since the scan, for a coordinator that cannot count it (before
    /// protocol version 13): the job fails, and says what to do.
    static func vanishedFailure(_ path: String) -> UnitFailure {
        UnitFailure(retryable: false, description: "source: '\(path)' is no longer there (deleted or renamed since the scan): submit the transfer again, and its new scan leaves it out (resume would look for it again)")
    }

    /// A unit that left files out, for a coordinator that cannot count them (before protocol
    /// version 13): the job fails, with why and what to do.
    static func leftOutFailure(_ reason: String) -> UnitFailure {
        UnitFailure(retryable: false, description: "source: \(reason): submit the transfer again, and its new scan takes the source as it is now (resume would look for the same files)")
    }

    /// Why file `i` is left out, when reading it failed because it is no longer what the scan
    /// saw; nil for any other failure (which fails the unit).
    /// - Gone: it, or a directory on its way, was deleted or renamed since the scan (ENOENT), or a
    ///   directory on its way was replaced by a file (ENOTDIR).
    /// - Changed: its size or mtime is no longer the scan's (`SourceChanged`), or it ended before
    ///   the range the scan of cut points read.
    /// - Unreadable: opening it was refused (EACCES, EPERM), as rsync reports such a file and goes on.
    /// - No longer a file: replaced by a directory (EISDIR) or a symbolic link (ELOOP on opening),
    ///   a FIFO, socket or device (ESPIPE, ENXIO, ENODEV, or not a regular file once open).
    /// - No longer below the source: a directory on its way became a link out of the root.
    static func leftOutReason(_ error: Error, path: String, scanned size: UInt64? = nil) -> String? {
        let code: Int32, opening: Bool
        switch error {
        case let changed as SourceChanged: return changed.description
        case StoreError.symlinkEscape:
            // A directory on its way swapped for a link out of the root ("moved to scratch and
            // linked back"); the read went nowhere (opened beneath the root). Before, the job
            // failed, and every resume again.
            return "'\(path)' is no longer below the source: a directory on its way was replaced by a symbolic link out of the agent's root after the scan (nothing was read there)"
        case ChunkingError.shortFile(_, let expected, let actual):
            // `expected` is where the read was to end (a unit's range may end before the file).
            return SourceChanged(path: path, what: "it is \(actual) bytes now, the scan saw \(size ?? expected)").description
        case StoreError.system(let operation, _, let e): (code, opening) = (e, operation == "open")
        case ChunkingError.io(_, "open", let e): (code, opening) = (e, true)  // the scan of cut points
        case ChunkingError.io(_, "read", let e): (code, opening) = (e, false)
        default: return nil
        }
        switch code {
        case ENOENT, ENOTDIR:
            return "'\(path)' vanished from the source during the transfer (deleted or renamed after the scan)"
        case _ where code == EISDIR || (code == ELOOP && opening):
            // Replaced by a directory (its read says EISDIR) or by a symbolic link (never
            // followed: O_NOFOLLOW says ELOOP). Before, the job failed, and every resume again.
            return "'\(path)' is no longer a file at the source: it was replaced by a directory or a symbolic link after the scan"
        case EXDEV where opening:
            return leftOutReason(StoreError.symlinkEscape(path: path, resolved: ""), path: path)
        case ESPIPE, ENXIO, ENODEV:
            // A FIFO (its read says ESPIPE), a socket (its open, ENXIO) or a device in its place.
            return "'\(path)' is no longer a regular file at the source: a FIFO, socket or device took its place after the scan"
        case EACCES where opening, EPERM where opening:
            return "'\(path)' could not be read at the source: \(StoreError.system(operation: "open", path: path, errno: code))"
        case ENAMETOOLONG where opening:
            // The scan and the coordinator leave out paths past PATH_MAX below the root, and every
            // read opens beneath the root: kept for what a file system refuses short of that.
            return "the path '\(String(decoding: path.utf8.prefix(80), as: UTF8.self))…' is too long to open at the source (ENAMETOOLONG, over PATH_MAX); it cannot be transferred"
        default:
            return nil
        }
    }

    /// File `i` is left out (`reason`): it is not finished at the destination, and when this unit
    /// was to finish it, or to repair it (`verify --repair`), `task done` names it. A range of a
    /// large file leaves that to the file's `finish` unit, which looks at it before finishing
    /// (`unchangedAtFinish`).
    private func leftOut(_ i: Int, _ reason: String) {
        let f = task.files[i]
        guard f.finish || f.repair else { return }
        progress.leftOut(file: i, reason: reason)
    }

    /// `leftOut` for the error reading file `i`, when it says the file is not what the scan saw.
    private func leftOut(_ i: Int, for error: Error) -> Bool {
        guard let reason = Self.leftOutReason(error, path: task.files[i].sourcePath, scanned: task.files[i].entry.size) else { return false }
        leftOut(i, reason)
        return true
    }

    /// A stream to the destination: from the pool when there is one, on a connection none of the
    /// unit's other streams (the holders of `queue`) is on where it can.
    private func withStream<Result: Sendable>(holder queue: StepQueue, _ body: (ChunkStream) async throws -> Result) async throws -> Result {
        if let pool { return try await pool.withStream(client, holder: ObjectIdentifier(queue), body) }
        return try await client.withStream(body)
    }

    /// Fills in the unit's plan, file by file: content-defined cut points for its large files
    /// (each chunk as soon as the scan finds it, so that the streams start sending after the
    /// first one rather than after the whole range), fixed-size chunks for the others. The scan
    /// reads the files, so it runs off the cooperative pool (which carries every stream), and
    /// one unit at a time (`BlockingWork.cutPoints`): units that start
    /// together (a job's first ones) then start one after another, and a scan never takes both
    /// cores from the streams.
    private func plan(_ queue: StepQueue) async -> Result<Void, UnitFailure> {
        do {
            try await BlockingWork.run(on: BlockingWork.cutPoints) { [self] in
                for i in task.files.indices {
                    let scanned: Bool
                    do {
                        scanned = try scanContent(i, into: queue)
                    } catch where leftOut(i, for: error) {
                        continue
                    }
                    if !scanned { try queue.update { $0.addSteps(file: i) } }
                }
                try queue.update { $0.end() }
            }
            return .success(())
        } catch is StepQueue.Abandoned {
            return .success(())
        } catch {
            let failure = (error as? StoreError).map(Self.sourceFailure) ?? UnitFailure(retryable: false, description: "source: \(error)")
            queue.fail(failure)
            return .failure(failure)
        }
    }

    /// Adds file `i`'s content-defined chunks within the unit's range to the plan as the scan
    /// finds them; false when the file is cut into fixed-size chunks instead (it is small).
    private func scanContent(_ i: Int, into queue: StepQueue) throws -> Bool {
        let f = task.files[i]
        guard let above = settings.contentDefinedAbove, f.entry.kind == .file, f.entry.size >= above, f.length > 0, !f.repair else { return false }
        let path = try RootedPath.resolve(f.sourcePath, under: sources.root)
        // Beneath the root, as the chunks' own reads (`ChunkSource`) go: past PATH_MAX from `/`.
        let fd = try RootDirectory.open(sources.root).openForReading(path.relative)
        guard fd >= 0 else { throw StoreError.system(operation: "open", path: f.sourcePath, errno: errno) }
        defer { close(fd) }
        try FileChunkReader(path: f.sourcePath, strategy: .fastCDC(.standard)).forEachSpan(of: fd, from: f.offset, length: f.length) { span in
            try queue.update { $0.addChunk(file: i, offset: span.offset, length: span.length) }
        }
        try queue.update { $0.endOfScan(file: i) }
        return true
    }

    /// Which chunks to send by reference: those the destination holds for this unit's paths, and
    /// those this agent already sent it in this job.
    ///
    /// From protocol version 10 the query also places the unit's files at the destination (the
    /// job policy's tier of each, its size and mtime), so it is sent before any chunk even
    /// without dedup; a destination that cannot take a file cold refuses the unit. A unit that
    /// only finishes files sent in other units (a large file's `finish` unit) has no chunk to
    /// send: its query only places the file again (for a destination restarted since its ranges),
    /// so it is queued, not awaited, and its `files done` goes right behind it (one round trip
    /// rather than two at the end of every large file).
    private func references(_ stream: ChunkStream) async throws -> References {
        let files = task.files.filter { $0.entry.kind == .file && !$0.repair }
        let paths = files.map(\.entry.path)
        let dedup = settings.dedup && stream.version >= WireVersion.dedup
        let placing = stream.version >= WireVersion.placement
        guard dedup || placing, !paths.isEmpty else { return References(enabled: false) }
        // A file this unit brings whole and finishes, or one the coordinator lets the
        // destination keep in place (a --checksum job's large file), may be kept (version 17);
        // not one that goes in a file batch, which the batch keeps in place itself.
        let marking = stream.version >= WireVersion.wholeFiles
        let facts = placing ? files.map {
            HaveQuery.Facts(tier: $0.tier, size: $0.entry.size, mtimeSeconds: $0.entry.mtimeSeconds,
                            whole: marking && $0.entry.size > 0 && !UnitPlan.batchable($0, chunkSize: UInt64(task.chunkSize))
                                && ($0.inPlace || ($0.finish && $0.offset == 0 && $0.length == $0.entry.size)))
        } : []
        let query = Message.haveQuery(HaveQuery(job: task.job, paths: paths, facts: facts))
        if placing, stream.version >= WireVersion.batches, Self.finishesOnly(task) {
            return References(enabled: false, placing: Placing(reply: stream.queue(query), paths: paths))
        }
        let reply = try await stream.send(query)
        try placed(reply, paths)
        guard dedup, case .haveList(let list) = reply else { return References(enabled: false) }
        return References(enabled: true, held: Set(list.ids), sent: sources.sent, key: JobDestination(job: task.job, destination: task.destination.name))
    }

    /// Whether every file of `task` is a finish of a file whose bytes went in other units (a
    /// large file's `finish` unit): it has no chunk, batch or entry to send, only `files done`.
    static func finishesOnly(_ task: TaskAssign) -> Bool {
        !task.files.isEmpty && task.files.allSatisfy { $0.entry.kind == .file && $0.finish && !$0.repair && $0.length == 0 && $0.entry.size > 0 }
    }

    /// Checks the reply to a `have query`: a have list, or the files the destination cannot place.
    private func placed(_ reply: Message, _ paths: [String]) throws {
        switch reply {
        case .haveList:
            return
        case .filesDoneReply(let answer) where !answer.refused.isEmpty:
            // Files it cannot place (cold, at an agent without a cold store): no retry cures that.
            let first = answer.refused[0]
            let path = Int(first.index) < paths.count ? paths[Int(first.index)] : paths[0]
            throw UnitFailure(retryable: false, description: "\(task.destination.name) refused \(path): \(first.detail)")
        default:
            throw UnitFailure(retryable: true, description: "\(task.destination.name) did not answer the have query with a have list")
        }
    }

    /// One stream's share of the unit: `settings.depth` workers take steps and send them on it at
    /// once (so up to that many messages are outstanding on the stream, within the lane's window),
    /// then the stream finishes the files whose last chunk it saw acked.
    private func work(_ stream: ChunkStream, _ queue: StepQueue, _ refs: References, _ ready: ReadyFiles?) async throws {
        // A unit's own connection closes with it; a pooled one is reported by the pool when it closes.
        defer { if pool == nil { flow.lane?.closed(ObjectIdentifier(stream)) } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<max(1, settings.depth) {
                group.addTask { try await worker(stream, queue, refs, ready) }
            }
            try await group.waitForAll()
        }
        // A queued have query (`refs.placing`) comes only with batch finishes (version 6 and up).
        // A unit stopped (its job cancelled, or the unit taken back) finishes nothing more: the
        // files whose chunks were all acknowledged stay partial copies. Before, they appeared
        // under their final names after `cancel` had returned.
        try Task.checkCancellation()
        if let ready { try await finish(ready.take(), stream, after: refs.placing) }
    }

    private func worker(_ stream: ChunkStream, _ queue: StepQueue, _ refs: References, _ ready: ReadyFiles?) async throws {
        while !Task.isCancelled {
            // A step is taken with one of the stream's write slots, freed once its frame is
            // written: a stream whose socket drains slowly leaves the unit's steps to the others.
            try await queue.ready()
            var slot = await stream.writeSlot(order: slotOrder)
            defer { slot.release() }
            try Task.checkCancellation()
            let step: UnitPlan.Step
            switch try queue.poll() {
            case .end: return
            case .wait: continue  // another stream took it first
            case .step(let s): step = s
            }
            // A step of bytes is charged to its job's cap here, its bytes before encoding, and
            // waits for them without the slot: other jobs' chunks use this stream meanwhile. Its
            // sends use the charge up, and what is left is given back (`UnitFlow.prepayJob`).
            let prepaid = JobPrepaid(0)
            defer { flow.refundJob(prepaid.left) }
            let bytes = step.bytes { task.files[$0].entry.size }
            if bytes > 0, let wait = flow.prepayJob(bytes) {
                prepaid.left = bytes
                if wait > .zero {
                    slot.release()
                    try await Task.sleep(for: wait)
                    slot = await stream.writeSlot(order: slotOrder)
                    try Task.checkCancellation()
                }
            }
            try flow.check()
            try await JobPrepaid.$current.withValue(prepaid) { [slot] in try await take(step, stream, queue, refs, ready, slot) }
        }
    }

    private func take(_ step: UnitPlan.Step, _ stream: ChunkStream, _ queue: StepQueue, _ refs: References, _ ready: ReadyFiles?,
                      _ slot: WriteSlot) async throws {
        switch step {
        case .entry(let i):
            guard try linkStillHolds(i) else { return }
            try expectAck(try await stream.send(.makeEntry(MakeEntry(job: task.job, entry: task.files[i].entry)), slot: slot), task.files[i])
        case .finish(let i):
            if try unchangedAtFinish(i) { try await finished(i, stream, ready) }
        case .chunk(let i, let offset, let length):
            try await send(chunk: i, offset: offset, length: length, stream, queue, refs, ready, slot: slot)
        case .batch(let files):
            if stream.version >= WireVersion.fileBatches {
                try await send(batch: files, stream, queue, refs, slot: slot)
            } else {
                // A peer before version 7: each file as its one chunk, or a finish when empty.
                for i in files {
                    let size = task.files[i].entry.size
                    if size == 0 { try await finished(i, stream, ready); continue }
                    try await send(chunk: i, offset: 0, length: Int(size), stream, queue, refs, ready, slot: slot)
                }
            }
        }
    }

    /// Small files whole in `file batch` messages: each read, hashed and encoded (or named by
    /// reference when the destination holds its bytes), the batch sent within the lane's window,
    /// and the files the reply refuses as `corrupt` (read again) or `need` (sent by value) sent
    /// again in a smaller batch, up to `maxAttempts` times each.
    private func send(batch list: [Int], _ stream: ChunkStream, _ queue: StepQueue, _ refs: References, slot: WriteSlot? = nil) async throws {
        var pending = list
        var attempts: [Int: Int] = [:]
        var byValue: Set<Int> = []
        while !pending.isEmpty {
            var files: [FileBatch.File] = []
            // The files in `files`, in order (those gone from the source are left out).
            var included: [Int] = []
            var sent: [(file: Int, report: ChunkReport, codec: String, encoded: UInt64, referenced: Bool)] = []
            for i in pending { attempts[i, default: 0] += 1 }
            // The batch's raw bytes are held in the agent's budget before any file is read.
            let room = await flow.reserve(pending.reduce(0) { $0 + Int(task.files[$1].entry.size) })
            do {
                try sources.using(codec) { source in
                    let resolved = source.resolve(batch: pending.map { task.files[$0].sourcePath })
                    for (k, i) in pending.enumerated() {
                        let f = task.files[i]
                        let e = f.entry
                        guard e.size > 0 else {
                            // Nothing to read: looked at, so that one gone or changed is left out too.
                            guard try scanStillHolds(i) else { continue }
                            files.append(FileBatch.File(path: e.path, size: 0, mode: e.mode, mtimeSeconds: e.mtimeSeconds, mtimeNanoseconds: e.mtimeNanoseconds,
                                                        id: Self.emptyId, xxh: Self.emptyXXH, form: .bytes, encoded: ByteBuffer()))
                            included.append(i)
                            continue
                        }
                        if let rate = flow.compressionRate { source.encoder.sendRate = rate }
                        let place = ChunkPlace(job: task.job, path: e.path, offset: 0)
                        let data: ChunkSource.Prepared
                        do {
                            data = try source.prepare(sourcePath: f.sourcePath, resolved: resolved[k].get(), offset: 0, length: Int(e.size), fileSize: e.size,
                                                      mtime: (e.mtimeSeconds, e.mtimeNanoseconds), identity: e.identity, destination: place,
                                                      byReference: { id in refs.enabled && !byValue.contains(i) && refs.held.contains(id) })
                        } catch where leftOut(i, for: error) {
                            continue
                        }
                        included.append(i)
                        let report = ChunkReport(file: UInt32(i), offset: 0, length: UInt32(e.size), id: data.id)
                        files.append(FileBatch.File(path: e.path, size: e.size, mode: e.mode, mtimeSeconds: e.mtimeSeconds, mtimeNanoseconds: e.mtimeNanoseconds,
                                                    id: data.id, xxh: data.xxh, form: data.byReference ? .reference : .bytes, encoded: data.encoded))
                        sent.append((i, report, source.lastCodec.description, UInt64(data.encoded.readableBytes), data.byReference))
                    }
                }
            } catch {
                flow.cancel(room)
                throw error
            }
            guard !files.isEmpty else {  // every file of it was gone
                flow.cancel(room)
                break
            }
            let number = Self.batchNumbers.wrappingAdd(1, ordering: .relaxed).oldValue
            let message = Message.fileBatch(FileBatch(job: task.job, batch: number, files: files))
            let frame = message.frame()
            let reply = try await flow.send(frame, reserved: room, expecting: .batch(job: task.job, number: number), on: stream, slot: slot)
            progress.sent(UInt64(frame.payload.readableBytes))
            guard case .fileBatchReply(let answer) = reply else {
                throw UnitFailure(retryable: true, description: "\(task.destination.name) answered \(reply.type) instead of a file batch reply")
            }
            var again: [Int] = []
            var refusedFiles = Set<Int>()
            for r in answer.refused {
                guard Int(r.index) < included.count else {
                    throw UnitFailure(retryable: true, description: "\(task.destination.name) refused file \(r.index) of a batch of \(included.count)")
                }
                let i = included[Int(r.index)]
                refusedFiles.insert(i)
                switch r.reason {
                case .need where !byValue.contains(i):
                    byValue.insert(i)
                    again.append(i)
                case .need:
                    // Its bytes went in the batch: a peer that asks for them again would have it
                    // sent again for ever (a thousand batches a second, the unit never ending).
                    throw UnitFailure(retryable: true, description: "\(task.destination.name) asked again for the bytes of \(task.files[i].entry.path), which its batch carried")
                case .corrupt where attempts[i, default: 0] < settings.maxAttempts:
                    progress.refetched()
                    again.append(i)
                default:
                    throw refused(task.files[i], r.reason, r.detail)
                }
            }
            for s in sent where !refusedFiles.contains(s.file) {
                _ = queue.acked(file: s.file)
                if s.referenced {
                    progress.referenced(s.report)
                } else {
                    progress.acked(s.report, codec: s.codec, raw: UInt64(s.report.length), encoded: s.encoded)
                }
            }
            pending = again
        }
    }

    /// Batch numbers, unique within this agent (a reply names its batch by job and number).
    private static let batchNumbers = Atomic<UInt64>(1)
    private static let emptyId = SHA256.hash([]).bytes
    private static let emptyXXH = XXH3.hash128([]).canonicalBytes

    /// Every chunk of file `i` is acked: finish it now, or with the stream's batch.
    private func finished(_ i: Int, _ stream: ChunkStream, _ ready: ReadyFiles?) async throws {
        if let ready { ready.add(i) } else { try await finish(i, stream) }
    }

    /// One chunk, by reference when the destination holds it (or another stream is sending the
    /// same bytes to it right now: then after that stream's ack), else by value, read and sent
    /// again after a `corrupt` nack.
    private func send(chunk i: Int, offset: UInt64, length: Int, _ stream: ChunkStream, _ queue: StepQueue,
                      _ refs: References, _ ready: ReadyFiles?, slot: WriteSlot? = nil) async throws {
        let file = task.files[i]
        let place = ChunkPlace(job: task.job, path: file.entry.path, offset: offset)
        var attempt = 0
        var byReference = refs.enabled && !file.repair
        // This stream is the one sending these bytes by value: others with the same id wait for it.
        var claimed: [UInt8]? = nil
        do {
            while true {
                attempt += 1
                // The agent's budget first, so that a chunk is read only when the agent may hold it.
                let room = await flow.reserve(length)
                let data: ChunkSource.Prepared
                let codecUsed: String
                do {
                    (data, codecUsed) = try sources.using(codec) { source in
                        if let rate = flow.compressionRate { source.encoder.sendRate = rate }
                        // A file of several chunks is read through one descriptor (`HeldSources`).
                        let kept = UInt64(length) < file.length
                            ? try held.descriptor(i, path: file.sourcePath) { try source.open(file.sourcePath) } : nil
                        let data = try source.prepare(
                            sourcePath: file.sourcePath, held: kept.map { ($0.fd, $0.ctime) }, offset: offset, length: length, fileSize: file.entry.size,
                            mtime: (file.entry.mtimeSeconds, file.entry.mtimeNanoseconds), identity: file.entry.identity,
                            destination: place, byReference: { id in
                                guard byReference, claimed == nil else { return false }
                                if refs.claim(id) { return true }
                                claimed = id  // held from here, so that an encoding error below still settles it
                                return false
                            })
                        return (data, source.lastCodec.description)
                    }
                } catch where leftOut(i, for: error) {
                    // Gone or changed: its other chunks find it so too, and it is never finished.
                    // A claim from an earlier attempt (a corrupt nack) is given up, or the streams
                    // waiting for these bytes would wait for ever.
                    flow.cancel(room)
                    if let id = claimed { refs.settle(id, sent: false) }
                    claimed = nil
                    return
                } catch {
                    flow.cancel(room)
                    throw error
                }
                let report = ChunkReport(file: UInt32(i), offset: offset, length: UInt32(length), id: data.id)
                if data.byReference {
                    flow.cancel(room)
                    let ref = Message.chunkRef(ChunkRef(place: place, fileSize: file.entry.size, length: UInt32(length), id: data.id, xxh: data.xxh)).frame()
                    var reply: Message? = nil
                    if await refs.settled(data.id) {
                        progress.sent(UInt64(ref.payload.readableBytes))
                        reply = try await flow.send(ref, expecting: .place(place), on: stream, slot: slot)
                    }
                    guard let reply, !(reply.isNack(.need)) else {
                        byReference = false  // not there after all: read it again and send its bytes
                        attempt -= 1
                        continue
                    }
                    try expectAck(reply, file)
                    progress.referenced(report)
                    if queue.acked(file: i) && file.finish { try await finished(i, stream, ready) }
                    return
                }
                let wire = UInt64(data.encoded.readableBytes)
                let reply = try await flow.send(Frame(type: file.repair ? .chunkRepair : .chunkData, payload: data.payload), reserved: room,
                                                expecting: .place(place), on: stream, slot: slot)
                progress.sent(wire)
                if reply.isNack(.corrupt), attempt < settings.maxAttempts {
                    progress.refetched()
                    continue
                }
                try expectAck(reply, file)
                if let id = claimed {
                    refs.settle(id, sent: true)
                    claimed = nil
                }
                let last = queue.acked(file: i)
                progress.acked(report, codec: codecUsed, raw: UInt64(length), encoded: wire)
                if file.repair { progress.repairWritten(i) }
                if last && file.finish && !file.repair { try await finished(i, stream, ready) }
                return
            }
        } catch {
            if let id = claimed { refs.settle(id, sent: false) }  // whoever waits for it sends it
            throw error
        }
    }

    /// Whether file `i`'s source is still as the scan saw it, to finish, when this unit sends none
    /// of its bytes (a large file whose ranges went in other units; an empty file): one that is
    /// gone or changed is not finished (`leftOut`). Its ranges that found it so sent nothing.
    /// A file with bytes in this unit was checked as they were read.
    private func unchangedAtFinish(_ i: Int) throws -> Bool {
        let f = task.files[i]
        guard f.entry.kind == .file, f.length == 0, !f.repair else { return true }
        return try scanStillHolds(i)
    }

    /// Whether entry `i`, when a symbolic link, is at the source as the scan saw it (its target),
    /// before it is made at the destination from what the scan recorded; one gone or changed is
    /// left out (`leftOut`) and false returned. Directories are made as recorded.
    private func linkStillHolds(_ i: Int) throws -> Bool {
        let f = task.files[i]
        guard f.entry.kind == .symlink else { return true }
        do {
            let path = try RootedPath.lexical(f.sourcePath, under: sources.root)
            guard let name = path.components.last else { return true }
            let directory = try RootDirectory.open(sources.root).openDirectory(path.components.dropLast(), create: false, display: f.sourcePath)
            defer { close(directory) }
            var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlinkat(directory, name, &buffer, buffer.count - 1)
            guard n >= 0 else {
                if errno == EINVAL { throw SourceChanged(path: f.sourcePath, what: "it is no longer a symbolic link") }
                throw StoreError.system(operation: "open", path: f.sourcePath, errno: errno)
            }
            // By bytes, not `==`, which takes canonically equivalent names for the same.
            guard buffer[0..<n].elementsEqual(f.entry.linkTarget.utf8) else {
                throw SourceChanged(path: f.sourcePath, what: "it now points to '\(String(decoding: buffer[0..<n], as: UTF8.self))'")
            }
            return true
        } catch where leftOut(i, for: error) {
            return false
        }
    }

    /// Whether file `i` is at the source as the scan saw it (its size and mtime, and its identity
    /// where the scan gave one); one that is not
    /// is left out (`leftOut`) and false returned. Other failures to look throw.
    private func scanStillHolds(_ i: Int) throws -> Bool {
        let f = task.files[i]
        do {
            let path = try RootedPath.lexical(f.sourcePath, under: sources.root)
            let fd = try RootDirectory.open(sources.root).openForReading(path.relative)
            guard fd >= 0 else { throw StoreError.system(operation: "open", path: f.sourcePath, errno: errno) }
            defer { close(fd) }
            try ChunkSource.checkUnchanged(fd, sourcePath: f.sourcePath, fileSize: f.entry.size, mtime: (f.entry.mtimeSeconds, f.entry.mtimeNanoseconds),
                                           identity: f.entry.identity)
            return true
        } catch where leftOut(i, for: error) {
            return false
        }
    }

    private func finish(_ i: Int, _ stream: ChunkStream) async throws {
        let e = task.files[i].entry
        let done = FileDone(place: ChunkPlace(job: task.job, path: e.path, offset: 0), size: e.size, mode: e.mode,
                            mtimeSeconds: e.mtimeSeconds, mtimeNanoseconds: e.mtimeNanoseconds)
        try Task.checkCancellation()
        try flow.check()
        try expectAck(try await stream.send(.fileDone(done)), task.files[i])
    }

    /// Finishes files in batches of at most `FilesDone.maxFiles` (protocol version 6), all queued
    /// at once: the listener finishes a connection's batches in order, one at a time. `placing`,
    /// the unit's `have query` queued before them, is checked first.
    private func finish(_ files: [Int], _ stream: ChunkStream, after placing: Placing? = nil) async throws {
        try flow.check()
        let parts = stride(from: 0, to: files.count, by: FilesDone.maxFiles).map { Array(files[$0..<min($0 + FilesDone.maxFiles, files.count)]) }
        let replies = parts.map { part in
            stream.queue(.filesDone(FilesDone(job: task.job, files: part.map {
                let e = task.files[$0].entry
                return FilesDone.File(path: e.path, size: e.size, mode: e.mode, mtimeSeconds: e.mtimeSeconds, mtimeNanoseconds: e.mtimeNanoseconds)
            })))
        }
        if let placing { try placed(try await placing.reply.value, placing.paths) }
        for (part, pending) in zip(parts, replies) {
            let reply = try await pending.value
            guard case .filesDoneReply(let answer) = reply else {
                throw UnitFailure(retryable: true, description: "\(task.destination.name) answered \(reply.type) instead of a files done reply")
            }
            if let first = answer.refused.first {
                let file = Int(first.index) < part.count ? task.files[part[Int(first.index)]] : task.files[part[0]]
                throw refused(file, first.reason, first.detail)
            }
        }
    }

    private func expectAck(_ reply: Message, _ file: TaskFile) throws(UnitFailure) {
        switch reply {
        case .chunkAck:
            return
        case .chunkNack(let nack):
            throw refused(file, nack.reason, nack.detail)
        default:
            throw UnitFailure(retryable: true, description: "\(task.destination.name) answered \(reply.type) instead of an ack")
        }
    }

    /// The destination refused `file` (a nack, or a refusal in a `files done reply`); only what
    /// sending again may cure is retryable.
    private func refused(_ file: TaskFile, _ reason: ChunkNack.Reason, _ detail: String) -> UnitFailure {
        let retryable = reason == .corrupt || reason == .writeFailed || reason == .incomplete
        return UnitFailure(retryable: retryable, description: "\(task.destination.name) refused \(file.entry.path): \(detail)",
                           lane: reason == .writeFailed && Self.isOutOfDescriptors(detail))
    }

    /// A write the destination refused because it had no descriptor left (EMFILE, ENFILE: its
    /// `ulimit -n`, or the system's): the destination's moment, which passes as its other units
    /// end, so the attempt is given back, with backoff, like a connection lost. Counted, a
    /// surviving destination agent that took over a stopped one's units failed the job (h7 of
    /// session 49). Told by the words every store error ends with (`StoreError`), which peers of
    /// every version send.
    public static func isOutOfDescriptors(_ detail: String) -> Bool {
        detail.contains("errno \(EMFILE) (") || detail.contains("errno \(ENFILE) (")
    }
}

/// What every stream of a unit needs from the first: the chunks to send by reference, and the
/// files ready for a batch finish (nil with a peer older than version 6).
private struct Start: Sendable {
    let refs: References
    let ready: ReadyFiles?
}

/// Files of a unit whose every chunk is acked, waiting to be finished in a batch.
final class ReadyFiles: Sendable {
    private let files = NIOLockedValueBox<[Int]>([])

    func add(_ i: Int) { files.withLockedValue { $0.append(i) } }

    /// The files added so far, removed.
    func take() -> [Int] {
        files.withLockedValue { f in
            defer { f.removeAll() }
            return f
        }
    }
}

/// A unit's running totals: read by the progress ticker while the unit runs, and turned into
/// `task done` at the end.
public final class UnitProgress: Sendable {
    private struct State {
        var bytesDone: UInt64 = 0
        var wireBytes: UInt64 = 0
        var refetched: UInt32 = 0
        var dedupBytes: UInt64 = 0
        var codecs: [String: CodecUsage] = [:]
        var chunks: [ChunkReport] = []
        /// Files left out (gone from the source, or changed since the scan), by index in the
        /// unit, with why.
        var leftOut: [Int: String] = [:]
        var repairs: Set<Int> = []
    }
    private let state = NIOLockedValueBox(State())

    public init() {}

    func sent(_ wire: UInt64) { state.withLockedValue { $0.wireBytes += wire } }
    func refetched() { state.withLockedValue { $0.refetched += 1 } }

    func acked(_ report: ChunkReport, codec: String, raw: UInt64, encoded: UInt64) {
        state.withLockedValue { s in
            s.bytesDone += raw
            s.chunks.append(report)
            var usage = s.codecs[codec] ?? CodecUsage(codec: codec, chunks: 0, rawBytes: 0, encodedBytes: 0)
            usage.chunks += 1
            usage.rawBytes += raw
            usage.encodedBytes += encoded
            s.codecs[codec] = usage
        }
    }

    /// Files left out so far, by index in the unit.
    var leftOutFiles: [Int: String] { state.withLockedValue { $0.leftOut } }

    /// A repair's chunk (file `file` of a repair unit) was written at the destination.
    func repairWritten(_ file: Int) { state.withLockedValue { _ = $0.repairs.insert(file) } }
    /// The repairs written so far, by index in the unit.
    var repairsWritten: Set<Int> { state.withLockedValue { $0.repairs } }

    /// File `file` was left out, for `reason` (the first reason a file gets stays).
    func leftOut(file: Int, reason: String) {
        state.withLockedValue { s in s.leftOut[file] = s.leftOut[file] ?? reason }
    }

    /// A chunk the destination copied from what it held.
    func referenced(_ report: ChunkReport) {
        state.withLockedValue { s in
            s.bytesDone += UInt64(report.length)
            s.dedupBytes += UInt64(report.length)
            s.chunks.append(report)
        }
    }

    public var snapshot: (bytesDone: UInt64, wireBytes: UInt64) {
        state.withLockedValue { ($0.bytesDone, $0.wireBytes) }
    }

    func done(_ task: TaskAssign) -> TaskDone {
        state.withLockedValue { s in
            let leftOut = s.leftOut.sorted { $0.key < $1.key }
            return TaskDone(job: task.job, unit: task.unit, bytes: s.bytesDone, wireBytes: s.wireBytes, refetched: s.refetched,
                            codecs: s.codecs.values.sorted { $0.codec < $1.codec }, chunks: s.chunks.sorted { ($0.file, $0.offset) < ($1.file, $1.offset) },
                            dedupBytes: s.dedupBytes, leftOut: leftOut.map { UInt32($0.key) },
                            firstLeftOut: leftOut.first?.value ?? "", laterLeftOut: leftOut.dropFirst().map(\.value))
        }
    }
}

/// Chunk sources reused across units, so each keeps its buffers and its selector's calibration.
public final class SourcePool: Sendable {
    /// The root the sources read under.
    public let root: String
    private let make: @Sendable () -> ChunkSource
    private let idle = NIOLockedValueBox<[ChunkSource]>([])
    /// Chunk ids sent per (job, destination agent), for dedup within a job.
    public let sent = SentChunks()

    public init(make: @escaping @Sendable () -> ChunkSource) {
        self.make = make
        let first = make()
        root = first.root
        idle.withLockedValue { $0.append(first) }
    }

    /// Sources taken now, the most taken at once, and how many times one was taken (for tests).
    private let taken = NIOLockedValueBox((now: 0, most: 0, total: 0))
    var mostTakenAtOnce: Int { taken.withLockedValue { $0.most } }
    var timesTaken: Int { taken.withLockedValue { $0.total } }

    func take() -> ChunkSource {
        taken.withLockedValue { t in
            t.now += 1
            t.total += 1
            t.most = max(t.most, t.now)
        }
        return idle.withLockedValue { $0.popLast() } ?? make()
    }

    func give(_ source: ChunkSource) {
        taken.withLockedValue { $0.now -= 1 }
        idle.withLockedValue { $0.append(source) }
    }

    /// Runs `body` with a source set to `codec`, taken for the body only: a source (its buffers,
    /// up to a few MiB) is held while a chunk is read and encoded, not while it waits or flies,
    /// so there are about as many as chunks prepared at once rather than one per worker.
    func using<T>(_ codec: CodecChoice, _ body: (ChunkSource) throws -> T) rethrows -> T {
        let source = take()
        defer { give(source) }
        source.codec = codec
        return try body(source)
    }
}

/// Chunk ids this agent has sent to a destination agent within a job, and those it is sending
/// right now: a later chunk with the same id goes by reference, once the first copy is acked.
/// Bounded: per job and destination at most `limit` ids (32 MiB of ids), and only the most recent
/// `keys` pairs are kept.
public final class SentChunks: Sendable {
    private struct State {
        var sets: [JobDestination: Set<[UInt8]>] = [:]
        var order: [JobDestination] = []
        /// Being sent by value; the continuations of streams waiting for the outcome.
        var sending: [JobDestination: [[UInt8]: [CheckedContinuation<Bool, Never>]]] = [:]
    }
    private let state = NIOLockedValueBox(State())
    let limit: Int
    let keys: Int

    public init(limit: Int = 1 << 20, keys: Int = 16) {
        self.limit = limit
        self.keys = keys
    }

    /// True when the id was sent or is being sent (send a reference, after `settled`); false when
    /// the caller must send it, and now holds the claim until `settle`.
    func claim(_ key: JobDestination, _ id: [UInt8]) -> Bool {
        state.withLockedValue { s in
            if s.sets[key]?.contains(id) == true || s.sending[key]?[id] != nil { return true }
            s.sending[key, default: [:]][id] = []
            return false
        }
    }

    /// Waits until a claimed id is settled; true when it was sent (or already was).
    func settled(_ key: JobDestination, _ id: [UInt8]) async -> Bool {
        await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            let now: Bool? = state.withLockedValue { s in
                if s.sets[key]?.contains(id) == true { return true }
                guard s.sending[key]?[id] != nil else { return false }
                s.sending[key]![id]!.append(c)
                return nil
            }
            if let now { c.resume(returning: now) }
        }
    }

    /// Ends a claim: `sent` when the destination acked the bytes.
    func settle(_ key: JobDestination, _ id: [UInt8], sent: Bool) {
        let waiting = state.withLockedValue { s -> [CheckedContinuation<Bool, Never>] in
            let waiting = s.sending[key]?.removeValue(forKey: id) ?? []
            if sent {
                if s.sets[key] == nil {
                    s.order.append(key)
                    if s.order.count > keys { s.sets.removeValue(forKey: s.order.removeFirst()) }
                }
                if s.sets[key, default: []].count < limit { s.sets[key, default: []].insert(id) }
            }
            return waiting
        }
        waiting.forEach { $0.resume(returning: sent) }
    }

    /// Drops what was sent for a job (it was cancelled or ended).
    public func forget(job: String) {
        state.withLockedValue { s in
            s.order.removeAll { $0.job == job }
            for k in s.sets.keys where k.job == job { s.sets.removeValue(forKey: k) }
        }
    }
}

/// A job and a destination agent it sends to (by name): what `SentChunks` keeps apart.
struct JobDestination: Hashable, Sendable {
    let job: String
    let destination: String
}

/// A unit's view of what may be sent by reference.
struct References: Sendable {
    var enabled: Bool
    var held: Set<[UInt8]> = []
    var sent: SentChunks? = nil
    var key = JobDestination(job: "", destination: "")
    /// A `have query` queued and not awaited (a unit that only finishes files), checked before
    /// the unit's `files done`.
    var placing: Placing? = nil

    /// True: send by reference (after `settled`). False: send by value, holding the claim.
    func claim(_ id: [UInt8]) -> Bool {
        if held.contains(id) { return true }
        return sent?.claim(key, id) ?? false
    }

    func settled(_ id: [UInt8]) async -> Bool {
        if held.contains(id) { return true }
        return await sent?.settled(key, id) ?? false
    }

    func settle(_ id: [UInt8], sent ok: Bool) { sent?.settle(key, id, sent: ok) }
}

/// A queued `have query` and the paths it named.
struct Placing: Sendable {
    let reply: PendingReply
    let paths: [String]
}

extension Message {
    func isNack(_ reason: ChunkNack.Reason) -> Bool {
        if case .chunkNack(let nack) = self { return nack.reason == reason }
        return false
    }
}
