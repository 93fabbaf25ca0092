import Foundation
import Hummingbird
import Logging

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

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method != .get, request.method != .head else { return try await next(request, context) }
        var request = request
        var draft = AuditRecord(kind: "action", actor: .init(name: "anonymous"))
        draft.from = context.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" }
        draft.action = "\(request.method) \(request.uri.path)"
        draft.path = request.uri.path
        var args: [String: String] = [:]
        for (k, v) in request.uri.queryParameters { args[String(k)] = String(v) }
        if let body = try? await request.collectBody(upTo: 1 << 20), body.readableBytes > 0 {
            args["body"] = body.readableBytes <= Self.bodyLimit ? String(buffer: body) : "(\(body.readableBytes) bytes)"
        }
        draft.args = args.isEmpty ? nil : args
        let audit = AuditContext(draft)
        let response: Response
        do {
            response = try await AuditContext.$current.withValue(audit) { try await next(request, context) }
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            record(audit.unrecorded(status: status, detail: (error as? HTTPError)?.body ?? "\(error)"))
            throw error
        }
        record(audit.unrecorded(status: response.status.code, detail: nil))
        return response
    }

    private func record(_ record: AuditRecord?) {
        do {
            if let record { try journal.appendAudit(record) }
            try trail?.mirror()
        } catch {
            logger.error("audit: cannot record \(record?.action ?? "an action"): \(error)")
        }
    }
}
