import BargeBench
import Foundation
import Testing

/// Bytes damaged on the network between two agents: a proxy on the destination's advertised
/// address flips one bit in each of the first few connections' source-to-destination bytes, past
/// the handshake (inside sealed chunk frames). Each damaged frame is refused and its connection
/// closed; the unit is tried again, given back as a path failure, and the job succeeds whole.
/// Before, each such refusal counted against the unit, and the third flipped bit failed the job
/// ("unit 0 failed 3 times; … sealed chunk data frame rejected").
struct WireDamageProcessTests {
    /// A TCP proxy (python3, as it is on every machine the scripts set up): 127.0.0.1:PORT to
    /// 127.0.0.2:PORT, flipping bit 4 of byte `at` of the first `flips` connections that carry
    /// that many bytes toward the destination; prints "flipped" for each.
    static let proxy = """
        import os, signal, socket, sys, threading
        signal.pthread_sigmask(signal.SIG_SETMASK, set()); signal.signal(signal.SIGTERM, signal.SIG_DFL)
        port, flips, at = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
        lock = threading.Lock(); done = [0]
        srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port)); srv.listen(64); print("ready", flush=True)
        def pipe(a, b, damage):
            seen = 0
            try:
                while True:
                    d = a.recv(65536)
                    if not d: break
                    if damage and seen <= at < seen + len(d):
                        with lock:
                            go = done[0] < flips
                            if go: done[0] += 1
                        if go:
                            d = bytearray(d); d[at - seen] ^= 0x10; d = bytes(d); print("flipped", flush=True)
                    seen += len(d)
                    b.sendall(d)
            except OSError: pass
            for s in (a, b):
                try: s.shutdown(socket.SHUT_RDWR)
                except OSError: pass
        while True:
            c, _ = srv.accept()
            try: u = socket.create_connection(("127.0.0.2", port))
            except OSError: c.close(); continue
            threading.Thread(target=pipe, args=(c, u, True), daemon=True).start()
            threading.Thread(target=pipe, args=(u, c, False), daemon=True).start()
        """

    @Test func chunkFramesDamagedOnTheNetworkAreSentAgainAndTheJobSucceeds() async throws {
        let cluster = try TestCluster()
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        for i in 0..<6 { try Data(SampleData.random(bytes: 4 << 20, seed: UInt64(300 + i))).write(to: source.appendingPathComponent("f\(i).bin")) }
        let port = try TestCluster.freePort()
        let log = cluster.dir.url.appendingPathComponent("proxy.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let proxy = Process()
        proxy.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        proxy.arguments = ["python3", "-c", Self.proxy, "\(port)", "4", "300000"]
        proxy.standardOutput = try FileHandle(forWritingTo: log)
        proxy.standardError = FileHandle.nullDevice
        try proxy.run()
        defer { if proxy.isRunning { proxy.terminate() } }
        let proxyLog = { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
        try #require(try await cluster.eventually(30) { proxyLog().contains("ready") }, "the proxy did not start")

        let (coordinator, agents, http) = try await cluster.startCoordinator()
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        // Listens on 127.0.0.2, tells the source 127.0.0.1 (the proxy) on the same port.
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents,
                                        arguments: ["--listen", "127.0.0.2:\(port)", "--advertise", "127.0.0.1"])
        defer { withExtendedLifetime((coordinator, a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http))
        // Paced, so that the source reads the destination's refusal before its next write fails.
        let r = try cluster.cli(["submit", "a:ds", "b:copy", "--codec", "none", "--bwlimit", "16MiB/s", "--wait"], http: http)
        let flipped = proxyLog().components(separatedBy: "flipped").count - 1
        #expect(flipped == 4, "\(proxyLog())")
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)\n\(coordinator.output)")
        for i in 0..<6 {
            #expect(FileManager.default.contentsEqual(atPath: source.appendingPathComponent("f\(i).bin").path,
                                                      andPath: cluster.dir.path + "/root-b/copy/f\(i).bin"))
        }
        // Each refusal given back rather than counted, and named as damage where the source read it.
        #expect(coordinator.output.contains("not counted as an attempt"), "\(coordinator.output)")
        #expect(b1.output.contains("sealed chunk data frame rejected"), "\(b1.output)")
        #expect(!coordinator.output.contains("attempt 1 of"), "\(coordinator.output)")
    }
}
