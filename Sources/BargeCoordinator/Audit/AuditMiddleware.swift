import Dispatch
import Foundation
import Hummingbird
import NIOCore
import Logging
import NIOConcurrencyHelpers

/// Every request that may change something (any method but GET and HEAD) is a control action:
/// it runs with an `AuditContext`, and whatever it did is in the audit trail when it answers,
/// refusals (401, 403, 4xx) and failures included. Runs before authentication, so a request
/// with no valid token is recorded too (as `anonymous`).
struct AuditMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    /// Bodies are small JSON objects; more than this is recorded as its size.
    static let bodyLimit = 4096

    let journal: Journal
    let trail: AuditTrail?
    let logger: Logger
    /// Requests refused for want of a valid token, recorded within a budget.
    let refusals = NIOLockedValueBox(RefusalThrottle())
    /// The longest request path recorded whole for a request without a valid token.
    static let refusedPathLimit = 256

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method != .get, request.method != .head else { return try await next(request, context) }
        var request = request
        var draft = AuditRecord(kind: "action", actor: .init(name: "anonymous"))
        draft.from = context.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" }
        draft.action = "\(request.method) \(request.uri.path)"
        draft.path = request.uri.path
        var args: [String: String] = [:]
        for (k, v) in request.uri.queryParameters { args[String(k)] = Self.isCredential(String(k)) ? Self.redacted : String(v) }
        var sent = (query: args.count, body: 0)
        do {
            let body = try await request.collectBody(upTo: RequestChecks.maxBody)
            sent.body = body.readableBytes
            if body.readableBytes > 0 {
                args["body"] = body.readableBytes <= Self.bodyLimit ? Self.withoutSecrets(String(buffer: body)) : "(\(body.readableBytes) bytes)"
            }
        } catch {
            sent.body = -1
            // Partly read (over the limit, or cut off): whoever reads it next gets the same error
            // (over the limit: 413), rather than reading the stream a second time (a debug
            // build's assertion; a release build's body cut short, answered "not JSON", 400; a
            // black-box review).
            request.body = RequestBody(asyncSequence: UnreadableBody(error: error))
        }
        draft.args = args.isEmpty ? nil : args
        let audit = AuditContext(draft)
        let response: Response
        do {
            response = try await AuditContext.$current.withValue(audit) { try await next(request, context) }
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            await record(audit.unrecorded(status: status, detail: (error as? HTTPError)?.body ?? "\(error)"), sent: sent)
            throw error
        }
        await record(audit.unrecorded(status: response.status.code, detail: nil), sent: sent)
        return response
    }

    /// A query parameter that may carry a secret (`?token=`): its value is never recorded. A
    /// viewer may read the trail (a job's evidence bundle), and an admin token sent in a query
    /// once sat there in clear for any viewer to take.
    static func isCredential(_ name: String) -> Bool {
        let n = name.lowercased()
        return ["token", "secret", "password", "passwd", "key", "auth", "credential", "signature"].contains { n.contains($0) }
    }

    static let redacted = "(not recorded: it may hold a secret)"

    /// The body of a request whose body could not be read whole (over the limit: the API
    /// answers `NIOTooManyBytesError` 413): reading it throws what reading it threw.
    struct UnreadableBody: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let error: any Error
        struct AsyncIterator: AsyncIteratorProtocol {
            let error: any Error
            mutating func next() async throws -> ByteBuffer? { throw error }
        }
        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(error: error) }
    }

    /// What a request without a valid token (401) leaves in the trail: who tried what, and the
    /// size of what it sent, not the text. Anyone who can reach the port can send such requests,
    /// and each one used to add its whole query and 4 KiB of body (17 MiB in 4 s).
    /// `sent`: how many query parameters, and how many bytes of body (-1: over 1 MiB, unread).
    /// Its path is cut to `refusedPathLimit` bytes (a 60 KB path went into the trail twice).
    static func refusedUnauthenticated(_ r: AuditRecord, sent: (query: Int, body: Int)) -> AuditRecord {
        guard r.result?.status == 401 else { return r }
        var r = r
        if r.args != nil {
            let body = sent.body < 0 ? "more than 1 MiB" : "\(sent.body) bytes"
            r.args = ["not recorded": "\(sent.query) query parameters and \(body) of body from a request without a valid token"]
        }
        if let path = r.path, path.utf8.count > refusedPathLimit {
            let cut = String(decoding: path.utf8.prefix(refusedPathLimit), as: UTF8.self) + "… (\(path.utf8.count) bytes)"
            r.path = cut
            r.action = r.action.map { action in action.split(separator: " ", maxSplits: 1).first.map { "\($0) \(cut)" } ?? cut }
        }
        return r
    }

    /// A JSON body with its secrets' values left out: a submission's `notify` (a webhook URL
    /// may carry a token), and any key named like a credential.
    /// A body with nothing to leave out is recorded as it came.
    static func withoutSecrets(_ body: String) -> String {
        guard var object = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] else { return body }
        let secrets = object.keys.filter { $0 == "notify" || isCredential($0) }
        guard !secrets.isEmpty else { return body }
        for key in secrets { object[key] = redacted }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return body }
        return String(decoding: data, as: UTF8.self)
    }

    /// `record`: the action's record when no journal write of the action carried it (nil when
    /// one did); either way the trail's file is brought up to date.
    private func record(_ record: AuditRecord?, sent: (query: Int, body: Int)) async {
        var record = record.map { Self.refusedUnauthenticated($0, sent: sent) }
        if let r = record, r.result?.status == 401 {
            let now = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
            let (admit, before) = refusals.withLockedValue { $0.admit(now: now) }
            // Past the budget: nothing is recorded, and so nothing new to mirror either.
            guard admit else { return }
            if before > 0 {
                record?.args = (r.args ?? [:]).merging(["also refused": "\(before) requests without a valid token before this one, not recorded one by one"]) { $1 }
            }
        }
        // Off the pool: a synchronous, fully synced write and the mirror's file writes.
        do {
            try await journal.offPool { [trail, record] journal in
                if let record { try journal.appendAudit(record) }
                try trail?.mirror()
            }
        } catch {
            logger.error("audit: cannot record \(record?.action ?? "an action"): \(error)")
        }
    }
}
