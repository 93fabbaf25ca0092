import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import Testing

/// The coordinator under many API reads at once keeps answering (h2 of session 52).
struct APILoadProcessTests {
    /// Reads of job lists (which read the journal on a Dispatch thread) and of single jobs
    /// (async) from 16 clients at once, with the journal down to one reader connection: the
    /// coordinator answers throughout and after. Before, GRDB's async read kept its reader until
    /// its task resumed on the cooperative pool, whose two threads were blocked in synchronous
    /// reads waiting for that reader: the coordinator, its agent listener included, answered
    /// nothing more until killed (500 requests a second over 20 connections, 4 of 4, with the
    /// usual five readers).
    @Test(.timeLimit(.minutes(2)))
    func concurrentReadsOfJobsNeverWedgeTheCoordinator() async throws {
        let cluster = try TestCluster(environment: ["BARGE_FAULT_JOURNAL_READERS": "1"])
        let (coordinator, _, http) = try await cluster.startCoordinator()
        defer { withExtendedLifetime(coordinator) {} }
        let token = try String(contentsOfFile: cluster.environment["BARGE_API_TOKEN_FILE"]!, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        /// The status of a GET (0: no answer within `timeout` seconds).
        @Sendable func get(_ path: String, timeout: Double = 5) -> Int {
            var request = URLRequest(url: URL(string: http + path)!, timeoutInterval: timeout)
            request.setValue("Bearer " + token, forHTTPHeaderField: "Authorization")
            let done = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var status = 0
            URLSession.shared.dataTask(with: request) { _, response, _ in
                status = (response as? HTTPURLResponse)?.statusCode ?? 0
                done.signal()
            }.resume()
            done.wait()
            return status
        }
        #expect(get("/v1/jobs?limit=1000") == 200)
        let until = Date().addingTimeInterval(6)
        let unanswered = Mutex(0), answered = Mutex(0)
        let clients = DispatchGroup()
        for i in 0..<16 {
            clients.enter()
            Thread.detachNewThread {
                defer { clients.leave() }
                while Date() < until {
                    let status = get(i % 2 == 0 ? "/v1/jobs?limit=1000" : "/v1/jobs/j-0000000000")
                    if status == 0 { unanswered.withLock { $0 += 1 } } else { answered.withLock { $0 += 1 } }
                }
            }
        }
        while clients.wait(timeout: .now()) == .timedOut { try await Task.sleep(for: .milliseconds(100)) }
        #expect(unanswered.withLock { $0 } == 0 && answered.withLock { $0 } > 100, "\(answered.withLock { $0 }) answered, \(unanswered.withLock { $0 }) not")
        // And after: the API and the health check still answer.
        #expect(get("/healthz") == 200 && get("/v1/jobs?limit=1000") == 200)
    }
}
