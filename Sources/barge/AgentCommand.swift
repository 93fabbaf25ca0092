import ArgumentParser
import BargeAgent
import BargeCodec
import BargeFlow
import BargeStore
import BargeTier
import BargeWire
import Foundation
import Logging

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run an agent on a data-transfer node, serving one root directory for one site.",
        discussion: """
            The agent registers with the coordinator and keeps a heartbeat; if the coordinator is \
            not there yet, or goes away, it reconnects with exponential backoff. A wrong token or a \
            refused registration stops it with the reason. Paths of jobs are always taken under \
            --root. Ctrl-C stops it.
            """
    )

    @Option(help: ArgumentHelp("The coordinator's agent address.", valueName: "host:port"))
    var coordinator = "127.0.0.1:7470"

    @Option(help: ArgumentHelp("This agent's name, unique in the cluster: 1 to 255 bytes, no '/', spaces or control characters, not '.' or '..'.", valueName: "name"))
    var name: String

    @Option(help: ArgumentHelp("The site (cluster) this node belongs to: 1 to 255 bytes, no ':', '/', spaces or control characters.", valueName: "site"))
    var site: String

    @Option(help: ArgumentHelp("The directory this agent reads from and writes to.", valueName: "dir"))
    var root: String

    @Option(help: ArgumentHelp("Address of this agent's data-plane listener; port 0 picks a free port.", valueName: "host:port"))
    var listen = "127.0.0.1:0"

    @Option(help: ArgumentHelp("Host other agents use to reach this one (default: the --listen host).", valueName: "host"))
    var advertise: String?

    @Option(help: ArgumentHelp("TCP connections to each destination agent, shared by all the units sent there at once and kept between jobs (as GridFTP's -p). Each unit sends on up to this many at once. (default: 4, or 8 to a destination whose round trip is 10 ms or more)", valueName: "n"))
    var streams: Int?

    @Option(help: ArgumentHelp("Units this agent works on at once, as source or destination.", valueName: "n"))
    var maxUnits = 4

    @Option(help: ArgumentHelp("The most chunk data this agent holds read and not yet acknowledged, over every unit and destination it sends to (at least 16MiB). A chunk is read only once this and its lane's window have room for it. A path needs somewhat more than its bandwidth-delay product: the default carries 1 Gbit/s at 100 ms (12.5 MB); raise it for faster or longer paths (10 Gbit/s at 100 ms: 125 MB, so 256MiB).", valueName: "size"))
    var sendMemory = "64MiB"

    /// `--send-memory` in bytes.
    func sendMemoryBytes() throws -> Int {
        let bytes: Int
        do { bytes = try ByteQuantity.parseSize(sendMemory) } catch { throw ValidationError("--send-memory: \(error)") }
        guard bytes >= SendBudget.leastLimit, bytes <= 1 << 40 else { throw ValidationError("--send-memory must be 16MiB to 1TiB, not \(sendMemory)") }
        return bytes
    }

    @Option(help: ArgumentHelp("The link rate the adaptive codec plans for (a slower link makes it compress harder). 'auto': the bottleneck each lane measures, or a --bwlimit in force if lower. 'unlimited': plan as if the network were never the bottleneck (store raw whenever that is cheapest in CPU).", valueName: "rate"))
    var linkRate = "auto"

    @Option(help: ArgumentHelp("Congestion mode for jobs whose coordinator sets none (an older version): fair, scavenger or off. Jobs set theirs with 'submit --cc'.", valueName: "mode"))
    var cc = "fair"

    @Option(help: ArgumentHelp("The TCP congestion control of the connections this agent sends on: 'system' for the host's default (net.ipv4.tcp_congestion_control), or a name the kernel offers (net.ipv4.tcp_available_congestion_control: cubic, bbr, reno…). An agent without CAP_NET_ADMIN may only choose those in net.ipv4.tcp_allowed_congestion_control. The agent's congestion modes (--cc, submit --cc) pace on top of it.", valueName: "name"))
    var tcpCongestion = "system"

    /// `--tcp-congestion`, checked against the kernel; nil: the host's default.
    func tcpCongestionControl() throws -> TCPCongestionControl? {
        if tcpCongestion == "system" { return nil }
        do {
            let choice = try TCPCongestionControl(named: tcpCongestion)
            try choice.check()
            return choice
        } catch {
            throw ValidationError("--tcp-congestion \(tcpCongestion): \(error)")
        }
    }

    func fixedLinkRate() throws -> Double? {
        if linkRate == "auto" { return nil }
        if linkRate == "unlimited" { return .infinity }
        do { return try ByteQuantity.parseRate(linkRate) } catch { throw ValidationError("--link-rate: \(error)") }
    }

    @Option(help: ArgumentHelp("Seconds a data-plane stream's requests may wait with no answer, and none of its bytes taken by the peer's TCP, before the stream is dropped and its unit retried (0.5 to 3600). A stream waiting on a --bwlimit, or sending slowly to a peer that takes its bytes, is not stalled.", valueName: "seconds"))
    var stallTimeout = 60.0

    @Option(help: ArgumentHelp("Where this agent keeps its chunk index (the chunks it has verified, for restarts and dedup) and what each path it sends on is known to carry (paths.json, the starting window of its lanes after a restart). Default: <root>/.barge/<name>, which scans of the whole root leave out.", valueName: "dir"))
    var state: String?

    @Option(help: ArgumentHelp("Cap on what this agent sends, all units together: a rate (40MiB/s, 1Gbit/s), 'off', or a weekly timetable in local time, like 'Mon-Fri 08:00-18:00 100MiB/s, 18:00 off'.", valueName: "rate"))
    var bwlimit = "off"

    @Flag(help: "Send every chunk's bytes, even those a destination already holds.")
    var noDedup = false

    @Option(help: ArgumentHelp("Files at least this large are cut into content-defined chunks (FastCDC, 512 KiB to 4 MiB, 1 MiB on average), so an insertion changes only nearby chunks, when sent and when demoted to the cold tier; smaller files use fixed chunks. 'off' always uses fixed chunks.", valueName: "size"))
    var cdcAbove = "8MiB"

    /// `--cdc-above` as bytes, nil for off.
    func contentDefinedAbove() throws -> UInt64? {
        if cdcAbove == "off" { return nil }
        do { return UInt64(try ByteQuantity.parseSize(cdcAbove)) } catch { throw ValidationError("--cdc-above: \(error)") }
    }

    @Option(help: ArgumentHelp("The site's cold tier: a pack store in a directory the site's agents share (created if missing). Without it, files can only be hot.", valueName: "dir"))
    var cold: String?

    @Option(help: ArgumentHelp("Encrypt the cold store at rest with AES-256-GCM under a key derived from this file (at least 16 bytes; head -c 32 /dev/urandom > cold.key). Every agent of the site needs the same file; without it nothing in the store can be read.", valueName: "file"))
    var coldKeyFile: String?

    @Option(help: ArgumentHelp("The site's placement policy, for transfers without --tier and demotions without --policy (paths relative to --root): rules 'TIER[:COND,…]' separated by ';', the first match wins; conditions are a path glob, size>N, size<N, age>D, age<D. Example: 'cold:raw/**;cold:age>90d,size>1MiB;hot'.", valueName: "policy"))
    var tierPolicy: String?

    @OptionGroup var tokenOptions: TokenOptions
    @OptionGroup var logOptions: LogOptions
    @OptionGroup var configOption: ConfigOption
    @OptionGroup var plaintext: PlaintextOption

    func validate() throws {
        if let problem = Register.nameProblem(name) { throw ValidationError("--name \(problem)") }
        if let problem = Register.siteProblem(site) { throw ValidationError("--site \(problem)") }
        _ = try fixedLinkRate()
        do { _ = try CongestionMode(named: cc) } catch { throw ValidationError("--\(error)") }
        _ = try contentDefinedAbove()
        _ = try tcpCongestionControl()
        _ = try sendMemoryBytes()
        do { _ = try RateLimiter(bwlimit) } catch { throw ValidationError("--bwlimit: \(error)") }
        guard (0.5...3600).contains(stallTimeout) else { throw ValidationError("--stall-timeout must be 0.5 to 3600 seconds") }
        if let streams, !(1...64).contains(streams) { throw ValidationError("--streams must be 1 to 64") }
        guard (1...256).contains(maxUnits) else { throw ValidationError("--max-units must be 1 to 256") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--root \(root) is not a directory")
        }
    }

    func run() async throws {
        logOptions.bootstrap()
        plaintext.apply()
        MemoryTuning.keepLargeBuffers()
        let descriptors = DescriptorLimit.raise()
        let target = try parseHostPort(coordinator, option: "--coordinator")
        let data = try parseHostPort(listen, option: "--listen")
        let token = try tokenOptions.token()
        let rootPath = URL(fileURLWithPath: root).standardizedFileURL.path
        let logger = Logger(label: "barge.agent")
        if let low = DescriptorLimit.warning(descriptors, process: "agent \(name)") { logger.warning("\(low)") }
        let stateDirectory = state ?? rootPath + "/" + TreeScanner.stateDirectory + "/" + name
        let index: ChunkIndex
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            // No job reads or writes it, even when --state lies below the root, at this agent or
            // any other sharing the root.
            try StatePaths.protect(stateDirectory)
            index = try ChunkIndex(path: stateDirectory + "/" + ChunkIndex.fileName, root: rootPath)
        } catch {
            throw Failure("agent \(name): cannot open its chunk index in \(stateDirectory): \(error)")
        }
        let tiers: TierWork
        do {
            let policy = try tierPolicy.map { try TierPolicy(parsing: $0) }
            if coldKeyFile != nil && cold == nil { throw ColdStoreError("--cold-key-file needs --cold DIR") }
            let key = try coldKeyFile.map { file -> [UInt8] in
                guard let data = FileManager.default.contents(atPath: file) else { throw ColdStoreError("cannot read --cold-key-file \(file)") }
                return Array(data)
            }
            if let cold {
                try FileManager.default.createDirectory(atPath: cold, withIntermediateDirectories: true)
                // A cold store inside the root is not data either.
                try StatePaths.protect(cold)
            }
            let tierPause = try faultSeconds("BARGE_FAULT_TIER_FILE_DELAY")
            if tierPause > 0 {
                logger.warning("agent \(name): fault injection on: BARGE_FAULT_TIER_FILE_DELAY=\(tierPause), so this agent pauses \(tierPause) s after each file a tier page moves (tests only)")
            }
            tiers = try TierWork(root: rootPath, name: name, cold: cold, keyMaterial: key, sitePolicy: policy,
                                 contentDefinedAbove: try contentDefinedAbove(), fileDelay: tierPause > 0 ? tierPause : nil)
            if let cold { logger.notice("agent \(name): cold tier in \(cold)\(key != nil ? ", encrypted" : "")\(policy.map { ", site policy \($0)" } ?? "")") }
        } catch let error as TierPolicyError {
            throw ValidationError("--tier-policy: \(error.description)")
        } catch {
            throw Failure("agent \(name): \(error)")
        }
        let listener: DataPlaneListener
        do {
            listener = try await DataPlaneListener.bind(host: data.host, port: data.port, root: rootPath, token: token, name: name,
                                                        index: index, intake: tiers.intake, sitePolicy: tiers.sitePolicy, logger: logger)
        } catch {
            throw Failure("agent \(name): cannot listen on \(data): \(error)")
        }
        let port = listener.localAddress?.port ?? data.port
        let host = advertise ?? (data.host == "0.0.0.0" || data.host == "::" ? "127.0.0.1" : data.host)
        let tcpCC = try tcpCongestionControl()
        logger.notice("agent \(name): data plane listening on \(data.host):\(port), advertised as \(host):\(port), root \(rootPath), chunk index \(stateDirectory), protocol versions \(WireVersion.supported.lowerBound)...\(WireVersion.supported.upperBound), sending with TCP congestion control \(tcpCC?.name ?? "\(TCPCongestionControl.hostDefault() ?? "unknown") (the host's default)")")
        // Which directory the root is, so that the coordinator can refuse this agent if its
        // site's other agents serve another. Without it (a root it may not write), it is not compared.
        var rootID: String?
        do {
            rootID = try RootIdentity.establish(root: rootPath)
        } catch {
            logger.warning("agent \(name): cannot keep the root's id in \(rootPath)/\(TreeScanner.stateDirectory)/\(RootIdentity.fileName) (\(error)); the coordinator cannot check that this agent shares its site's root")
        }
        let identity = AgentIdentity(name: name, site: site, root: rootPath, dataHost: host, dataPort: UInt16(port), maxInFlight: UInt32(maxUnits),
                                     build: BargeBuild.version, rootID: rootID)
        let corrupt = try faultFraction("BARGE_FAULT_CORRUPT")
        if corrupt > 0 {
            logger.warning("agent \(name): fault injection on: BARGE_FAULT_CORRUPT=\(corrupt), so about \(Int((corrupt * 100).rounded()))% of the chunks this agent sends are corrupted after hashing (tests only)")
        }
        let dropReports = try faultFraction("BARGE_FAULT_DROP_REPORTS")
        if dropReports > 0 {
            logger.warning("agent \(name): fault injection on: BARGE_FAULT_DROP_REPORTS=\(dropReports), so this agent drops its coordinator connection after about \(Int((dropReports * 100).rounded()))% of its reports (tests only)")
        }
        let client = CoordinatorClient(host: target.host, port: target.port, token: token, identity: identity, faultDropReports: dropReports)
        var settings = AgentWork.Settings(root: rootPath, name: name, token: token, sender: UnitSender.Settings(streams: streams ?? 4, longPathStreams: streams == nil ? 8 : nil, dedup: !noDedup, contentDefinedAbove: try contentDefinedAbove()))
        settings.stallTimeout = .milliseconds(Int(stallTimeout * 1000))
        settings.pathMemoryFile = stateDirectory + "/" + PathMemory.fileName
        settings.sender.limiter = try RateLimiter(bwlimit)
        settings.congestion = try CongestionMode(named: cc)
        let scanPause = try faultSeconds("BARGE_FAULT_SCAN_PAGE_DELAY")
        if scanPause > 0 {
            settings.scanPageDelay = .milliseconds(Int(scanPause * 1000))
            logger.warning("agent \(name): fault injection on: BARGE_FAULT_SCAN_PAGE_DELAY=\(scanPause), so this agent pauses \(scanPause) s after each page of its scans (tests only)")
        }
        settings.linkRate = try fixedLinkRate()
        settings.tcpCongestion = tcpCC
        if tcpCC == nil, let scavengerTCP = TCPCongestionControl.forScavenger(hostDefault: TCPCongestionControl.hostDefault()) {
            settings.scavengerTCP = scavengerTCP
            logger.notice("agent \(name): scavenger jobs send with TCP congestion control \(scavengerTCP.name), which gives way to other flows on long paths where the host's default does not")
        }
        settings.sendMemory = try sendMemoryBytes()
        if bwlimit != "off" { logger.notice("agent \(name): sending capped by --bwlimit \(bwlimit)") }
        let work = AgentWork(
            settings: settings,
            // auto plans for as many chunks compressed at once as the agent has streams, up to its
            // cores, and its streams share what they learn.
            sources: SourcePool { [rate = try? fixedLinkRate(), parallelism = Double(min(ProcessInfo.processInfo.activeProcessorCount, (streams ?? 8) * maxUnits)),
                                   selector = SharedSelector()] in
                ChunkSource(root: rootPath, encoder: AdaptiveEncoder(sendRate: rate, parallelism: parallelism, selector: selector), corruptFraction: corrupt)
            }, receiving: listener.files, tiers: tiers, logger: logger)
        let running = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await listener.run(fence: work.fence) }
                group.addTask { try await AgentRunner(client: client, work: work, logger: logger).run() }
                // The registration loop ends on cancellation or a fatal error; the listener goes with it.
                defer { group.cancelAll() }
                try await group.next()
            }
        }
        let stopped = SignalFlag()
        let signals = SignalWatcher.start {
            stopped.set()
            running.cancel()
        }
        defer { signals.forEach { $0.cancel() } }
        do {
            try await running.value
        } catch {
            // SIGTERM or SIGINT: a normal stop, not an error.
            if stopped.isSet {
                logger.notice("agent \(name): stopped by a signal")
                return
            }
            // The cluster's token changed in its file since this agent read it (a rotation): the
            // agent keeps the one it read at start, so the words say so, not "different token
            // files" (h4 of session 49).
            if let failure = error as? HandshakeFailure, failure.error.code == .authenticationFailed, let path = tokenOptions.path,
               let now = try? ClusterToken(contentsOf: path), now != token {
                throw Failure("agent \(name): the coordinator refused this agent's cluster token: the token in \(path) has changed since this agent started, and the agent uses the one it read then; restart it to use the new one")
            }
            throw Failure("agent \(name): \(error)")
        }
    }
}

/// A fault-injection fraction from the environment (tests only): `BARGE_FAULT_CORRUPT=P`, the
/// fraction of sent chunks to corrupt after hashing; `BARGE_FAULT_DROP_REPORTS=P`, the fraction
/// of reports after which the coordinator connection is dropped.
func faultFraction(_ variable: String) throws -> Double {
    guard let raw = ProcessInfo.processInfo.environment[variable], !raw.isEmpty else { return 0 }
    guard let p = Double(raw), (0...1).contains(p) else { throw ValidationError("\(variable) must be a fraction from 0 to 1, not '\(raw)'") }
    return p
}

/// A fault-injection pause from the environment (tests only), in seconds from 0 to 10:
/// `BARGE_FAULT_SCAN_PAGE_DELAY=S`, the pause after each page of a scan;
/// `BARGE_FAULT_TIER_FILE_DELAY=S`, the pause after each file a tier page moves.
func faultSeconds(_ variable: String) throws -> Double {
    guard let raw = ProcessInfo.processInfo.environment[variable], !raw.isEmpty else { return 0 }
    guard let s = Double(raw), (0...10).contains(s) else { throw ValidationError("\(variable) must be seconds from 0 to 10, not '\(raw)'") }
    return s
}

/// Cancels the agent on SIGINT or SIGTERM, so it closes its connection cleanly.
/// Whether SIGINT or SIGTERM arrived.
final class SignalFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

enum SignalWatcher {
    static func start(_ onSignal: @escaping @Sendable () -> Void) -> [DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler(handler: onSignal)
            source.resume()
            return source
        }
    }
}

/// The data plane allocates and frees a buffer of about a chunk for every chunk. glibc's defaults
/// serve those with fresh mappings (or trim them back to the kernel) and the next allocation pays a
/// page fault per 4 KiB: a profile of a 1 GiB transfer showed 15% of the receiving agent's CPU in
/// those faults. Raising the thresholds keeps such buffers in the heap for reuse; capping the number
/// of arenas bounds how much the heap keeps in all. glibc's own variables (`MALLOC_MMAP_THRESHOLD_`,
/// `MALLOC_TRIM_THRESHOLD_`, `MALLOC_ARENA_MAX`), when set, win over these values.
enum MemoryTuning {
    static func keepLargeBuffers() {
        #if os(Linux)
        let environment = ProcessInfo.processInfo.environment
        func set(_ parameter: Int32, _ value: Int32, unless variable: String) {
            if environment[variable] == nil { _ = glibcMallopt(parameter, value) }
        }
        set(-3, 64 << 20, unless: "MALLOC_MMAP_THRESHOLD_")   // M_MMAP_THRESHOLD (malloc.h, which Glibc does not import)
        set(-1, 256 << 20, unless: "MALLOC_TRIM_THRESHOLD_")  // M_TRIM_THRESHOLD
        set(-8, 4, unless: "MALLOC_ARENA_MAX")                // M_ARENA_MAX: what each arena keeps is bounded, so few arenas
        #endif
    }
}

#if os(Linux)
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
#endif
