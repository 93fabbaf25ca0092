@testable import BargeTier
import Foundation
import Testing

/// The cold store's lock against a real holder in another process (`flock(1)`).
@Suite(.timeLimit(.minutes(1)))
struct StoreLockTests {
    /// `flock [-s] PATH sleep SECONDS`, returned once it holds the lock.
    func holder(_ path: String, shared: Bool, seconds: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/flock")
        p.arguments = (shared ? ["-s"] : []) + [path, "sleep", seconds]
        try p.run()
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        defer { close(fd) }
        for _ in 0..<500 {
            if flock(fd, LOCK_EX | LOCK_NB) != 0 { return p }
            flock(fd, LOCK_UN)
            usleep(10_000)
        }
        p.terminate()
        throw ColdStoreError("flock(1) never took \(path)")
    }

    /// A holder that is stopped (SIGSTOP: an agent of the site sharing the root, or a hung node)
    /// is named once the grace has passed, rather than waited for without a word: the site's tier
    /// jobs stood still for as long as it was stopped (h3 of session 50).
    @Test func aStoppedHolderIsNamedNotWaitedFor() throws {
        let s = try ColdSandbox()
        let path = s.dir.path + "/lock"
        let p = try holder(path, shared: true, seconds: "30")
        defer {
            kill(p.processIdentifier, SIGCONT)
            p.terminate()
            p.waitUntilExit()
        }
        kill(p.processIdentifier, SIGSTOP)
        let began = ContinuousClock.now
        #expect {
            _ = try StoreLock(path, exclusive: true, stoppedGrace: .milliseconds(300))
        } throws: { error in
            "\(error)".contains("held by process \(p.processIdentifier), which is stopped") && "\(error)".contains("kill -CONT \(p.processIdentifier)")
        }
        #expect(ContinuousClock.now - began >= .milliseconds(300))
    }

    /// A holder that runs is waited for, however long its work takes (gc waits for demotions).
    @Test func aRunningHolderIsWaitedFor() throws {
        let s = try ColdSandbox()
        let path = s.dir.path + "/lock"
        let p = try holder(path, shared: false, seconds: "0.8")
        defer { p.waitUntilExit() }
        let began = ContinuousClock.now
        let lock = try StoreLock(path, exclusive: false, stoppedGrace: .milliseconds(100))
        lock.release()
        #expect(ContinuousClock.now - began >= .milliseconds(300))
    }
}
