import BargeCoordinator
import BargeWire
import Testing

/// The scheduling policy on its own: no journal, no actors, no clock but the times given.
struct SchedulingPolicyTests {
    /// Answers every refill the policy asks for from `units` (a stand-in journal): pending work
    /// units after the cursor in id order, directories deepest first.
    struct Journal {
        var units: [PlannedUnit]
        var done: Set<UInt64> = []

        func page(_ r: SchedulingPolicy.Refill) -> [PlannedUnit] {
            switch r.kind {
            case .work(let after):
                // Ended once the units list `r.files` files, as `Journal.page` ends it.
                var files = 0
                return Array(units.filter { $0.kind != .directories && !done.contains($0.id) && $0.id > (after ?? 0) || ($0.id == 0 && after == nil && $0.kind != .directories) }
                    .sorted { $0.id < $1.id }.prefix(r.limit).prefix { u in defer { files += u.files }; return files < r.files })
            case .directories(let after):
                let dirs = units.filter { $0.kind == .directories && !done.contains($0.id) }.sorted { ($0.depth, $0.id) > ($1.depth, $1.id) }
                let rest = after.map { c in dirs.filter { ($0.depth, $0.id) < (c.depth, c.id) } } ?? dirs
                return Array(rest.prefix(r.limit))
            }
        }
    }

    static func fill(_ p: inout SchedulingPolicy, _ journal: Journal) {
        for refill in p.refills() { p.loaded(refill, units: journal.page(refill)) }
    }

    static func finish(_ p: inout SchedulingPolicy, _ journal: inout Journal, _ a: SchedulingPolicy.Assignment) {
        p.ended(a.key)
        journal.done.insert(a.unit.id)
        p.done(a.key, unit: a.unit, wasHeld: true)
    }

    @Test func rangesThenTheirFinishThenDirectoriesDeepestFirst() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 10)
        p.agentUp("b1", site: "b", bound: 10)
        p.agentUp("b2", site: "b", bound: 10)
        var j = Journal(units: [
            PlannedUnit(id: 0, kind: .range, finish: 3), PlannedUnit(id: 1, kind: .range, finish: 3), PlannedUnit(id: 2, kind: .range, finish: 3),
            PlannedUnit(id: 3, kind: .finish, waitsFor: 3), PlannedUnit(id: 4, kind: .files),
            PlannedUnit(id: 5, kind: .directories, depth: 1), PlannedUnit(id: 6, kind: .directories, depth: 2),
        ])
        p.start(job: "j", source: "a", destination: "b", openWork: 0, planned: false)
        p.planned(job: "j", workUnits: 5, final: true)
        Self.fill(&p, j)
        let first = p.assign(now: 0)
        // The finish waits for its ranges; every range of the file goes to one destination.
        #expect(first.map(\.unit.id) == [0, 1, 2, 4])
        #expect(Set(first.prefix(3).map(\.destination)).count == 1)
        Self.finish(&p, &j, first[0])
        Self.finish(&p, &j, first[1])
        #expect(p.assign(now: 0).isEmpty)
        Self.finish(&p, &j, first[2])
        let finish = p.assign(now: 0)
        #expect(finish.map(\.unit.id) == [3] && finish[0].destination == first[0].destination)
        // Directories only once every other unit is done.
        Self.fill(&p, j)
        #expect(p.assign(now: 0).isEmpty)
        Self.finish(&p, &j, finish[0])
        Self.finish(&p, &j, first[3])
        Self.fill(&p, j)
        let deep = p.assign(now: 0)
        #expect(deep.map(\.unit.id) == [6])  // depth 2 first; depth 1 waits for it
        Self.finish(&p, &j, deep[0])
        #expect(p.assign(now: 0).map(\.unit.id) == [5])
    }

    /// A job whose data is all done sends its directories' unit even while the lanes are full
    /// with another job's units, one such unit at a time: before, it waited behind them, and the
    /// job stayed running for seconds after its last byte.
    @Test func aJobsDirectoriesGoEvenToAFullLaneOneAtATime() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 1)
        p.agentUp("b1", site: "b", bound: 1)
        var big = Journal(units: [PlannedUnit(id: 0, kind: .files), PlannedUnit(id: 1, kind: .files)])
        p.start(job: "big", source: "a", destination: "b", openWork: 0, planned: false)
        p.planned(job: "big", workUnits: 2, final: true)
        Self.fill(&p, big)
        let held = p.assign(now: 0)
        #expect(held.map(\.key.job) == ["big"])
        var small = Journal(units: [PlannedUnit(id: 0, kind: .files), PlannedUnit(id: 1, kind: .directories, depth: 1),
                                    PlannedUnit(id: 2, kind: .directories, depth: 1)])
        small.done.insert(0)
        p.start(job: "small", source: "a", destination: "b", openWork: 0, planned: false)
        p.planned(job: "small", workUnits: 0, final: true)
        Self.fill(&p, small)
        Self.fill(&p, small)
        let dirs = p.assign(now: 0)
        #expect(dirs.map(\.key.job) == ["small"] && dirs.first?.unit.kind == .directories, "\(dirs)")
        // The next waits for the first: one over the lanes' bound at a time.
        #expect(p.assign(now: 0).isEmpty)
        Self.finish(&p, &small, dirs[0])
        Self.fill(&p, small)
        let next = p.assign(now: 0)
        #expect(next.count == 1 && next[0].unit.kind == .directories && next[0].unit.id != dirs[0].unit.id)
        // The full lane's own unit was not taken back, and nothing of "big" went over the bound.
        #expect(!next.contains { $0.key.job == "big" })
        Self.finish(&p, &big, held[0])
    }

    @Test func aPinnedRangeWaitsForItsAgentWithoutBlockingOtherUnits() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 10)
        p.agentUp("b1", site: "b", bound: 1)
        p.agentUp("b2", site: "b", bound: 1)
        var j = Journal(units: [PlannedUnit(id: 0, kind: .range, finish: 2), PlannedUnit(id: 1, kind: .range, finish: 2),
                                PlannedUnit(id: 2, kind: .finish, waitsFor: 2), PlannedUnit(id: 3, kind: .files)])
        p.start(job: "j", source: "a", destination: "b", openWork: 4, planned: true)
        Self.fill(&p, j)
        let first = p.assign(now: 0)
        // Range 0 took b1 and pins the file there; range 1 waits for b1, and unit 3 goes to b2.
        #expect(first.map { "\($0.unit.id)→\($0.destination)" } == ["0→b1", "3→b2"])
        Self.finish(&p, &j, first[0])
        #expect(p.assign(now: 0).map { "\($0.unit.id)→\($0.destination)" } == ["1→b1"])
    }

    /// A destination agent that restarts within the agent timeout (its connection drops, it
    /// registers again before it is declared down) gets back the ranges of its pinned file that
    /// failed and were parked for it while it was away.
    @Test func rangesParkedForADestinationGoToItWhenItRegistersAgain() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 10)
        p.agentUp("b1", site: "b", bound: 4)
        p.agentUp("b2", site: "b", bound: 4)
        var j = Journal(units: [PlannedUnit(id: 0, kind: .range, finish: 2), PlannedUnit(id: 1, kind: .range, finish: 2),
                                PlannedUnit(id: 2, kind: .finish, waitsFor: 2)])
        p.start(job: "j", source: "a", destination: "b", openWork: 3, planned: true)
        Self.fill(&p, j)
        let first = p.assign(now: 0)
        #expect(first.map { "\($0.unit.id)→\($0.destination)" } == ["0→b1", "1→b1"])
        Self.finish(&p, &j, first[0])
        // b1's connection drops; range 1 fails on the source and comes back from its backoff
        // while b1 is away: it is parked for b1, which holds the file's partial copy.
        p.disconnected("b1")
        p.failed(first[1].key, retryAt: 1)
        #expect(p.assign(now: 1).isEmpty)
        // b1 registers again: range 1 goes to it, then the finish.
        p.agentUp("b1", site: "b", bound: 4)
        let again = p.assign(now: 1)
        #expect(again.map { "\($0.unit.id)→\($0.destination)" } == ["1→b1"])
        Self.finish(&p, &j, again[0])
        #expect(p.assign(now: 1).map { "\($0.unit.id)→\($0.destination)" } == ["2→b1"])
    }

    /// A range pinned to an agent that is full as the source of another job (A to B beside B to
    /// A) waits, and goes once that work ends: an agent's room counts what it sends too. Before,
    /// only a destination's release woke the units parked for it, and the job hung at its last
    /// file for ever (black-box review h1).
    @Test func aRangeParkedForAnAgentFullAsASourceGoesWhenItsSendingEnds() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 10)
        p.agentUp("b1", site: "b", bound: 2)
        var j1 = Journal(units: [PlannedUnit(id: 0, kind: .range, finish: 2), PlannedUnit(id: 1, kind: .range, finish: 2),
                                 PlannedUnit(id: 2, kind: .finish, waitsFor: 2)])
        p.start(job: "j1", source: "a", destination: "b", openWork: 3, planned: true)
        Self.fill(&p, j1)
        let first = p.assign(now: 0)
        #expect(first.map { "\($0.unit.id)→\($0.destination)" } == ["0→b1", "1→b1"])
        // Range 0 arrives; range 1 fails and waits out its backoff.
        Self.finish(&p, &j1, first[0])
        p.failed(first[1].key, retryAt: 5)
        // The other way meanwhile: b1 sends j2's two units to a1, and is full.
        var j2 = Journal(units: [PlannedUnit(id: 10, kind: .files), PlannedUnit(id: 11, kind: .files)])
        p.start(job: "j2", source: "b", destination: "a", openWork: 2, planned: true)
        Self.fill(&p, j2)
        let sending = p.assign(now: 1)
        #expect(sending.map { "\($0.unit.id):\($0.source)→\($0.destination)" }.sorted() == ["10:b1→a1", "11:b1→a1"])
        // Range 1, pinned to b1 (its partial copy is there), is parked.
        #expect(p.assign(now: 6).isEmpty)
        // b1 sends one of j2's units to its end: it has room again, and the parked range goes.
        Self.finish(&p, &j2, sending[0])
        let next = p.assign(now: 6).map { "\($0.unit.id)→\($0.destination)" }
        #expect(next == ["1→b1"], "\(next) \(p.describe("j1"))")
    }

    @Test func aFailedUnitWaitsOutItsBackoff() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 4)
        p.agentUp("b1", site: "b", bound: 4)
        let j = Journal(units: [PlannedUnit(id: 0, kind: .files)])
        p.start(job: "j", source: "a", destination: "b", openWork: 1, planned: true)
        Self.fill(&p, j)
        let a = p.assign(now: 0)
        #expect(a.count == 1)
        p.failed(a[0].key, retryAt: 10)
        #expect(p.load(of: "a1") == 0 && p.nextRetry == 10)
        #expect(p.assign(now: 9.9).isEmpty)
        #expect(p.assign(now: 10).map(\.unit.id) == [0])
    }

    @Test func runningJobsShareTheLanesAndNoneStarves() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 4)
        p.agentUp("b1", site: "b", bound: 4)
        var journals = ["x": Journal(units: (0..<20).map { PlannedUnit(id: UInt64($0), kind: .files) }),
                        "y": Journal(units: (0..<20).map { PlannedUnit(id: UInt64($0), kind: .files) })]
        for job in ["x", "y"] { p.start(job: job, source: "a", destination: "b", openWork: 20, planned: true) }
        for refill in p.refills() { p.loaded(refill, units: journals[refill.job]!.page(refill)) }
        var got = ["x": 0, "y": 0]
        var held = p.assign(now: 0)
        #expect(held.count == 4)  // the lanes are full: assignment stops
        while !held.isEmpty {
            let a = held.removeFirst()
            got[a.key.job]! += 1
            Self.finish(&p, &journals[a.key.job]!, a)
            held += p.assign(now: 0)
            // Neither job gets more than one unit ahead of the other.
            #expect(abs(got["x"]! - got["y"]!) <= 2)
        }
        #expect(got == ["x": 20, "y": 20])
    }

    @Test func aDrainingAgentGetsNothingNewAndADeadOnesUnitsGoElsewhere() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 2)
        p.agentUp("b1", site: "b", bound: 2)
        p.agentUp("b2", site: "b", bound: 2)
        let j = Journal(units: (0..<6).map { PlannedUnit(id: UInt64($0), kind: .files) })
        p.start(job: "j", source: "a", destination: "b", openWork: 6, planned: true)
        Self.fill(&p, j)
        p.drain("b1")
        let first = p.assign(now: 0)
        #expect(first.allSatisfy { $0.destination == "b2" } && first.count == 2)
        // b2 dies: its units are ready again at once, and with b1 draining they wait.
        let lost = p.agentDown("b2")
        #expect(lost.map(\.key.unit) == [0, 1])
        #expect(p.assign(now: 0).isEmpty)
        p.agentUp("b3", site: "b", bound: 2)
        #expect(p.assign(now: 0).map { "\($0.unit.id)→\($0.destination)" } == ["0→b3", "1→b3"])
    }

    @Test func refillsComeInPagesAndStopAtTheEnd() {
        var params = SchedulingPolicy.Parameters()
        params.page = 4
        params.lowWater = 2
        var p = SchedulingPolicy(parameters: params)
        p.agentUp("a1", site: "a", bound: 100)
        p.agentUp("b1", site: "b", bound: 100)
        let j = Journal(units: (0..<10).map { PlannedUnit(id: UInt64($0), kind: .files) })
        p.start(job: "j", source: "a", destination: "b", openWork: 10, planned: true)
        var assigned: [UInt64] = []
        for _ in 0..<5 {
            let refills = p.refills()
            #expect(refills.count <= 1 && refills.allSatisfy { $0.limit == 4 })
            #expect(p.refills().isEmpty)  // asked once until answered
            for r in refills { p.loaded(r, units: j.page(r)) }
            assigned += p.assign(now: 0).map(\.unit.id)
        }
        #expect(assigned == Array(0..<10))
    }

    /// A job whose units list many files each reads pages of fewer units, about `pageFiles`
    /// files a page (the journal ends such a page early), and such a page is not taken for the
    /// job's end: every unit is assigned. The window holds its units' file lists. Before, a job
    /// of small files held 1,536 units of a thousand files each (534 MB at 1.2 million files;
    /// h2 of session 49).
    @Test func pagesOfUnitsWithManyFilesHoldFewerUnits() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 100)
        p.agentUp("b1", site: "b", bound: 100)
        let j = Journal(units: (0..<3000).map { PlannedUnit(id: UInt64($0), kind: .files, files: 1000) })
        p.start(job: "j", source: "a", destination: "b", openWork: 3000, planned: true)
        var assigned = 0, most = 0
        for _ in 0..<200 where assigned < 3000 {
            for r in p.refills() {
                #expect(r.files == 65_536)
                let page = j.page(r)
                most = max(most, page.count)
                p.loaded(r, units: page)
            }
            for a in p.assign(now: 0) {
                p.ended(a.key)
                assigned += 1
            }
        }
        #expect(assigned == 3000 && most == 66, "\(assigned) units assigned, pages of up to \(most)")
    }

    @Test func aPageReadForAnEarlierRunOfTheJobIsDropped() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 10)
        p.agentUp("b1", site: "b", bound: 10)
        let j = Journal(units: [PlannedUnit(id: 0, kind: .files), PlannedUnit(id: 1, kind: .files)])
        p.start(job: "j", source: "a", destination: "b", openWork: 2, planned: true)
        let old = p.refills()
        // The job fails and is resumed before the page comes back.
        p.end(job: "j")
        p.start(job: "j", source: "a", destination: "b", openWork: 2, planned: true)
        let new = p.refills()
        for r in old + new { p.loaded(r, units: j.page(r)) }
        // Each unit once, though both pages held them.
        let a = p.assign(now: 0)
        #expect(a.map(\.unit.id) == [0, 1])
        for x in a { p.ended(x.key) }
        #expect(p.load(of: "a1") == 0 && p.load(of: "b1") == 0)
    }

    @Test func unitsPlannedWhileAPageIsReadAreReadNext() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 10)
        p.agentUp("b1", site: "b", bound: 10)
        var j = Journal(units: [PlannedUnit(id: 0, kind: .files)])
        p.start(job: "j", source: "a", destination: "b", openWork: 0, planned: false)
        p.planned(job: "j", workUnits: 1, final: false)
        let first = p.refills()
        // The scan's next page is planned before the first page read comes back short.
        j.units.append(PlannedUnit(id: 1, kind: .files))
        p.planned(job: "j", workUnits: 1, final: true)
        for r in first { p.loaded(r, units: [PlannedUnit(id: 0, kind: .files)]) }
        Self.fill(&p, j)
        #expect(p.assign(now: 0).map(\.unit.id) == [0, 1])
    }
}

extension SchedulingPolicyTests {
    /// A page of large files' ranges spreads over one file per destination agent (each file's
    /// ranges stay with one agent), at least a few, at most a page.
    @Test func pagesSpreadOverAsManyFilesAsTheDestinationHasAgents() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 8)
        for i in 0..<6 { p.agentUp("b\(i)", site: "b", bound: 8) }
        p.start(job: "j", source: "a", destination: "b", openWork: 0, planned: false)
        #expect(p.refills().map(\.spread) == [6])
        var small = SchedulingPolicy()
        small.agentUp("a1", site: "a", bound: 8)
        small.agentUp("b1", site: "b", bound: 8)
        small.start(job: "j", source: "a", destination: "b", openWork: 0, planned: false)
        #expect(small.refills().map(\.spread) == [SchedulingPolicy.Refill.minimumSpread])
        var params = SchedulingPolicy.Parameters()
        params.page = 3
        var many = SchedulingPolicy(parameters: params)
        for i in 0..<10 { many.agentUp("b\(i)", site: "b", bound: 8) }
        many.start(job: "j", source: "a", destination: "b", openWork: 0, planned: false)
        #expect(many.refills().map(\.spread) == [3])
    }

    /// A job under a cap holds no more units than its cap needs (`unitsFor(cap:)`): capped at
    /// 1 MiB/s, two; the job beside it takes every other slot as its units end. Before, the capped
    /// job's long units took a slot at each of its turns and kept it, until it held nearly all of
    /// them. Its cap lifted, it takes its turns again.
    @Test func aCappedJobHoldsOnlyTheUnitsItsCapNeeds() {
        var p = SchedulingPolicy()
        p.agentUp("a1", site: "a", bound: 4)
        p.agentUp("b1", site: "b", bound: 4)
        #expect(p.unitsFor(cap: nil) == nil && p.unitsFor(cap: 1_048_576) == 2 && p.unitsFor(cap: 100 * 1_048_576) == 13)
        let slow = Journal(units: (1...20).map { PlannedUnit(id: UInt64($0), kind: .files) })
        var fast = Journal(units: (1...20).map { PlannedUnit(id: UInt64($0), kind: .files) })
        func fill() { for r in p.refills() { p.loaded(r, units: (r.job == "slow" ? slow : fast).page(r)) } }
        p.start(job: "slow", source: "a", destination: "b", openWork: 0, planned: false)
        p.planned(job: "slow", workUnits: 20, final: true)
        p.limitUnits(job: "slow", to: p.unitsFor(cap: 1_048_576))
        p.start(job: "fast", source: "a", destination: "b", openWork: 0, planned: false)
        p.planned(job: "fast", workUnits: 20, final: true)
        fill()
        var held = p.assign(now: 0)
        #expect(held.filter { $0.key.job == "slow" }.count == 2 && held.count == 4, "\(held.map(\.key))")
        // One of the fast job's units ends, and the freed slot is handed out; the slow job's held.
        func endAFastUnit() -> Int {
            if let a = held.first(where: { $0.key.job == "fast" }) {
                held.removeAll { $0.key == a.key }
                Self.finish(&p, &fast, a)
                fill()
                held += p.assign(now: 0)
            }
            return held.filter { $0.key.job == "slow" }.count
        }
        // The fast job's units end one by one: each freed slot goes to it, never to the slow one.
        for _ in 0..<8 { #expect(endAFastUnit() == 2 && held.count == 4, "\(held.map(\.key))") }
        // Its cap lifted: the next freed slots may go to it.
        p.limitUnits(job: "slow", to: nil)
        let slowHeld = (0..<3).map { _ in endAFastUnit() }.last ?? 0
        #expect(slowHeld > 2, "\(held.map(\.key))")
    }
}
