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

    /// A fixture with agent a1 of site a up and job j-1 (a:ds → b:ds) in `state`.
    func fixture(withJobIn state: JobState) async throws -> Fixture {
        let f = try Fixture()
        _ = try await f.directory.register(Register(name: "a1", site: "a", root: "/d", dataHost: "127.0.0.1", dataPort: 7501, maxInFlight: 8))
        var job = JobRecord(id: "j-1", sourceSite: "a", sourcePath: "ds", destinationSite: "b", destinationPath: "ds", createdAt: 1)
        job.state = state
        try f.journal.insert(job)
        return f
    }

    @Test func statusCodesFollowHTTP() async throws {
        let f = try await fixture(withJobIn: .succeeded)

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
        // JSON that is not an object is told so (`null` was "not JSON"), and no body is told that.
        try await post(f, "/v1/jobs", "null", status: .badRequest, contains: "must be a JSON object")
        try await post(f, "/v1/jobs", "3", status: .badRequest, contains: "must be a JSON object")
        try await post(f, "/v1/jobs", "", status: .badRequest, contains: "the body is empty")
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

    /// Values at the edges of their types, from an API caller, are a 400 that says why. Each
    /// took a process down before: an age of 15,250,284,452,472 weeks overflowed (the
    /// coordinator), a cap of 0.00001 B/s overflowed every source agent's wait, and a listing's
    /// path over 64 KiB trapped the coordinator encoding it (over 4 KiB, it ended the agent's
    /// connection).
    @Test func valuesAtTheEdgesOfTheirTypesAreRefusedInWords() async throws {
        let f = try await fixture(withJobIn: .running)
        let submit = #"{"source":{"site":"a","path":"x"},"destination":{"site":"b","path":"y"}"#
        try await post(f, "/v1/jobs", submit + #","tier":"cold:age>15250284452472w"}"#, status: .badRequest, contains: "not an age")
        try await post(f, "/v1/tiers/demote", #"{"site":"b","path":"y","policy":"cold:age<9223372036854775807m"}"#, status: .badRequest, contains: "not an age")
        try await post(f, "/v1/jobs", submit + #","bwlimit":"0.00001B/s"}"#, status: .badRequest, contains: "is under 1 B")
        try await post(f, "/v1/jobs/j-1/limit", #"{"bwlimit":"0.5B/s"}"#, status: .badRequest, contains: "is under 1 B")
        try await f.app.test(.router) { client in
            for (query, words) in [("path=" + String(repeating: "d/", count: 2_100), "bytes long"), ("path=" + String(repeating: "x", count: 70_000), "bytes long"),
                                   ("path=../etc", "outside"), ("after=" + String(repeating: "9", count: 5_000), "after must be")] {
                try await client.execute(uri: "/v1/sites/a/files?" + query, method: .get, headers: f.admin) { response in
                    let text = String(buffer: response.body)
                    #expect(response.status == .badRequest && text.contains(words), "\(query.prefix(20)): \(response.status) \(text.prefix(200))")
                }
            }
        }
    }

    @Test func pathParametersArePercentDecoded() async throws {
        let f = try Fixture()
        _ = try await f.directory.register(Register(name: "dtn+é", site: "a", root: "/d", dataHost: "127.0.0.1", dataPort: 7501, maxInFlight: 8))
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/agents/dtn%2B%C3%A9/drain", method: .post, headers: f.admin) { response in
                // Known by its decoded name: not 404 (it is not connected to a scheduler here, hence 409).
                #expect(response.status != .notFound, "\(response.status) \(String(buffer: response.body))")
            }
            try await client.execute(uri: "/v1/jobs/j%2Dnope", method: .get, headers: f.admin) { response in
                #expect(response.status == .notFound && String(buffer: response.body).contains("j-nope"), "\(String(buffer: response.body))")
            }
        }
    }
}
