import Foundation
import Testing

/// Every connection is encrypted: a capture of loopback during a transfer holds none of the data,
/// while the same transfer in clear (`--insecure-plaintext`) shows it; and a ciphertext bit
/// changed on the way is refused and its chunk sent again.
@Suite(.serialized)
struct EncryptionProcessTests {
    static let tcpdump = ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let canCapture: Bool = {
        guard geteuid() == 0, tcpdump != nil else {
            print("EncryptionProcessTests: the capture test needs root and tcpdump; skipped (\(geteuid() == 0 ? "no tcpdump" : "not root"))")
            return false
        }
        return true
    }()

    /// Moves a file full of a marker (stored raw: `--codec none`) while tcpdump records `lo`;
    /// returns whether the capture holds the marker.
    func captureHoldsTheMarker(plaintext: Bool) async throws -> Bool {
        let cluster = try TestCluster(roots: ["root-a", "root-b"])
        let marker = "BARGE-SECRET-\(UInt32.random(in: 0...UInt32.max))-"
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        // Random bytes (so that no chunk repeats and dedup sends them all) with the marker every 4 KiB.
        var content = Data()
        var rng = SystemRandomNumberGenerator()
        while content.count < 2 << 20 {
            content.append(Data(marker.utf8))
            content.append(Data((0..<4000).map { _ in UInt8.random(in: 0...255, using: &rng) }))
        }
        try content.write(to: source.appendingPathComponent("secret.txt"))
        let flag = plaintext ? ["--insecure-plaintext"] : []
        let (coordinator, agents, http) = try await cluster.startCoordinator(extra: flag)
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents, arguments: flag)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents, arguments: flag)
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http))

        let pcap = cluster.dir.url.appendingPathComponent("lo.pcap")
        let log = cluster.dir.url.appendingPathComponent("tcpdump.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let capture = Process()
        // Through python3, which unblocks SIGTERM first: a child spawned from the test runner's
        // threads inherits their blocked signals, and tcpdump would then never stop cleanly (it
        // prints its drop count, and flushes, only on a signal).
        capture.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        capture.arguments = ["python3", "-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, set()); "
                             + "signal.signal(signal.SIGTERM, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])",
                             // A 64 MiB buffer, so that the kernel drops nothing while two cores are busy moving data.
                             Self.tcpdump!, "-i", "lo", "-U", "--immediate-mode", "-s", "0", "-B", "65536", "-w", pcap.path]
        capture.standardError = try FileHandle(forWritingTo: log)
        capture.standardOutput = FileHandle.nullDevice
        try capture.run()
        defer { if capture.isRunning { capture.terminate() } }
        let listening = try await cluster.eventually(60) { ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains("listening on") }
        try #require(listening, "tcpdump did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
        let r = try cluster.cli(["submit", "a:ds", "b:copy", "--codec", "none", "--wait"], http: http)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        try await Task.sleep(for: .seconds(1))
        capture.terminate()  // SIGTERM: tcpdump flushes its file and exits
        if !(try await cluster.eventually(10) { !capture.isRunning }) { kill(capture.processIdentifier, SIGKILL) }
        let bytes = try Data(contentsOf: pcap)
        // A capture that missed packets proves nothing either way.
        let stats = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        let lines = stats.split(separator: "\n")
        #expect(lines.contains("0 packets dropped by kernel"), "tcpdump: \(stats)")
        #expect(bytes.count > 2 << 20, "the capture saw too little: \(bytes.count) bytes; tcpdump: \(stats)")
        #expect(try Data(contentsOf: cluster.dir.url.appendingPathComponent("root-b/copy/secret.txt")) == Data(contentsOf: source.appendingPathComponent("secret.txt")))
        return bytes.range(of: Data(marker.utf8)) != nil
    }

    @Test(.enabled(if: EncryptionProcessTests.canCapture, "needs root and tcpdump"))
    func aCaptureOfATransferHoldsNoneOfItsData() async throws {
        #expect(try await captureHoldsTheMarker(plaintext: true), "in clear, the capture should show the data (else this test proves nothing)")
        #expect(try await !captureHoldsTheMarker(plaintext: false), "the encrypted transfer's data is in the capture")
    }

    /// The first two sealed chunks the source sends get a bit flipped on the way: each is
    /// refused (the connection ends), its unit runs again, and the tree still arrives identical.
    @Test func aFlippedCiphertextBitIsRefusedAndTheChunkSentAgain() async throws {
        let cluster = try TestCluster(roots: ["root-a", "root-b"])
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        try TreeSupport.makeEdgeCaseTree(at: source, smallFiles: 20)
        let (coordinator, agents, http) = try await cluster.startCoordinator(extra: ["--unit-size", "2MiB"])
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents, environment: ["BARGE_FAULT_FLIP_SEALED": "2"])
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http))
        let r = try cluster.cli(["submit", "a:ds", "b:copy", "--wait", "--json"], http: http)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)\n\(b1.output.suffix(3000))")
        let destination = cluster.dir.url.appendingPathComponent("root-b/copy")
        #expect(try TreeSupport.snapshot(destination) == TreeSupport.snapshot(source))
        #expect(TreeSupport.partials(destination).isEmpty)
        // The receiver refused them and says so (once per connection: a second flipped frame
        // on a connection already refused is never opened); the units went again.
        let refusals = b1.output.components(separatedBy: "sealed chunk data frame rejected").count - 1
        #expect((1...2).contains(refusals), "refusals logged by b1: \(refusals)\n\(b1.output.suffix(3000))")
        // Damage on the wire is the path's: the attempts are given back, not counted.
        #expect(coordinator.output.contains("failed on a1 (its data plane failed, not counted as an attempt)"), "\(coordinator.output.suffix(2000))")
    }
}
