import Foundation
import Hummingbird
import Logging
import NIOCore

/// The HTTP API's request context: who is asking (set by `APIAuthentication`) and from where.
public struct APIRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var identity: APIIdentity?
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// The request's identity if its role is at least `role`; else 403 (401 without one, which
    /// `APIAuthentication` has already answered).
    func require(_ role: APIRole) throws -> APIIdentity {
        guard let identity else { throw APIAuthentication.unauthorized("an API token is required") }
        guard identity.role >= role else {
            throw HTTPError(.forbidden, message: "token '\(identity.name)' has role \(identity.role.rawValue); this needs \(role.rawValue)")
        }
        return identity
    }
}

/// Every request but `GET /healthz` carries `Authorization: Bearer TOKEN` of a token the
/// coordinator knows, or is answered 401 before any handler runs. Which role each endpoint
/// needs is the router's (`APIRoutes`).
public struct APIAuthentication: RouterMiddleware {
    public typealias Context = APIRequestContext
    public static let healthPath = "/healthz"

    let tokens: APITokens
    /// Counts each refusal as an authentication error.
    let metrics: CoordinatorMetrics?

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == Self.healthPath || request.uri.path.hasPrefix("/dashboard/") { return try await next(request, context) }
        do {
            return try await authenticated(request, context: context, next: next)
        } catch let error as HTTPError where error.status == .unauthorized {
            metrics?.error(.authentication)
            throw error
        }
    }

    private func authenticated(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let given: String
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw Self.unauthorized("the Authorization header must be 'Bearer TOKEN'")
            }
            given = parts[1].trimmingCharacters(in: .whitespaces)
        } else if request.uri.path == "/", let token = request.uri.queryParameters["token"] {
            given = String(token)  // the dashboard's sign-in
        } else if let token = Self.cookieToken(request) {
            given = token
        } else {
            throw Self.unauthorized("an API token is required: send 'Authorization: Bearer TOKEN' (barge: --api-token-file or BARGE_API_TOKEN_FILE; a browser: open /?token=TOKEN)")
        }
        guard let identity = tokens.identify(given) else {
            throw Self.unauthorized("the API token is not valid (unknown or revoked)")
        }
        var context = context
        context.identity = identity
        AuditContext.current?.identify(identity)
        return try await next(request, context)
    }

    /// The secret a request presents (its bearer token, else the dashboard's cookie), for a
    /// long response that checks it again as it goes; nil for none.
    static func presentedSecret(_ request: Request) -> String? {
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            return parts.count == 2 ? parts[1].trimmingCharacters(in: .whitespaces) : nil
        }
        return cookieToken(request)
    }

    /// The dashboard's cookie, if the request has one.
    static func cookieToken(_ request: Request) -> String? {
        for field in request.headers[values: .cookie] {
            for pair in field.split(separator: ";") {
                let kv = pair.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
                if kv.count == 2, kv[0] == Dashboard.cookie { return String(kv[1]) }
            }
        }
        return nil
    }

    static func unauthorized(_ message: String) -> HTTPError {
        HTTPError(.unauthorized, headers: [.wwwAuthenticate: "Bearer realm=\"barge\""], message: message)
    }
}

/// The API's routes with the role each needs, added through `route`: a route cannot be added
/// without saying who may call it.
public final class APIRoutes: @unchecked Sendable {
    /// HEAD is answered as GET is, without the body (RFC 9110 9.3.2): a load balancer's
    /// `HEAD /healthz` was refused 405.
    public let router = Router(context: APIRequestContext.self, options: .autoGenerateHeadEndpoints)
    /// "METHOD /path" → the least role that may call it (for the access tests and the docs).
    public private(set) var roles: [String: APIRole] = [:]
    /// "METHOD /path" of every route, for the 405 check.
    private let known: RouteNames

    init(tokens: APITokens, audit: AuditTrail?, metrics: CoordinatorMetrics? = nil, logger: Logger) {
        if let audit { router.add(middleware: AuditMiddleware(journal: audit.journal, trail: audit, logger: logger)) }
        router.add(middleware: APIAuthentication(tokens: tokens, metrics: metrics))
        router.add(middleware: StorageErrors())
        let known = RouteNames()
        self.known = known
        router.add(middleware: MethodCheck(routes: { known.all }))
    }

    func route(_ method: HTTPRequest.Method, _ path: RouterPath, _ role: APIRole,
               _ handler: @escaping @Sendable (Request, APIRequestContext) async throws -> some ResponseGenerator) {
        let name = "\(method) \(path)"
        roles[name] = role
        known.add("\(method.rawValue) /" + "\(path)".drop { $0 == "/" })
        router.on(path, method: method) { request, context in
            if let audit = AuditContext.current {
                var parameters: [String: String] = [:]
                for (k, v) in context.parameters { parameters[String(k)] = String(v) }
                audit.matched("\(method) /" + "\(path)".drop { $0 == "/" }, parameters: parameters)
            }
            _ = try context.require(role)
            return try await handler(request, context)
        }
    }

    /// A route anyone may call, token or not (the health check).
    func open(_ method: HTTPRequest.Method, _ path: RouterPath,
              _ handler: @escaping @Sendable (Request, APIRequestContext) async throws -> some ResponseGenerator) {
        known.add("\(method.rawValue) /" + "\(path)".drop { $0 == "/" })
        router.on(path, method: method, use: handler)
    }
}

/// The routes' "METHOD /path" names, filled as routes are added and read by `MethodCheck`.
final class RouteNames: @unchecked Sendable {
    private let lock = NSLock()
    private var names: [String] = []
    func add(_ name: String) { lock.withLock { names.append(name) } }
    var all: [String] { lock.withLock { names } }
}
