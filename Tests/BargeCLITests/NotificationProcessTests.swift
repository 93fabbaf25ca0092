import Foundation
import Testing

/// Web hooks through real processes: a local HTTP receiver (python3's http.server) is told of a
/// job's events as signed CloudEvents, both at the coordinator's `--notify` URL and at the job's
/// own; it refuses the first delivery, which comes again; and an event whose receiver was down
/// when the coordinator was killed is delivered after the restart.
@Suite(.serialized)
struct NotificationProcessTests {
    static let receiver = #"""
    import hashlib, hmac, json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    secret, log, refuse = open(sys.argv[1], 'rb').read(), sys.argv[2], int(sys.argv[3])
    seen = {'n': 0}
    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers['Content-Length']))
            seen['n'] += 1
            if seen['n'] <= refuse:
                self.send_response(503); self.end_headers(); return
            good = 'sha256=' + hmac.new(secret, body, hashlib.sha256).hexdigest()
            event = json.loads(body)
            with open(log, 'a') as f:
                f.write(json.dumps({'path': self.path, 'type': event['type'], 'subject': event['subject'], 'specversion': event['specversion'],
                                    'content_type': self.headers['Content-Type'], 'signed': self.headers.get('X-Barge-Signature') == good,
                                    'state': event['data']['state']}) + '\n')
            self.send_response(204); self.end_headers()
        def log_message(self, *a): pass
    server = HTTPServer(('127.0.0.1', int(sys.argv[4]) if len(sys.argv) > 4 else 0), H)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """#

    final class Receiver {
        let process = Process()
        let port: Int
        convenience init(dir: URL, secret: URL, log: URL, refuse: Int, port wanted: Int? = nil) throws {
            try self.init(dir: dir, script: NotificationProcessTests.receiver,
                          arguments: [secret.path, log.path, String(refuse)] + (wanted.map { [String($0)] } ?? []))
        }

        /// Runs `script` (python3), which prints the port it listens on as its first line.
        init(dir: URL, script text: String, arguments: [String] = []) throws {
            let script = dir.appendingPathComponent("receiver-\(UUID().uuidString).py")
            try Data(text.utf8).write(to: script)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [script.path] + arguments
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            var line = Data()
            while let byte = try out.fileHandleForReading.read(upToCount: 1), !byte.isEmpty, byte != Data("\n".utf8) { line += byte }
            port = Int(String(decoding: line, as: UTF8.self)) ?? 0
        }
        /// SIGKILL, not `terminate()`: a child of the test process may inherit SIGTERM ignored.
        func stop() {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        deinit { stop() }
    }

    /// SIGTERM while a delivery waits on a receiver that accepts and never answers: the stop is
    /// prompt (before, it waited out the delivery's 10 s timeout), the cancelled delivery counts
    /// no failed attempt, and it comes after the restart to a receiver that answers.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "python3 is missing"))
    func aDeliveryUnderWayDoesNotHoldAStopAndComesAfterTheRestart() async throws {
        let cluster = try TestCluster()
        try TreeSupport.makeEdgeCaseTree(at: cluster.dir.url.appendingPathComponent("root-a/ds"), smallFiles: 2)
        // A receiver that accepts every connection and never answers.
        let silent = try Receiver(dir: cluster.dir.url, script: """
            import socket
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 0)); s.listen(16)
            print(s.getsockname()[1], flush=True)
            held = []
            while True: held.append(s.accept())
            """)
        let port = silent.port
        try #require(port > 0)
        let hook = "http://127.0.0.1:\(port)/all"
        var (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--notify", hook])
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http))
        let sent = try cluster.cli(["submit", "a:ds", "b:ds", "--wait"], http: http)
        #expect(sent.status == 0, "\(sent.stderr)")
        // The deliveries go out within a second or two, and hang.
        try await Task.sleep(for: .seconds(3))
        let asked = Date()
        coordinator.kill(SIGTERM)
        #expect(try await cluster.eventually(15) { !coordinator.process.isRunning })
        let took = Date().timeIntervalSince(asked)
        coordinator.process.waitUntilExit()
        #expect(took < 3 && coordinator.process.terminationStatus == 0, "stopped after \(took) s: \(coordinator.output)")
        #expect(!coordinator.output.contains("failed ("), "a cancelled delivery counted as a failed attempt: \(coordinator.output)")

        // The receiver answers now, on the same port: the events are delivered after the restart.
        silent.stop()
        let secret = cluster.dir.url.appendingPathComponent("unused.secret")
        try Data("unused".utf8).write(to: secret)
        let log = cluster.dir.url.appendingPathComponent("received.jsonl")
        let receiver = try Receiver(dir: cluster.dir.url, secret: secret, log: log, refuse: 0, port: port)
        try #require(receiver.port == port)
        (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--notify", hook], log: "coordinator-2.log")
        defer { withExtendedLifetime(coordinator) {} }
        let delivered = try await cluster.eventually(40) {
            Set(events(log).map { $0["type"] as? String ?? "" }).isSuperset(of: ["io.barge.job.started", "io.barge.job.succeeded"])
        }
        #expect(delivered, "\(events(log))\n\(coordinator.output)")
        withExtendedLifetime(receiver) {}
    }

    func events(_ log: URL) -> [[String: Any]] {
        guard let text = try? String(contentsOf: log, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "python3 is missing"))
    func jobEventsAreSignedRetriedAndSurviveARestart() async throws {
        let cluster = try TestCluster()
        try TreeSupport.makeEdgeCaseTree(at: cluster.dir.url.appendingPathComponent("root-a/ds"), smallFiles: 5)
        let secret = cluster.dir.url.appendingPathComponent("hook.secret")
        try Data("a-hook-secret-of-some-length".utf8).write(to: secret)
        let log = cluster.dir.url.appendingPathComponent("received.jsonl")
        // It refuses the first delivery: that one must come again.
        let receiver = try Receiver(dir: cluster.dir.url, secret: secret, log: log, refuse: 1)
        try #require(receiver.port > 0)
        let hook = "http://127.0.0.1:\(receiver.port)"
        var (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--notify", hook + "/all", "--notify-secret-file", secret.path])
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http))

        let bad = try cluster.cli(["submit", "a:ds", "b:ds", "--notify", "ftp://x"], http: http)
        #expect(bad.status == 64 && bad.stderr.contains("--notify"), "\(bad.stderr)")
        let sent = try cluster.cli(["submit", "a:ds", "b:ds", "--notify", hook + "/job", "--wait", "--json"], http: http)
        let job = try #require((try JSONSerialization.jsonObject(with: Data(sent.stdout.utf8)) as? [String: Any])?["id"] as? String, "\(sent.stderr)")
        let arrived = try await cluster.eventually(30) {
            Set(events(log).map { "\($0["path"]!) \($0["type"]!)" }).isSuperset(of: [
                "/all io.barge.job.started", "/all io.barge.job.succeeded", "/job io.barge.job.started", "/job io.barge.job.succeeded"])
        }
        #expect(arrived, "\(events(log))\n\(coordinator.output)")
        for e in events(log) {
            #expect(e["subject"] as? String == job && e["specversion"] as? String == "1.0" && e["signed"] as? Bool == true, "\(e)")
            #expect((e["content_type"] as? String ?? "").hasPrefix("application/cloudevents+json"))
        }
        #expect(coordinator.output.contains("failed (HTTP 503)"), "the refused delivery was not retried: \(coordinator.output)")

        // A verification while the receiver is down, then the coordinator is killed: the event
        // waits in the journal and is delivered once both are back.
        receiver.stop()
        let verified = try cluster.cli(["verify", job], http: http)
        #expect(verified.status == 0, "\(verified.stdout)\(verified.stderr)")
        try await Task.sleep(for: .milliseconds(500))
        coordinator.kill(SIGKILL)
        coordinator.process.waitUntilExit()
        (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--notify", hook + "/all", "--notify-secret-file", secret.path],
                                                                        log: "coordinator-2.log")
        defer { withExtendedLifetime(coordinator) {} }
        // The receiver is back, on the same port: the journalled deliveries of the verification's
        // event reach both URLs.
        let again = try Receiver(dir: cluster.dir.url, secret: secret, log: log, refuse: 0, port: receiver.port)
        try #require(again.port == receiver.port)
        let delivered = try await cluster.eventually(40) {
            Set(events(log).filter { $0["type"] as? String == "io.barge.job.verified" }.map { $0["path"] as? String ?? "" }) == ["/all", "/job"]
        }
        #expect(delivered, "\(events(log))\n\(coordinator.output)")
        withExtendedLifetime(again) {}
    }
}
