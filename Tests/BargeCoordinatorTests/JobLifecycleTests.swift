import BargeCoordinator
import BargeWire
import Testing

struct JobLifecycleTests {
    static let events: [JobEvent] = [.start, .succeed, .fail("disk full"), .cancel, .resume(planned: true), .resume(planned: false)]

    /// Every (state, event) pair: the allowed ones give the documented state, all others throw.
    @Test(arguments: JobState.allCases)
    func transitions(_ state: JobState) {
        let allowed: [JobState: [JobEvent: JobState]] = [
            .queued: [.start: .running, .fail("disk full"): .failed, .cancel: .cancelled],
            .running: [.succeed: .succeeded, .fail("disk full"): .failed, .cancel: .cancelled],
            .cancelled: [.cancel: .cancelled, .resume(planned: true): .running, .resume(planned: false): .queued],
            .failed: [.resume(planned: true): .running, .resume(planned: false): .queued],
        ]
        for event in Self.events {
            if let expected = allowed[state]?[event] {
                #expect((try? JobLifecycle.next(state, event)) == expected, "\(state) + \(event)")
            } else {
                #expect(throws: JobTransitionError(from: state, event: event)) { try JobLifecycle.next(state, event) }
            }
        }
    }

    @Test func terminalStatesStayTerminal() {
        for state in JobState.allCases where state.isTerminal {
            #expect(throws: JobTransitionError.self) { try JobLifecycle.next(state, .start) }
            #expect(throws: JobTransitionError.self) { try JobLifecycle.next(state, .succeed) }
        }
        #expect(JobTransitionError(from: .cancelled, event: .succeed).description == "a cancelled job cannot succeed")
        #expect(throws: JobTransitionError(from: .succeeded, event: .resume(planned: true))) { try JobLifecycle.next(.succeeded, .resume(planned: true)) }
        #expect(JobTransitionError(from: .running, event: .resume(planned: true)).description == "a running job cannot resume")
    }
}

struct AgentRegistryTests {
    static let second: UInt64 = 1_000_000_000

    @Test func silentAgentsGoDownAfterTheTimeoutAndMustRegisterAgain() throws {
        var r = AgentRegistry(heartbeatTimeout: 15 * Self.second)
        #expect(try r.register(name: "a1", site: "a", address: "10.0.0.1:7500", now: 0) == .new)
        #expect(try r.register(name: "b1", site: "b", address: "10.0.1.1:7500", now: 0) == .new)
        // The coordinator looks every second (a longer gap would be its own stall).
        for t in UInt64(1)...15 {
            if t == 10 { try r.heartbeat(name: "a1", now: 10 * Self.second) }
            #expect(r.expire(now: t * Self.second).isEmpty)
        }
        #expect(r.expire(now: 16 * Self.second) == ["b1"])
        #expect(r.expire(now: 17 * Self.second).isEmpty, "an agent goes down once")
        #expect(r.all.map(\.state) == [.up, .down])
        #expect(throws: RegistryError.mustRegisterAgain("b1")) { try r.heartbeat(name: "b1", now: 18 * Self.second) }
        #expect(try r.register(name: "b1", site: "b", address: "10.0.1.1:7501", now: 19 * Self.second) == .rejoined)
        #expect(r.available(site: "b").map(\.address) == ["10.0.1.1:7501"])
    }

    /// A name that would put the agent's state directory elsewhere (`..`, a "/"), a site that
    /// `SITE:PATH` or the API's paths could not name, or either with a space that would break
    /// `barge agents`' columns, is refused with why; ordinary names, UTF-8 ones too, are not.
    @Test func namesThatWouldMisplaceStateOrCannotBeAddressedAreRefused() throws {
        var r = AgentRegistry(heartbeatTimeout: 15 * Self.second)
        for bad in ["..", ".", "../../escape", "a/b", "", "tab\there", "a b", String(repeating: "n", count: 256)] {
            #expect(throws: RegistryError.self) { try r.register(name: bad, site: "a", address: "h:1", now: 0) }
        }
        #expect(Register.nameProblem("..")?.contains("state directory") == true)
        #expect(throws: RegistryError.self) { try r.register(name: "a1", site: "x:y", address: "h:1", now: 0) }
        #expect(Register.siteProblem("x:y")?.contains("SITE:PATH") == true)
        for bad in ["x/y", "../x", "site a"] {
            #expect(throws: RegistryError.self) { try r.register(name: "a1", site: bad, address: "h:1", now: 0) }
        }
        #expect(Register.siteProblem("site a")?.contains("spaces") == true)
        #expect(Register.siteProblem("../x")?.contains("'/'") == true)
        for good in ["a1", "node-07.cluster", "é", "..x", String(repeating: "n", count: 255)] {
            #expect(try r.register(name: good, site: "site-é.1", address: "h:1", now: 0) == .new)
        }
        #expect(r.all.count == 5)
    }

    @Test func drainingAgentsTakeNoNewWorkAndUnknownOnesAreErrors() throws {
        var r = AgentRegistry(heartbeatTimeout: 15 * Self.second)
        _ = try r.register(name: "a1", site: "a", address: "h:1", now: 0)
        _ = try r.register(name: "a2", site: "a", address: "h:2", now: 0)
        try r.drain(name: "a1")
        #expect(r.available(site: "a").map(\.name) == ["a2"])
        #expect(r.available(site: "nowhere").isEmpty)
        #expect(throws: RegistryError.unknownAgent("zz")) { try r.heartbeat(name: "zz", now: 1) }
        #expect(throws: RegistryError.unknownAgent("zz")) { try r.drain(name: "zz") }
    }

    /// A drained agent that stops (how an agent is retired) is forgotten once its timeout passes,
    /// rather than listed down for good (a review: `BargeAgentDown` fired until the coordinator
    /// restarted); one that stops undrained is down. The retired one registers again as new.
    @Test func aDrainedAgentThatStopsIsForgottenAndAnUndrainedOneIsDown() throws {
        var r = AgentRegistry(heartbeatTimeout: 15 * Self.second)
        _ = try r.register(name: "a1", site: "a", address: "h:1", now: 0)
        _ = try r.register(name: "a2", site: "a", address: "h:2", now: 0)
        try r.drain(name: "a1")
        let expired = (UInt64(1)...16).flatMap { r.expire(now: $0 * Self.second) }
        #expect(expired == ["a1", "a2"], "both lose their units")
        #expect(r.all.map(\.name) == ["a2"] && r.all.map(\.state) == [.down])
        #expect(throws: RegistryError.unknownAgent("a1")) { try r.heartbeat(name: "a1", now: 17 * Self.second) }
        #expect(try r.register(name: "a1", site: "a", address: "h:1", now: 18 * Self.second) == .new)
    }

    @Test func aLiveNameCannotMoveToAnotherSite() throws {
        var r = AgentRegistry(heartbeatTimeout: 15 * Self.second)
        _ = try r.register(name: "dtn1", site: "a", address: "h:1", now: 0)
        #expect(throws: RegistryError.nameInUse(name: "dtn1", site: "a")) {
            try r.register(name: "dtn1", site: "b", address: "h:2", now: 1)
        }
        let expired = (UInt64(1)...20).flatMap { r.expire(now: $0 * Self.second) }
        #expect(expired == ["dtn1"])
        #expect(try r.register(name: "dtn1", site: "b", address: "h:2", now: 21 * Self.second) == .rejoined)
    }

    /// An agent whose root is another directory than the one its site's live agents share is
    /// refused, naming both roots; the same directory, another site, an agent that gave no id, or
    /// the same agent come back with a new root are not. Once the others are down, it gets in.
    @Test func anAgentWhoseRootIsNotItsSitesSharedRootIsRefused() throws {
        var r = AgentRegistry(heartbeatTimeout: 15 * Self.second)
        let shared = "00000000000000000000000000000001", other = "00000000000000000000000000000002"
        _ = try r.register(name: "b1", site: "b", address: "h:1", root: "/lustre/b", rootID: shared, now: 0)
        #expect(try r.register(name: "b2", site: "b", address: "h:2", root: "/mnt/lustre/b", rootID: shared, now: 0) == .new)
        #expect(throws: RegistryError.rootDiffers(name: "b3", site: "b", root: "/scratch/b", other: "b1", otherRoot: "/lustre/b")) {
            try r.register(name: "b3", site: "b", address: "h:3", root: "/scratch/b", rootID: other, now: Self.second)
        }
        let refusal = RegistryError.rootDiffers(name: "b3", site: "b", root: "/scratch/b", other: "b1", otherRoot: "/lustre/b").description
        #expect(refusal.contains("must share one root") && refusal.contains("/scratch/b") && refusal.contains("/lustre/b") && refusal.contains("--site"))
        #expect(r.available(site: "b").map(\.name) == ["b1", "b2"])
        // Another site, an older agent (no id), and b1 itself with a new root, are not compared.
        #expect(try r.register(name: "c1", site: "c", address: "h:4", root: "/scratch/b", rootID: other, now: Self.second) == .new)
        #expect(try r.register(name: "b4", site: "b", address: "h:5", root: "/old", now: Self.second) == .new)
        #expect(throws: RegistryError.self) {
            try r.register(name: "b1", site: "b", address: "h:1", root: "/scratch/b", rootID: other, now: 2 * Self.second)
        }
        // Every agent of the site with the shared root is down: the new root may take over.
        _ = (UInt64(3)...20).flatMap { r.expire(now: $0 * Self.second) }
        #expect(try r.register(name: "b3", site: "b", address: "h:3", root: "/scratch/b", rootID: other, now: 21 * Self.second) == .new)
    }

    /// A second live agent under a name whose agent is connected and heard lately is refused; once
    /// that one is silent past the window, or no longer connected, the name is free again.
    @Test func aConnectedNameHeardLatelyCannotBeTakenAgain() throws {
        var r = AgentRegistry(heartbeatTimeout: 15 * Self.second)
        _ = try r.register(name: "a1", site: "a", address: "h:1", now: 0)
        #expect(throws: RegistryError.connected(name: "a1", site: "a", address: "h:1")) {
            try r.register(name: "a1", site: "a", address: "h:2", now: Self.second, connected: true, liveWindow: 3 * Self.second)
        }
        #expect(try r.register(name: "a1", site: "a", address: "h:2", now: Self.second, connected: false, liveWindow: 3 * Self.second) == .rejoined)
        #expect(try r.register(name: "a1", site: "a", address: "h:3", now: 5 * Self.second, connected: true, liveWindow: 3 * Self.second) == .rejoined)
        #expect(r.agents["a1"]?.address == "h:3")
    }
}

/// The coordinator's own stalls do not count as its agents' silence (`AgentRegistry.expire`).
struct CoordinatorStallTests {
    static let second: UInt64 = 1_000_000_000

    @Test func aCoordinatorThatStoodStillTakesNoLiveAgentForDownAndADeadOneStillGoes() throws {
        var r = AgentRegistry(heartbeatTimeout: 2 * Self.second, lookInterval: Self.second)
        _ = try r.register(name: "live", site: "a", address: "h:1", now: 0)
        _ = try r.register(name: "dead", site: "a", address: "h:2", now: 0)
        for t in 1...3 {
            try r.heartbeat(name: "live", now: UInt64(t) * Self.second - Self.second / 10)
            #expect(r.expire(now: UInt64(t) * Self.second).isEmpty || t == 3)
        }
        // The dead one went at the look of t = 3 s; the live one never.
        #expect(r.agents["dead"]?.state == .down)
        #expect(r.agents["live"]?.state == .up)
        // The coordinator stands still for 20 s: its next look comes at 23 s, before the
        // heartbeats waiting in its socket are read.
        #expect(r.expire(now: 23 * Self.second).isEmpty, "the stall is not the agent's silence")
        try r.heartbeat(name: "live", now: 23 * Self.second + 1)
        #expect(r.expire(now: 24 * Self.second).isEmpty)
        // Looks on time: silence counts again.
        #expect(r.expire(now: 25 * Self.second).isEmpty)
        #expect(r.expire(now: 26 * Self.second) == ["live"], "an agent silent since 23 s is down at 26 s")
    }

    /// After the stall, the heartbeats that waited in one agent's socket are read before the
    /// next look: the other agent, whose heartbeats are read later, is not taken for down either.
    @Test func aHeartbeatReadFirstAfterTheStallGivesEveryAgentTheTimeBack() throws {
        var r = AgentRegistry(heartbeatTimeout: 2 * Self.second, lookInterval: Self.second)
        _ = try r.register(name: "a", site: "s", address: "h:1", now: 0)
        _ = try r.register(name: "b", site: "s", address: "h:2", now: 0)
        #expect(r.expire(now: Self.second).isEmpty)
        try r.heartbeat(name: "a", now: Self.second + 1)
        try r.heartbeat(name: "b", now: Self.second + 2)
        try r.heartbeat(name: "a", now: 21 * Self.second)  // the stall ran from 1 s to 21 s
        #expect(r.expire(now: 21 * Self.second + 5).isEmpty)
        try r.heartbeat(name: "b", now: 21 * Self.second + 10)
        #expect(r.expire(now: 22 * Self.second).isEmpty)
    }

    /// A slow look (a busy scheduler) while heartbeats are read meanwhile gives nothing back: a
    /// dead agent is taken for down on time.
    @Test func slowLooksWhileOthersAreHeardDoNotDelayADeadAgent() throws {
        var r = AgentRegistry(heartbeatTimeout: 2 * Self.second, lookInterval: Self.second)
        _ = try r.register(name: "live", site: "s", address: "h:1", now: 0)
        _ = try r.register(name: "dead", site: "s", address: "h:2", now: 0)
        var expired: [String] = []
        for t in stride(from: 0.5, through: 4.0, by: 0.5) {
            try r.heartbeat(name: "live", now: UInt64(t * 1e9))
            if t == 4.0 { expired = r.expire(now: 4 * Self.second + 1) }  // the first look in 4 s
        }
        #expect(expired == ["dead"])
    }

    @Test func anAgentThatDiedJustBeforeTheStallGoesAfterIt() throws {
        var r = AgentRegistry(heartbeatTimeout: 2 * Self.second, lookInterval: Self.second)
        _ = try r.register(name: "x", site: "a", address: "h:1", now: 0)
        #expect(r.expire(now: Self.second).isEmpty)
        // Died after registering at 0 s; the coordinator stood from 1 to 31 s. Silent 1 s before
        // the stall, 1 s of the stall counted as one interval, then 1 s more: down at 32 s.
        #expect(r.expire(now: 31 * Self.second).isEmpty)
        #expect(r.expire(now: 32 * Self.second) == ["x"])
    }
}
