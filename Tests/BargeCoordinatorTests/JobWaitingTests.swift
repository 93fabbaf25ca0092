import BargeCoordinator
import Testing

/// What `status` says about a running job that cannot move: a site of the job with no agent up.
struct JobWaitingTests {
    static func agent(_ name: String, _ site: String, _ state: AgentState) -> AgentInfo {
        AgentInfo(name: name, site: site, address: "127.0.0.1:1", state: state, lastSeen: 0)
    }

    @Test func aJobWithAnAgentUpAtEachSiteIsNotWaiting() {
        let agents = [Self.agent("a1", "a", .down), Self.agent("a2", "a", .up), Self.agent("b1", "b", .up)]
        #expect(JobWaiting.reason(state: .running, source: "a", destination: "b", agents: agents) == nil)
    }

    @Test func aSiteWithNoAgentUpIsNamedWithItsAgents() {
        let agents = [Self.agent("a2", "a", .draining), Self.agent("a1", "a", .down), Self.agent("b1", "b", .up)]
        #expect(JobWaiting.reason(state: .running, source: "a", destination: "b", agents: agents)
            == "waiting: source site 'a' has no agent up (a1 down, a2 draining); the job goes on when one is back: barge agent --site a …")
    }

    @Test func bothSitesAndUnknownSitesAreSaid() {
        let agents = (1...5).map { Self.agent("b\($0)", "b", .down) }
        #expect(JobWaiting.reason(state: .running, source: "a", destination: "b", agents: agents)
            == "waiting: source site 'a' has no agent up; the job goes on when one is back: barge agent --site a …; "
            + "destination site 'b' has no agent up (b1 down, b2 down, b3 down, …); the job goes on when one is back: barge agent --site b …")
        // A tier job: one site, said once.
        #expect(JobWaiting.reason(state: .running, source: "b", destination: "b", agents: agents)
            == "waiting: source and destination site 'b' has no agent up (b1 down, b2 down, b3 down, …); the job goes on when one is back: barge agent --site b …")
    }

    /// Soon after the coordinator starts, a site none of whose agents has registered yet waits
    /// for them to reconnect, rather than for someone to start one; later, or with its agents
    /// known and down, it waits for one to come back.
    @Test func soonAfterAStartASiteWithNoAgentYetIsWaitingForThemToReconnect() {
        let b = [Self.agent("b1", "b", .up)]
        #expect(JobWaiting.reason(state: .running, source: "a", destination: "b", agents: b, coordinatorAge: 3.4)
            == "waiting: source site 'a' has no agent up yet: the coordinator started 3 s ago, and running agents reconnect within seconds (if none does: barge agent --site a …)")
        #expect(JobWaiting.reason(state: .running, source: "a", destination: "b", agents: b, coordinatorAge: 45)
            == "waiting: source site 'a' has no agent up; the job goes on when one is back: barge agent --site a …")
        #expect(JobWaiting.reason(state: .running, source: "a", destination: "b", agents: b + [Self.agent("a1", "a", .down)], coordinatorAge: 3)?
            .contains("has no agent up (a1 down)") == true)
    }

    @Test func onlyAJobNotEndedWaits() {
        for state in [JobState.succeeded, .failed, .cancelled] {
            #expect(JobWaiting.reason(state: state, source: "a", destination: "b", agents: []) == nil)
        }
        #expect(JobWaiting.reason(state: .queued, source: "a", destination: "b", agents: [Self.agent("b1", "b", .up)])?.hasPrefix("waiting: source site 'a'") == true)
    }

    /// A journal that cannot be written holds every job not ended, and is said first.
    @Test func aJournalThatCannotBeWrittenIsSaidFirst() {
        let problem = "SQLite error 13: database or disk is full"
        let up = [Self.agent("a1", "a", .up), Self.agent("b1", "b", .up)]
        #expect(JobWaiting.reason(state: .running, source: "a", destination: "b", agents: up, journalProblem: problem)
            == "waiting: the coordinator cannot write its journal (\(problem)); nothing is lost, and the job goes on once it can: free space where the coordinator's --state lies")
        let both = JobWaiting.reason(state: .queued, source: "a", destination: "b", agents: [Self.agent("a1", "a", .up)], journalProblem: problem) ?? ""
        #expect(both.hasPrefix("waiting: the coordinator cannot write its journal") && both.contains("; destination site 'b' has no agent up"), "\(both)")
        #expect(JobWaiting.reason(state: .succeeded, source: "a", destination: "b", agents: up, journalProblem: problem) == nil)
    }
}
