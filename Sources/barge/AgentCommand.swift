import ArgumentParser
import BargeAgent
import BargeWire
import Foundation

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

    @Option(help: ArgumentHelp("This agent's name, unique in the cluster.", valueName: "name"))
    var name: String

    @Option(help: ArgumentHelp("The site (cluster) this node belongs to.", valueName: "site"))
    var site: String

    @Option(help: ArgumentHelp("The directory this agent reads from and writes to.", valueName: "dir"))
    var root: String

    @Option(help: ArgumentHelp("Host other agents use to reach this one (default: 127.0.0.1).", valueName: "host"))
    var advertise = "127.0.0.1"

    @OptionGroup var tokenOptions: TokenOptions

    func validate() throws {
        guard !name.isEmpty, name.utf8.count <= 255 else { throw ValidationError("--name must be 1 to 255 bytes") }
        guard !site.isEmpty, site.utf8.count <= 255 else { throw ValidationError("--site must be 1 to 255 bytes") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--root \(root) is not a directory")
        }
    }

    func run() async throws {
        let target = try parseHostPort(coordinator, option: "--coordinator")
        let rootPath = URL(fileURLWithPath: root).standardizedFileURL.path
        // The data-plane listener comes with chunk transfer; until then port 0 is advertised.
        let identity = AgentIdentity(name: name, site: site, root: rootPath, dataHost: advertise, dataPort: 0)
        let client = CoordinatorClient(host: target.host, port: target.port, token: try tokenOptions.token(), identity: identity)
        let runner = Task { try await AgentRunner(client: client).run() }
        let signals = SignalWatcher.start { runner.cancel() }
        defer { signals.forEach { $0.cancel() } }
        do {
            try await runner.value
        } catch {
            throw Failure("agent \(name): \(error)")
        }
    }
}

/// Cancels the agent on SIGINT or SIGTERM, so it closes its connection cleanly.
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
