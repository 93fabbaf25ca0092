import BargeCoordinator
import BargeWire
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// The HTTP API answers as HTTP clients and tools expect: 409 for a state that forbids the
/// request, 413 for a body too large, 405 with `Allow` for a method a path does not take, 400 for
/// a null field, a bad boolean or an unknown codec, and percent-decoded path parameters.
struct APIConformanceTests {
    typealias Fixture = RouterTests.Fixture

    func post(_ f: Fixture, _ uri: String, _ body: String, status: HTTPResponse.Status, contains words: String? = nil) async throws {
        var fields = f.admin
        fields[.contentType] = "application/json"
        let headers = fields
        try await f.app.test(.router) { client in
            try await client.execute(uri: uri, method: .post, headers: headers,
                                     body: ByteBuffer(string: body)) { response in
                let text = String(buffer: response.body)
                #expect(response.status == status, "\(uri) \(body.prefix(80)): \(response.status) \(text)")
                if let words { #expect(text.contains(words), "\(text)") }
            }
        }
    }

    @Test func statusCodesFollowHTTP() async throws {
        let f = try Fixture()
        _ = try await f.directory.register(Register(name: "a1", site: "a", root: "/d", dataHost: "127.0.0.1", dataPort: 7501, maxInFlight: 8))
        var done = JobRecord(id: "j-1", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 1)
        done.state = .succeeded
        try f.journal.insert(done)

        // The state forbids it: 409.
        try await post(f, "/v1/jobs/j-1/limit", #"{"bwlimit":"10MiB/s"}"#, status: .conflict, contains: "succeeded")
        try await post(f, "/v1/jobs/j-1/cancel", "{}", status: .conflict)
        // Malformed bodies: 400 with the reason; too large: 413.
        let submit = #"{"source":{"site":"a","path":"x"},"destination":{"site":"a","path":"y"}"#
        try await post(f, "/v1/jobs", submit + #","codec":"bogus"}"#, status: .badRequest, contains: "codec")
        try await post(f, "/v1/jobs", submit + #","codec":null}"#, status: .badRequest, contains: "codec is null")
        try await post(f, "/v1/jobs", submit + #","checksum":"yes"}"#, status: .badRequest, contains: "checksum")
        try await post(f, "/v1/jobs", "[1,2]", status: .badRequest, contains: "JSON object")
        try await post(f, "/v1/jobs", "{", status: .badRequest, contains: "not JSON")
        try await post(f, "/v1/jobs", #"{"pad":""# + String(repeating: "x", count: 2 << 20) + #""}"#, status: .contentTooLarge)
        try await post(f, "/v1/jobs/j-1/verify?repair=null", "", status: .badRequest, contains: "repair must be true or false")

        try await f.app.test(.router) { client in
            // A path the API has, with a method it does not take there: 405 and Allow.
            try await client.execute(uri: "/v1/jobs/j-1", method: .delete, headers: f.admin) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "GET, HEAD", "\(response.status) \(response.headers)")
            }
            try await client.execute(uri: "/v1/jobs", method: .put, headers: f.admin) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "GET, HEAD, POST", "\(response.headers)")
            }
            // HEAD is answered as GET, without the body: the health check (no token), and a
            // job (its token checked as for GET); on a path with no GET, 405.
            try await client.execute(uri: "/healthz", method: .head) { response in
                #expect(response.status == .ok && response.body.readableBytes == 0 && response.headers[.contentType]?.hasPrefix("application/json") == true,
                        "\(response.status) \(response.headers)")
            }
            try await client.execute(uri: "/v1/jobs/j-1", method: .head, headers: f.admin) { response in
                #expect(response.status == .ok && response.body.readableBytes == 0, "\(response.status)")
            }
            try await client.execute(uri: "/v1/jobs/j-1", method: .head) { response in
                #expect(response.status == .unauthorized, "\(response.status)")
            }
            try await client.execute(uri: "/v1/jobs/j-1/cancel", method: .head, headers: f.admin) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "POST", "\(response.status) \(response.headers)")
            }
            // A path it does not have is still 404, with an error body that says so.
            try await client.execute(uri: "/v1/nothing", method: .get, headers: f.admin) { response in
                #expect(response.status == .notFound && String(buffer: response.body).contains("the API has no") && String(buffer: response.body).contains("nothing"), "\(String(buffer: response.body))")
            }
        }
    }

    @Test func pathParametersArePercentDecoded() async throws {
        let f = try Fixture()
        _ = try await f.directory.register(Register(name: "dtn é", site: "a", root: "/d", dataHost: "127.0.0.1", dataPort: 7501, maxInFlight: 8))
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/agents/dtn%20%C3%A9/drain", method: .post, headers: f.admin) { response in
                // Known by its decoded name: not 404 (it is not connected to a scheduler here, hence 409).
                #expect(response.status != .notFound, "\(response.status) \(String(buffer: response.body))")
            }
            try await client.execute(uri: "/v1/jobs/j%2Dnope", method: .get, headers: f.admin) { response in
                #expect(response.status == .notFound && String(buffer: response.body).contains("j-nope"), "\(String(buffer: response.body))")
            }
        }
    }
}
