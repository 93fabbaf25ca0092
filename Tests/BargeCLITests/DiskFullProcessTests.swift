import BargeBench
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A small tmpfs mounted by the test under the cluster directory; needs root (CI runs as root).
final class TmpfsMount {
    let path: String

    /// Whether this process may mount: checked by mounting one, so a container without the
    /// capability skips with the reason instead of failing.
    static let available: Bool = {
        guard geteuid() == 0 else { return false }
        let probe = FileManager.default.temporaryDirectory.appendingPathComponent("barge-tmpfs-probe-\(getpid())").path
        guard (try? FileManager.default.createDirectory(atPath: probe, withIntermediateDirectories: true)) != nil else { return false }
        defer { try? FileManager.default.removeItem(atPath: probe) }
        guard run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe]) else { return false }
        return run(["umount", probe])
    }()

    init(at path: String, megabytes: Int) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        guard Self.run(["mount", "-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0755", "tmpfs", path]) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "mount tmpfs at \(path) failed"])
        }
    }

    /// Frees space the way an operator would: the file system grows.
    func resize(megabytes: Int) -> Bool { Self.run(["mount", "-o", "remount,size=\(megabytes)m", path]) }

    deinit { _ = Self.run(["umount", "-l", path]) }

    @discardableResult
    static func run(_ arguments: [String]) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }
}

/// A destination that fills up mid-job: the job stops with ENOSPC named, nothing incomplete ever
/// has its final name, and once there is space `barge resume` finishes it byte-identical.
@Suite(.serialized)
struct DiskFullProcessTests {
    @Test(.enabled(if: TmpfsMount.available, "mounting a tmpfs needs root (CI runs as root); the disk-full test is skipped"))
    func aFullDestinationStopsTheJobAndResumeFinishesItOnceThereIsSpace() async throws {
        let cluster = try TestCluster(roots: ["root-a", "root-b"])
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        for i in 0..<6 {
            try Data(SampleData.random(bytes: (3 << 20) + i * 4099, seed: UInt64(40 + i))).write(to: source.appendingPathComponent("part-\(i).bin"))
        }
        try Data(SampleData.text(bytes: 5000)).write(to: source.appendingPathComponent("README.txt"))
        // 8 MiB for 18 MiB of incompressible data.
        let disk = try TmpfsMount(at: cluster.dir.path + "/root-b/small", megabytes: 8)
        let running = try await cluster.startPair(coordinatorArguments: ["--unit-size", "2MiB"])
        defer { withExtendedLifetime(running) {} }
        let (coordinator, http) = (running.coordinator, running.http)

        let failed = try cluster.cli(["submit", "a:ds", "b:small/copy", "--codec", "none", "--wait", "--json"], http: http)
        #expect(failed.status != 0)
        let status = try #require(try JSONSerialization.jsonObject(with: Data(failed.stdout.utf8)) as? [String: Any], "\(failed.stdout)\(failed.stderr)")
        let job = try #require(status["id"] as? String)
        #expect(status["state"] as? String == "failed")
        let error = status["error"] as? String ?? ""
        #expect(error.contains("ENOSPC"), "the job's error names the cause: \(error)")
        print("disk full: job \(job) stopped with: \(error)")

        // Whatever has its final name is complete and correct; the rest is only partial.
        let destination = URL(fileURLWithPath: disk.path + "/copy")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: destination.path)) ?? []
        for name in names where !name.hasSuffix(".barge-partial") {
            #expect(try Data(contentsOf: destination.appendingPathComponent(name)) == Data(contentsOf: source.appendingPathComponent(name)),
                    "\(name) has its final name but not its bytes")
        }

        #expect(disk.resize(megabytes: 64))
        let resumed = try cluster.cli(["resume", job, "--wait"], http: http)
        #expect(resumed.status == 0, "\(resumed.stdout)\(resumed.stderr)\n\(coordinator.output)")
        let got = try TreeSupport.snapshot(destination), want = try TreeSupport.snapshot(source)
        #expect(got == want, "\(got)\n\(want)\n\(coordinator.output)")
        #expect(TreeSupport.partials(destination).isEmpty)
        #expect(coordinator.output.contains("job \(job) resumed"))

        // A job that has succeeded cannot be resumed; an unknown one is a clear error.
        let again = try cluster.cli(["resume", job], http: http)
        #expect(again.status != 0 && again.stderr.contains("a succeeded job cannot resume"), "\(again.stderr)")
        let unknown = try cluster.cli(["resume", "j-nope"], http: http)
        #expect(unknown.status != 0 && unknown.stderr.contains("no job j-nope"), "\(unknown.stderr)")
    }

    /// The coordinator's own disk fills while a job runs: the job waits and says why, a request
    /// that would have to wait for the journal is refused at once with the reason (before: no
    /// word in `status`, and `cancel` hung until the client gave up), and once there is space the
    /// job finishes identical, nothing lost.
    @Test(.enabled(if: TmpfsMount.available, "mounting a tmpfs needs root (CI runs as root); the disk-full test is skipped"))
    func aCoordinatorWhoseDiskFillsSaysWhyAndLosesNothing() async throws {
        let cluster = try TestCluster(roots: ["root-a", "root-b"])
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        for i in 0..<3000 {
            let dir = source.appendingPathComponent("d\(i % 30)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try Data(SampleData.random(bytes: 1 + (i * 131) % 3000, seed: UInt64(i))).write(to: dir.appendingPathComponent("a-file-with-a-longer-name-\(i).dat"))
        }
        let state = try TmpfsMount(at: cluster.dir.path + "/state", megabytes: 4)
        let running = try await cluster.startPair()
        defer { withExtendedLifetime(running) {} }
        let (coordinator, http) = (running.coordinator, running.http)
        let submitted = try cluster.cli(["submit", "a:ds", "b:copy", "--bwlimit", "1MiB/s", "--json"], http: http)
        let job = try #require((try? JSONSerialization.jsonObject(with: Data(submitted.stdout.utf8)) as? [String: Any])?["id"] as? String,
                               "\(submitted.stdout)\(submitted.stderr)")
        // Everything left on the coordinator's disk goes to a filler, as another program would take it.
        let filler = FileHandle(forWritingAtPath: { FileManager.default.createFile(atPath: state.path + "/filler", contents: nil); return state.path + "/filler" }())!
        let block = Data(count: 64 << 10)
        while (try? filler.write(contentsOf: block)) != nil {}
        try filler.close()

        func waiting() throws -> String {
            let r = try cluster.cli(["status", job, "--json"], http: http)
            return (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["waiting"] as? String ?? ""
        }
        #expect(try await cluster.eventually(60) { try waiting().contains("the coordinator cannot write its journal") }, "\(coordinator.output)")
        #expect(try waiting().contains("free space where the coordinator's --state lies"))
        let started = ContinuousClock.now
        let cancel = try cluster.cli(["cancel", job], http: http)
        #expect(cancel.status != 0 && cancel.stderr.contains("cannot write its journal") && cancel.stderr.contains("send it again"), "\(cancel.stderr)")
        #expect(ContinuousClock.now - started < .seconds(10), "the refusal came at once")
        let shown = try cluster.cli(["status", job], http: http)
        #expect(shown.stdout.contains("waiting: the coordinator cannot write its journal"), "\(shown.stdout)")

        // Space again: the job goes on by itself and ends identical.
        try FileManager.default.removeItem(atPath: state.path + "/filler")
        #expect(try await cluster.eventually(120) {
            let r = try cluster.cli(["status", job, "--json"], http: http)
            return (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["state"] as? String == "succeeded"
        }, "\(coordinator.output)")
        #expect(try TreeSupport.snapshot(cluster.dir.url.appendingPathComponent("root-b/copy")) == TreeSupport.snapshot(source))
        #expect(coordinator.output.contains("journal commit of"))
    }
}
