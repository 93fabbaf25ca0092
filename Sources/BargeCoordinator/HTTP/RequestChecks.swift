import Foundation
import Hummingbird
import NIOCore
import HTTPTypes

/// What every API request body and parameter goes through, so that the API answers as HTTP
/// clients and tools such as schemathesis expect:
/// - a body is read within `bodyTimeout` (408 past it) and up to `maxBody` bytes (413 past it);
/// - it must be a JSON object with no `null` member (an optional field is left out, not null);
///   anything else is 400 with the reason;
/// - path parameters are percent-decoded;
/// - a boolean query parameter is `true`, `false`, `1` or `0`.
enum RequestChecks {
    static let maxBody = 1 << 20
    static let bodyTimeout: Duration = .seconds(30)

    /// `keys`: the members the body may have (others are refused, as the API's schemas say
    /// `additionalProperties: false`); `nested`: the same for members that are objects.
    static func decode<T: Decodable>(_ type: T.Type, _ request: Request, shape: String, keys: Set<String>,
                                     nested: [String: Set<String>] = [:]) async throws -> T {
        let body = request.body
        let collected: ByteBuffer = try await withThrowingTaskGroup(of: ByteBuffer?.self) { group in
            group.addTask {
                do { return try await body.collect(upTo: maxBody) } catch is NIOTooManyBytesError {
                    throw HTTPError(.contentTooLarge, message: "the request body is over \(maxBody) bytes, the most the API reads")
                }
            }
            group.addTask {
                try await Task.sleep(for: bodyTimeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let buffer = first else {
                throw HTTPError(.requestTimeout, message: "the request body did not arrive within \(bodyTimeout)")
            }
            return buffer
        }
        let data = Data(collected.readableBytesView)
        guard !data.isEmpty else { throw HTTPError(.badRequest, message: "the body is empty; it must be \(shape)") }
        let object: Any
        // Fragments allowed: `null`, `3` or `"x"` are JSON, only not an object (they were
        // answered "not JSON").
        do { object = try JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed) } catch {
            throw HTTPError(.badRequest, message: "the body is not JSON; it must be \(shape)")
        }
        guard let members = object as? [String: Any] else { throw HTTPError(.badRequest, message: "the body must be a JSON object: \(shape)") }
        // JSONSerialization keeps one of a key given twice, silently: {"bwlimit":"1MiB/s","bwlimit":"off"}
        // was taken as one of them (a black-box review). Which one a client meant cannot be told.
        if let twice = duplicateKey(in: data) { throw HTTPError(.badRequest, message: "member '\(twice)' is given twice; give it once: \(shape)") }
        if let extra = members.keys.sorted().first(where: { !keys.contains($0) }) {
            throw HTTPError(.badRequest, message: "unknown member '\(extra)'; the body must be \(shape)")
        }
        for (key, allowed) in nested {
            if let inner = members[key] as? [String: Any], let extra = inner.keys.sorted().first(where: { !allowed.contains($0) }) {
                throw HTTPError(.badRequest, message: "unknown member '\(key).\(extra)'; the body must be \(shape)")
            }
        }
        if let path = nullMember(object) { throw HTTPError(.badRequest, message: "\(path) is null; leave it out instead") }
        do { return try JSONDecoder().decode(T.self, from: data) } catch let error as DecodingError {
            throw HTTPError(.badRequest, message: "the body must be \(shape): \(describe(error))")
        }
    }

    /// The first key given twice in one object of a JSON text that parsed, if any. A scan of its
    /// tokens: strings (each key decoded, so "a" and "\u0061" are one key), and the braces and
    /// brackets that open and close objects and arrays.
    static func duplicateKey(in data: Data) -> String? {
        let bytes = [UInt8](data)
        var scopes: [Set<String>?] = []  // nil: an array
        var i = 0
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "{"): scopes.append([])
            case UInt8(ascii: "["): scopes.append(nil)
            case UInt8(ascii: "}"), UInt8(ascii: "]"): if !scopes.isEmpty { scopes.removeLast() }
            case UInt8(ascii: "\""):
                var end = i + 1
                while end < bytes.count, bytes[end] != UInt8(ascii: "\"") { end += bytes[end] == UInt8(ascii: "\\") ? 2 : 1 }
                guard end < bytes.count else { return nil }
                // A key: the next byte past blanks is a colon, inside an object.
                var next = end + 1
                while next < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[next]) { next += 1 }
                if next < bytes.count, bytes[next] == UInt8(ascii: ":"), let last = scopes.last, var keys = last,
                   let decoded = (try? JSONSerialization.jsonObject(with: Data([UInt8(ascii: "[")] + bytes[i...end] + [UInt8(ascii: "]")])) as? [String])?.first {
                    if !keys.insert(decoded).inserted { return decoded }
                    scopes[scopes.count - 1] = keys
                }
                i = end
            default: break
            }
            i += 1
        }
        return nil
    }

    /// The path of the first `null` in a JSON value, if any.
    static func nullMember(_ value: Any, at path: String = "") -> String? {
        if value is NSNull { return path.isEmpty ? "the body" : path }
        if let o = value as? [String: Any] {
            for (k, v) in o.sorted(by: { $0.key < $1.key }) {
                if let p = nullMember(v, at: path.isEmpty ? k : path + "." + k) { return p }
            }
        }
        if let a = value as? [Any] {
            for (i, v) in a.enumerated() {
                if let p = nullMember(v, at: "\(path)[\(i)]") { return p }
            }
        }
        return nil
    }

    static func describe(_ error: DecodingError) -> String {
        func at(_ path: [CodingKey]) -> String { path.isEmpty ? "the body" : path.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .keyNotFound(let key, let c): return "\(at(c.codingPath + [key])) is missing"
        case .typeMismatch(let type, let c): return "\(at(c.codingPath)) must be \(type)"
        case .valueNotFound(let type, let c): return "\(at(c.codingPath)) must be \(type)"
        case .dataCorrupted(let c): return "\(at(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    /// A boolean query parameter: absent is `default`.
    static func flag(_ request: Request, _ name: String, default value: Bool = false) throws -> Bool {
        guard let raw = request.uri.queryParameters[Substring(name)] else { return value }
        switch String(raw) {
        case "true", "1": return true
        case "false", "0": return false
        default: throw HTTPError(.badRequest, message: "\(name) must be true or false, not '\(raw)'")
        }
    }
}

extension Parameters {
    /// A path parameter, percent-decoded (`dtn%20%C3%A9` is `dtn é`).
    func decoded(_ name: String) throws -> String {
        let raw = try require(name)
        return raw.removingPercentEncoding ?? raw
    }
}

/// 405 with `Allow` for a path the API has, asked with a method it does not take there (the
/// router alone would answer 404); and for a path it does not have, 404 with an error body that
/// says so, as every other error has (the router's had none).
struct MethodCheck<Context: RequestContext>: RouterMiddleware {
    /// "METHOD /path/{param}" of every route.
    let routes: @Sendable () -> [String]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && error.body == nil {
            let path = request.uri.path.split(separator: "/", omittingEmptySubsequences: false)
            // The routes that match the path; of those, the most literal (as the router picks
            // `/v1/jobs/prune` over `/v1/jobs/{id}`).
            var matches: [(method: String, literal: Int)] = []
            for route in routes() {
                let parts = route.split(separator: " ", maxSplits: 1)
                guard parts.count == 2 else { continue }
                let pattern = parts[1].split(separator: "/", omittingEmptySubsequences: false)
                guard pattern.count == path.count else { continue }
                if zip(pattern, path).allSatisfy({ p, s in (p.hasPrefix("{") && p.hasSuffix("}") && !s.isEmpty) || p == s }) {
                    matches.append((String(parts[0]), pattern.filter { !$0.hasPrefix("{") }.count))
                }
            }
            let most = matches.map(\.literal).max() ?? 0
            var allowed = Array(Set(matches.filter { $0.literal == most }.map(\.method)))
            if allowed.contains("GET") { allowed.append("HEAD") }  // the router's own, for each GET
            if allowed.isEmpty {
                throw HTTPError(.notFound, message: "the API has no \(request.uri.path) (docs/openapi.yaml lists what it has)")
            }
            guard !allowed.contains(request.method.rawValue) else { throw error }
            throw HTTPError(.methodNotAllowed, headers: [.allow: allowed.sorted().joined(separator: ", ")],
                            message: "\(request.method.rawValue) is not allowed on \(request.uri.path); use \(allowed.sorted().joined(separator: " or "))")
        }
    }
}
