import Hummingbird

/// A request that fails because the coordinator cannot write its journal (the disk under its
/// `--state` is full, or its quota spent: `JournalError.diskFull`) is answered 503 with that
/// reason and what to do, on every route: before, `barge submit` said only "coordinator answered
/// HTTP 500". Nothing of the request was recorded, so the same request can be sent again once
/// there is space.
struct StorageErrors<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            guard let detail = JournalError.diskFull(error) else { throw error }
            throw HTTPError(.serviceUnavailable, message: JournalError.unwritable(detail))
        }
    }
}
