import BargeCoordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// The dashboard's event stream (`GET /v1/events`) ends once the token it was opened with is
/// revoked, with an event that says so. Before, requests with that token got 401 at once, but a
/// stream (an open dashboard tab) went on sending snapshots for ever (a black-box review, h3).
struct DashboardEventsTests {
    @Test(.timeLimit(.minutes(1))) func aRevokedTokensEventStreamEnds() async throws {
        let f = try AuditTests.Fixture()
        let secret = try f.tokens.create(name: "tab", role: .viewer)
        try await f.app.test(.live) { client in
            let revoke = Task {
                try await Task.sleep(for: .milliseconds(1_500))
                try f.tokens.revoke(name: "tab")
            }
            let started = ContinuousClock.now
            try await client.execute(uri: "/v1/events", method: .get, headers: [.authorization: "Bearer " + secret]) { response in
                #expect(response.status == .ok)
                let text = String(buffer: response.body)
                #expect(text.contains("event: snapshot") && text.hasSuffix("event: revoked\ndata: {\"error\":\"the API token is not valid (unknown or revoked)\"}\n\n"),
                        "\(text.suffix(300))")
            }
            #expect(ContinuousClock.now - started < .seconds(10))
            try await revoke.value
            try await client.execute(uri: "/v1/events?once=1", method: .get, headers: [.authorization: "Bearer " + secret]) { #expect($0.status == .unauthorized) }
        }
    }
}
