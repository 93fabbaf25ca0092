import Foundation
import GRDB
import Hummingbird

/// A request that fails because the coordinator cannot write its journal (the disk under its
/// `--state` is full, or its quota spent) is answered 503 with that reason and what to do, on
/// every route: before, `barge submit` said only "coordinator answered HTTP 500". Nothing of the
/// request was recorded, so the same request can be sent again once there is space.
struct StorageErrors<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as DatabaseError where Self.isFull(error) {
            throw HTTPError(.serviceUnavailable, message: Self.message("\(error.message ?? "\(error.resultCode)")"))
        } catch let error as JournalError {
            guard case .manifests(let what, let e) = error, e == ENOSPC || e == EDQUOT else { throw error }
            throw HTTPError(.serviceUnavailable, message: Self.message(what))
        }
    }

    static func isFull(_ error: DatabaseError) -> Bool {
        error.resultCode == .SQLITE_FULL
    }

    static func message(_ detail: String) -> String {
        "the coordinator cannot write its journal: the disk where its --state lies is full (\(detail)); nothing of this request was recorded: free space there, then send it again"
    }
}
