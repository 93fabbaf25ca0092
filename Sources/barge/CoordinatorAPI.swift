import AsyncHTTPClient
import BargeCoordinator
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// A small client for the coordinator's HTTP API, over HTTP or HTTPS (AsyncHTTPClient).
struct CoordinatorAPI {
    let base: String
    /// The API token (`--api-token-file`); nil sends none, and the coordinator answers 401.
    var token: String? = nil
    /// `--ca`: a PEM file of the certificate authorities that may sign the coordinator's
    /// certificate; nil trusts the system's roots.
    var ca: String? = nil
    /// `--timeout`: seconds each request may take, whole, in place of its own default (30 s for
    /// most; more for the calls that do long work: tier gc, prune, the evidence bundle).
    var timeout: TimeInterval? = nil

    /// The largest answer read into memory; the evidence bundle, which can be larger, is streamed.
    static let largestBody = 256 << 20

    /// `waiting`: seconds the coordinator holds the answer on purpose (a long poll), on top of the
    /// request's time.
    func get(_ path: String, timeout: TimeInterval = 30, waiting: TimeInterval = 0) async throws -> Data {
        try await send("GET", path, timeout: timeout, waiting: waiting)
    }
    func post(_ path: String, body: Data? = nil, timeout: TimeInterval = 30) async throws -> Data {
        try await send("POST", path, body: body, timeout: timeout)
    }
    func delete(_ path: String) async throws -> Data { try await send("DELETE", path) }

    /// GET `path` and write the answer to `output` as it arrives, without holding it.
    func download(_ path: String, to output: FileHandle, timeout: TimeInterval) async throws {
        let seconds = self.timeout ?? timeout
        let deadline = NIODeadline.now() + .milliseconds(Int64(seconds * 1000))
        let response = try await execute("GET", path, body: nil, deadline: deadline)
        guard response.status.code / 100 == 2 else {
            throw failure(status: Int(response.status.code), body: try await collect(response, path, deadline, seconds))
        }
        try await Self.beforeDeadline(deadline, else: late(path, seconds)) {
            for try await buffer in response.body { try output.write(contentsOf: buffer.readableBytesView) }
        }
    }

    private func send(_ method: String, _ path: String, body: Data? = nil, timeout: TimeInterval = 30, waiting: TimeInterval = 0) async throws -> Data {
        let seconds = (self.timeout ?? timeout) + waiting
        let deadline = NIODeadline.now() + .milliseconds(Int64(seconds * 1000))
        let response = try await execute(method, path, body: body, deadline: deadline)
        let data = try await collect(response, path, deadline, seconds)
        guard response.status.code / 100 == 2 else { throw failure(status: Int(response.status.code), body: data) }
        return data
    }

    private func collect(_ response: HTTPClientResponse, _ path: String, _ deadline: NIODeadline, _ seconds: TimeInterval) async throws -> Data {
        let largest = Self.largestBody, base = base
        return try await Self.beforeDeadline(deadline, else: late(path, seconds)) {
            do { return Data(buffer: try await response.body.collect(upTo: largest)) } catch {
                throw Failure("the coordinator at \(base) answered more than \(largest >> 20) MiB, or stopped mid-answer: \(error)", noAnswer: true)
            }
        }
    }

    private func late(_ path: String, _ seconds: TimeInterval) -> Failure {
        let shown = seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
        return Failure("the coordinator at \(base) did not finish its answer to \(path) within \(shown) s (--timeout)", noAnswer: true)
    }

    /// `work`'s result, or `late` thrown once `deadline` passes (`work` is then cancelled, which
    /// closes the connection). AsyncHTTPClient's own deadline covers a request only until the
    /// answer's head arrives: a coordinator that stopped mid-answer (frozen, or its host gone
    /// without a reset) held the CLI for good.
    static func beforeDeadline<T: Sendable>(_ deadline: NIODeadline, else late: Failure,
                                            _ work: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await work() }
            group.addTask {
                let now = NIODeadline.now().uptimeNanoseconds
                try await Task.sleep(nanoseconds: deadline.uptimeNanoseconds > now ? deadline.uptimeNanoseconds - now : 0)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw late }
            return value
        }
    }

    private func execute(_ method: String, _ path: String, body: Data?, deadline: NIODeadline) async throws -> HTTPClientResponse {
        guard let url = URL(string: base + path), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw Failure("invalid coordinator URL \(base): use http://HOST:PORT, or https://HOST:PORT for a coordinator with --tls-cert")
        }
        var request = HTTPClientRequest(url: base + path)
        request.method = HTTPMethod(rawValue: method)
        if let token { request.headers.add(name: "Authorization", value: "Bearer " + token) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        let client = try CoordinatorHTTPClients.client(ca: ca)
        do {
            return try await client.execute(request, deadline: deadline)
        } catch {
            throw Self.explain(error, base: base, ca: ca)
        }
    }

    private func failure(status: Int, body: Data) -> Failure {
        let message = (try? JSONDecoder().decode(APIError.self, from: body))?.error.message
            ?? String(decoding: body, as: UTF8.self)
        let reason = message.isEmpty ? "coordinator answered HTTP \(status)" : message
        switch status {
        case 401 where token == nil:
            return Failure("the coordinator at \(base) requires an API token: pass --api-token-file FILE or set BARGE_API_TOKEN_FILE (a coordinator writes an admin token to STATE/admin.token on its first start)")
        case 401: return Failure("\(reason) (HTTP 401)")
        case 403: return Failure("\(reason) (HTTP 403)")
        default: return Failure(reason)
        }
    }

    /// One line on why a request did not get an answer, with the fix when there is an obvious one.
    /// A TLS mismatch is a setting to fix; anything else is the coordinator not answering now.
    static func explain(_ error: any Error, base: String, ca: String?) -> Failure {
        let text = String(describing: error)
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            let fix = ca == nil
                ? "pass --ca FILE (or set BARGE_CA_FILE) with the CA certificate that signed it"
                : "it was not signed by a CA in \(ca!)"
            return Failure("the coordinator's TLS certificate at \(base) is not trusted: \(fix)")
        }
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return Failure("the coordinator's TLS certificate does not name the host in \(base): use a name or address its certificate lists")
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG") {
            return Failure("the coordinator at \(base) does not speak TLS: use http:// (or start it with --tls-cert and --tls-key)")
        }
        if base.hasPrefix("http://"), let client = error as? HTTPClientError, client == .remoteConnectionClosed {
            // Either it stopped while answering (a submit may then have been made) or it
            // serves HTTPS and dropped the plain request: both are said.
            return Failure("the coordinator at \(base) closed the connection without an answer: it may have stopped or restarted meanwhile (what was asked may still have been done: see barge jobs), or it serves HTTPS (--tls-cert), then use https://", noAnswer: true)
        }
        if error is HTTPParserError {
            return Failure("\(base) does not answer in HTTP: is it the coordinator's agent port (--listen)? Its API is at its --http address (default http://127.0.0.1:7480)", noAnswer: true)
        }
        if text.contains("Connection refused") {
            return Failure("cannot reach the coordinator at \(base): nothing listens there (connection refused)", noAnswer: true)
        }
        if let client = error as? HTTPClientError, client == .deadlineExceeded {
            return Failure("the coordinator at \(base) did not answer in time", noAnswer: true)
        }
        return Failure("cannot reach the coordinator at \(base): \(text)", noAnswer: true)
    }

    struct APIError: Decodable {
        struct Body: Decodable { let message: String }
        let error: Body
    }
}

/// One `HTTPClient` per CA file for the life of the process (a CLI run), so that polling reuses its
/// connection. They are never shut down: the process ends first.
enum CoordinatorHTTPClients {
    private static let clients = Mutex<[String: HTTPClient]>([:])

    static func client(ca: String?) throws -> HTTPClient {
        try clients.withLock { clients in
            if let client = clients[ca ?? ""] { return client }
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            if let ca {
                let roots: [NIOSSLCertificate]
                do { roots = try NIOSSLCertificate.fromPEMFile(ca) } catch {
                    throw Failure("--ca \(ca): cannot read a PEM certificate (\(error))")
                }
                guard !roots.isEmpty else { throw Failure("--ca \(ca): no PEM certificate in the file") }
                tls.trustRoots = .certificates(roots)
            }
            var configuration = HTTPClient.Configuration(
                tlsConfiguration: tls, redirectConfiguration: .disallow,
                timeout: .init(connect: .seconds(10)))
            // A CLI fails at once with the reason (an untrusted certificate, say), rather than
            // retrying the connection until the connect timeout.
            configuration.connectionPool.retryConnectionEstablishment = false
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            clients[ca ?? ""] = client
            return client
        }
    }
}
