import ArgumentParser
import BargeCoordinator
import BargeFlow
import Foundation
import Logging

struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run the coordinator: the agent listener, the job journal and the HTTP API.",
        discussion: """
            Agents connect to --listen and authenticate with the cluster token; the CLI and \
            dashboards use the HTTP API on --http. Jobs are journalled in DIR/journal.sqlite, so a \
            restarted coordinator picks up where it stopped. SIGTERM or Ctrl-C shuts down cleanly.

            Every API request but GET /healthz needs a bearer token. On its first start the \
            coordinator writes an admin token to DIR/admin.token (mode 0600); the CLI reads it \
            with --api-token-file (or BARGE_API_TOKEN_FILE), and `barge token create` makes \
            viewer, operator and admin tokens from it. --metrics serves /metrics alone, with no \
            token, for a Prometheus that should not reach the API.

            --tls-cert and --tls-key serve the API over HTTPS (TLS 1.2 or 1.3). Both are PEM \
            files: the server certificate followed by any intermediates, and its unencrypted \
            private key. Clients then use https:// and, for a private CA, `--ca FILE`. Without \
            them the API is plain HTTP, and binding it beyond loopback logs a warning.
            """
    )

    @Option(help: ArgumentHelp("Directory for the journal; created if missing.", valueName: "dir"))
    var state = "./barge-state"

    @Option(help: ArgumentHelp("Address for agents.", valueName: "host:port"))
    var listen = "127.0.0.1:7470"

    @Option(help: ArgumentHelp("Address for the HTTP API.", valueName: "host:port"))
    var http = "127.0.0.1:7480"

    @Option(help: ArgumentHelp("Also serve /metrics here, with no token (Prometheus); off by default.", valueName: "host:port"))
    var metrics: String?

    @Option(help: ArgumentHelp("Serve the HTTP API over TLS with this PEM certificate chain (needs --tls-key).", valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("The PEM private key for --tls-cert.", valueName: "file"))
    var tlsKey: String?

    @Option(help: ArgumentHelp("Seconds without a heartbeat before an agent is marked down (0.5 to 3600); one stopped with SIGTERM says so and is down at once.", valueName: "seconds"))
    var agentTimeout = 15.0

    @Option(help: ArgumentHelp("Largest work unit: files above it are cut into ranges of this size, smaller ones batched up to it.", valueName: "size"))
    var unitSize = "64MiB"

    @Option(help: ArgumentHelp("Chunk size: the unit of hashing, compression, verification and re-sending (64KiB to 16MiB).", valueName: "size"))
    var chunkSize = "1MiB"

    @Option(help: ArgumentHelp("Prune jobs that ended longer ago than this (30d, 12h), at start and hourly, with their units; 'off' keeps them. Running and queued jobs are never pruned.", valueName: "age"))
    var retain = "off"

    @Option(help: ArgumentHelp("A web hook told of every job's events (started, succeeded, failed, cancelled, verified) as CloudEvents 1.0 JSON POSTs, retried with backoff until it answers 2xx; repeatable. Undelivered events are journalled and survive a restart.", valueName: "url"))
    var notify: [String] = []

    @Option(help: ArgumentHelp("Sign notifications with HMAC-SHA256 under this file's contents: header X-Barge-Signature: sha256=<hex of the body's HMAC>.", valueName: "file"))
    var notifySecretFile: String?

    @OptionGroup var tokenOptions: TokenOptions
    @OptionGroup var logOptions: LogOptions
    @OptionGroup var configOption: ConfigOption
    @OptionGroup var plaintext: PlaintextOption

    /// `--retain`: an age in days, hours or minutes, up to 100 years; nil for anything else.
    static func age(_ text: String) -> Duration? {
        guard let unit = text.last, let n = Double(text.dropLast()), n > 0 else { return nil }
        let seconds: Double
        switch unit {
        case "d": seconds = n * 86_400
        case "h": seconds = n * 3_600
        case "m": seconds = n * 60
        default: return nil
        }
        // A Duration of 1e300 days traps.
        return seconds <= 100 * 365.25 * 86_400 ? .seconds(seconds) : nil
    }

    func validate() throws {
        if retain != "off" && Self.age(retain) == nil { throw ValidationError("--retain: '\(retain)' is not an age (30d, 12h, 90m; at most 100 years) or 'off'") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together: pass both, or neither for plain HTTP") }
    }

    func run() async throws {
        logOptions.bootstrap()
        plaintext.apply()
        if let low = DescriptorLimit.warning(DescriptorLimit.raise(), process: "the coordinator") { Logger(label: "barge.coordinator").warning("\(low)") }
        guard agentTimeout >= 0.5, agentTimeout <= 3600 else { throw ValidationError("--agent-timeout must be 0.5 to 3600 seconds") }
        var config = CoordinatorServer.Configuration(
            stateDirectory: state, agents: try parseHostPort(listen, option: "--listen"),
            http: try parseHostPort(http, option: "--http"), token: try tokenOptions.token())
        let unit: Int, chunk: Int
        do {
            unit = try ByteQuantity.parseSize(unitSize)
            chunk = try ByteQuantity.parseSize(chunkSize)
        } catch { throw ValidationError("--unit-size/--chunk-size: \(error)") }
        guard (64 << 10)...(16 << 20) ~= chunk else { throw ValidationError("--chunk-size must be from 64KiB to 16MiB") }
        guard unit >= chunk, unit % chunk == 0 else { throw ValidationError("--unit-size must be a multiple of --chunk-size") }
        config.planner = Planner(unitBytes: UInt64(unit), chunkSize: UInt64(chunk))
        config.retention = Self.age(retain)
        for url in notify where !NotifyURL.isValid(url) { throw ValidationError("--notify \(url): give an http:// or https:// URL") }
        config.notify.urls = notify
        if let notifySecretFile {
            guard let secret = FileManager.default.contents(atPath: notifySecretFile), !secret.isEmpty else {
                throw Failure("--notify-secret-file: cannot read \(notifySecretFile), or it is empty")
            }
            config.notify.secret = Array(secret)
        }
        config.metrics = try metrics.map { try parseHostPort($0, option: "--metrics") }
        if let tlsCert, let tlsKey {
            do { config.tls = try APITLS(certificate: tlsCert, key: tlsKey) } catch { throw Failure(error.description) }
        }
        config.agentTimeout = .milliseconds(Int(agentTimeout * 1000))
        config.heartbeatInterval = .milliseconds(max(100, Int(agentTimeout * 1000) / 10))
        do {
            try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        } catch {
            throw Failure("cannot create state directory \(state): \(error.localizedDescription)")
        }
        try await CoordinatorServer(configuration: config).run()
    }
}
