import AsyncHTTPClient
import BargeDigest
import BargeFlow
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle

/// Tells web hooks about jobs: each job event (started, succeeded, failed, cancelled, verified)
/// is POSTed as a CloudEvents 1.0 JSON document (structured mode) to every coordinator-wide URL
/// (`--notify`) and to the job's own (`submit --notify`), signed with HMAC-SHA256 of the body
/// under `--notify-secret-file` (`X-Barge-Signature: sha256=<hex>`).
///
/// The events come from the journal (`Journal+Notifications`), written with the state change
/// itself; each delivery is retried with exponential backoff (1 s doubling to 5 min, 12
/// attempts) and deleted once its receiver answers 2xx. All of it runs here, in its own task,
/// reading and writing the journal: scheduling never waits for a receiver.
public struct NotificationService: Service {
    public struct Settings: Sendable {
        public var urls: [String] = []
        public var secret: [UInt8]?
        public var interval: Duration = .milliseconds(250)
        public var maxAttempts = 12
        public var backoff = ExponentialBackoff(initial: .seconds(1), maximum: .seconds(300))
        public var timeout: Duration = .seconds(10)

        public init(urls: [String] = [], secret: [UInt8]? = nil) {
            self.urls = urls
            self.secret = secret
        }
    }

    let journal: Journal
    let settings: Settings
    let source: String
    let logger: Logger

    public init(journal: Journal, settings: Settings, source: String, logger: Logger) {
        self.journal = journal
        self.settings = settings
        self.source = source
        self.logger = logger
    }

    public func run() async throws {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(5), read: .seconds(Int64(settings.timeout.seconds)))
        configuration.connectionPool.retryConnectionEstablishment = false
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        while !StopAwarePause.stopping {
            do {
                try await expandEvents()
                // Deliveries under way end as the coordinator stops: they stay due, and go after
                // the restart (at least once), rather than hold the stop for their timeout.
                try await cancelWhenGracefulShutdown { try await deliverDue(client) }
            } catch where !StopAwarePause.stopping {
                logger.warning("notifications: \(error)")
            } catch {}
            await StopAwarePause.pause(for: settings.interval)
        }
        try? await client.shutdown()
    }

    /// Each new event becomes a delivery per URL, its body fixed now (the job as it stands).
    func expandEvents() async throws {
        for event in try await journal.pendingEvents() {
            let job = try await journal.eventJob(event)
            let urls = settings.urls + (job?.notify.map { [$0] } ?? [])
            var deliveries: [(url: String, body: String)] = []
            if let job, !urls.isEmpty {
                let body = try Self.cloudEvent(event, job: job, source: source)
                deliveries = urls.map { ($0, body) }
            }
            try await journal.expand(event, into: deliveries, now: Date().timeIntervalSince1970)
        }
    }

    /// The CloudEvents 1.0 document for an event, with the job's status as its data.
    static func cloudEvent(_ event: Journal.NotifiedEvent, job: JobRecord, source: String) throws -> String {
        let status = try JSONSerialization.jsonObject(with: JSONEncoder().encode(JobStatus(job)))
        let time = ISO8601DateFormatter.string(from: Date(timeIntervalSince1970: event.at), timeZone: TimeZone(identifier: "UTC")!,
                                               formatOptions: [.withInternetDateTime, .withFractionalSeconds])
        let document: [String: Any] = [
            "specversion": "1.0", "id": "\(source)/\(event.seq)", "source": source, "type": "io.barge.job.\(event.type)",
            "subject": job.id, "time": time, "datacontenttype": "application/json", "data": status,
        ]
        return String(decoding: try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    }

    /// `sha256=<hex>` of HMAC-SHA256(secret, body).
    static func signature(_ body: String, secret: [UInt8]) throws -> String {
        "sha256=" + (try HMACSHA256.authenticate(Array(body.utf8), key: secret)).description
    }

    func deliverDue(_ client: HTTPClient) async throws {
        let due = try await journal.dueDeliveries(now: Date().timeIntervalSince1970)
        guard !due.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            for d in due {
                group.addTask { await self.deliver(d, client) }
            }
        }
    }

    private func deliver(_ d: Journal.Delivery, _ client: HTTPClient) async {
        var problem: String?
        do {
            var request = HTTPClientRequest(url: d.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/cloudevents+json; charset=utf-8")
            request.headers.add(name: "User-Agent", value: "barge-coordinator")
            if let secret = settings.secret { request.headers.add(name: "X-Barge-Signature", value: try Self.signature(d.body, secret: secret)) }
            request.body = .bytes(ByteBuffer(string: d.body))
            let response = try await client.execute(request, timeout: .seconds(Int64(settings.timeout.seconds)))
            _ = try? await response.body.collect(upTo: 1 << 16)
            if !(200..<300).contains(Int(response.status.code)) { problem = "HTTP \(response.status.code)" }
        } catch {
            problem = "\(error)"
        }
        // Cancelled as the coordinator stops: not an attempt; it stays due.
        if problem != nil && Task.isCancelled { return }
        do {
            guard let problem else {
                try await journal.delivered(d)
                return
            }
            if d.attempts + 1 >= settings.maxAttempts {
                logger.error("notification \(d.seq) to \(d.url) given up after \(d.attempts + 1) attempts: \(problem)")
                try await journal.delivered(d)
                return
            }
            let wait = settings.backoff.delay(attempt: d.attempts, fraction: 1)
            logger.warning("notification \(d.seq) to \(d.url) failed (\(problem)); attempt \(d.attempts + 2) in \(wait)")
            try await journal.deliveryFailed(d, error: problem, retryAt: Date().timeIntervalSince1970 + wait.seconds)
        } catch {
            logger.warning("notifications: \(error)")
        }
    }
}

/// The URLs notifications go to.
public enum NotifyURL {
    public static func isValid(_ text: String) -> Bool {
        guard text.utf8.count <= 2048, let url = URL(string: text), let scheme = url.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty else { return false }
        return true
    }
}
