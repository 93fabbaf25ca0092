import Foundation
import GRDB
import Synchronization

/// The control action a request is carrying out, for the journal write that makes it take
/// effect: that write appends the action's audit record in its own transaction, so the record
/// exists if and only if the action took effect. A request whose action changed nothing
/// journaled (refused, failed, or in memory only, as a drain) is recorded after it answers.
public final class AuditContext: Sendable {
    @TaskLocal public static var current: AuditContext?

    private struct State {
        var draft: AuditRecord
        /// 0: not recorded; 1: recorded in a transaction not yet committed; 2: committed.
        var recorded = 0
    }

    private let state: Mutex<State>

    init(_ draft: AuditRecord) { state = Mutex(State(draft: draft)) }

    /// A context for an action taken outside a request (a tool, the coordinator's own), bound
    /// with `AuditContext.$current.withValue`.
    public static func recording(_ draft: AuditRecord) -> AuditContext { AuditContext(draft) }

    /// Who is asking, once the token is known.
    func identify(_ identity: APIIdentity) {
        state.withLock { $0.draft.actor = .init(name: identity.name, role: identity.role.rawValue) }
    }

    /// The route that matched, and its path parameters.
    func matched(_ route: String, parameters: [String: String]) {
        state.withLock { s in
            s.draft.action = route
            for (k, v) in parameters { s.draft.args = (s.draft.args ?? [:]).merging([k: v]) { $1 } }
            if let job = parameters["id"] { s.draft.job = job }
        }
    }

    /// Records the action in `db`'s transaction, once (later writes of the same request, or of
    /// tasks it started, add nothing).
    func record(effect: String, job: String?, _ db: Database) throws {
        let draft: AuditRecord? = state.withLock { s in
            guard s.recorded == 0 else { return nil }
            s.recorded = 1
            return s.draft
        }
        guard var r = draft else { return }
        r.job = job ?? r.job
        r.result = .init(outcome: "done", detail: effect)
        try Journal.appendAudit(r, db)
    }

    func committed() { state.withLock { if $0.recorded == 1 { $0.recorded = 2 } } }
    func rolledBack() { state.withLock { if $0.recorded == 1 { $0.recorded = 0 } } }

    /// The record of an action that no journal write carried (nil once one did).
    func unrecorded(status: Int, detail: String?) -> AuditRecord? {
        state.withLock { s in
            guard s.recorded == 0 else { return nil }
            var r = s.draft
            r.result = .init(outcome: (200..<300).contains(status) ? "done" : status < 500 ? "refused" : "failed", status: status, detail: detail)
            return r
        }
    }
}

extension Journal {
    /// A write that carries out the current request's action, if any: its audit record goes in
    /// the same transaction.
    /// `then` runs after the record, in the same transaction (a job's outcome, which the action caused).
    func auditedWrite<T>(effect: @escaping (T) -> (String, job: String?)?, _ body: @escaping (Database) throws -> T,
                         then: @escaping (T, Database) throws -> Void = { _, _ in }) throws -> T {
        let audit = AuditContext.current
        do {
            let value = try pool.write { db -> T in
                let value = try body(db)
                if let audit, let (text, job) = effect(value) { try audit.record(effect: text, job: job, db) }
                try then(value, db)
                return value
            }
            audit?.committed()
            return value
        } catch {
            audit?.rolledBack()
            throw error
        }
    }
}
