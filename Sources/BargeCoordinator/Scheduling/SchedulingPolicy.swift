import BargeWire
import DequeModule
import HeapModule

/// A job's unit as a key.
public struct UnitKey: Hashable, Sendable, CustomStringConvertible {
    public let job: String
    public let unit: UInt64

    public init(job: String, unit: UInt64) {
        self.job = job
        self.unit = unit
    }

    public var description: String { "unit \(unit) of job \(job)" }
}

/// What the policy needs to know of a unit: its id, kind and what it waits for.
public struct PlannedUnit: Hashable, Sendable {
    public var id: UInt64
    public var kind: UnitKind
    /// A `range` unit's file: the id of the `finish` unit that waits for it.
    public var finish: UInt64?
    /// A `directories` unit's depth (path components); deeper ones go first.
    public var depth: Int
    /// A `finish` unit's ranges not done when it was read.
    public var waitsFor: Int
    /// The files it lists (what its row holds in memory while it waits in the window).
    public var files: Int

    public init(id: UInt64, kind: UnitKind, finish: UInt64? = nil, depth: Int = 0, waitsFor: Int = 0, files: Int = 1) {
        self.id = id
        self.kind = kind
        self.finish = finish
        self.depth = depth
        self.waitsFor = waitsFor
        self.files = files
    }
}

/// The scheduler's decisions, as a pure value: which pending unit goes to which lane, when, and
/// what waits for what. The `Scheduler` actor feeds it events (units read from the journal,
/// agents coming and going, units done or failed) and carries out what it returns. No SQL, no
/// clock but the time it is given, no I/O.
///
/// Bounded memory and constant work per event:
/// - Each running job keeps a **window** of ready units read from the journal in pages
///   (`refills`); the journal holds the rest.
/// - **Dependencies are counters.** A `finish` unit waits until its file's open ranges reach
///   zero: it is read with the count the journal holds, and each range done after that takes one
///   off. A job's `directories` units wait for its count of open
///   other units to reach zero after planning ended; they then go deepest first, one depth at a
///   time (a directory's mtime is set once everything below it is in place).
/// - **Lanes** come from `LaneTable` in O(log agents); a unit whose file is pinned to a full
///   destination waits in that agent's list until it has room, without blocking the job.
/// - **Fairness:** running jobs take turns, one unit each per round, and assignment stops as soon
///   as no job can place a unit.
/// - **Retries** wait out their backoff in a heap ordered by time.
public struct SchedulingPolicy: Sendable {
    public struct Assignment: Hashable, Sendable {
        public var key: UnitKey
        public var unit: PlannedUnit
        public var source: String
        public var destination: String
    }

    /// A page the policy wants read from the journal.
    public struct Refill: Hashable, Sendable {
        public enum Kind: Hashable, Sendable {
            /// Pending units other than directories, with ids above `after`.
            case work(after: UInt64?)
            /// Pending directories units after (depth, id) in deepest-first order.
            case directories(after: DirectoryCursor?)
        }
        public var job: String
        public var kind: Kind
        public var limit: Int
        /// Files the page may list at most, about: the journal ends a page of work early once its
        /// units list this many (at least one unit), and such a page is not the end.
        public var files: Int
        /// Large files whose ranges the page may take from at once: each file's ranges go to one
        /// destination agent (its partial copy), so a page spread over fewer files than the
        /// site has agents leaves the others idle.
        public var spread: Int
        /// Which run of the job asked (a job that ends and is resumed starts a new one): a page
        /// read for an earlier run is dropped.
        public var run: Int

        public static let minimumSpread = 4

        public init(job: String, kind: Kind, limit: Int, files: Int = .max, spread: Int = Refill.minimumSpread, run: Int = 0) {
            self.job = job
            self.kind = kind
            self.limit = limit
            self.files = files
            self.spread = spread
            self.run = run
        }
    }

    public struct DirectoryCursor: Hashable, Sendable {
        public var depth: Int
        public var id: UInt64

        public init(depth: Int, id: UInt64) {
            self.depth = depth
            self.id = id
        }
    }

    public struct Parameters: Sendable {
        /// Units read per page. A job gets at most one page per commit (it is read in the
        /// commit's transaction), so the page bounds how many units a commit can hand out: 512
        /// made 17.8–18.5k decisions/s with 1,000 agents, 1,024 made 21.3–25.2k (`bench scale`).
        public var page: Int = 1024
        /// A window shorter than this asks for the next page; half a page, so the next one comes
        /// before the window runs dry (the page arrives a commit or two later).
        public var lowWater: Int = 512
        /// Files a job's page lists at most, about (`Refill.files`): a page of units of a
        /// thousand small files each is fewer units. The window holds its units' file lists, and
        /// 1,536 such units, 1.5 million files, took 534 MB of the coordinator's memory at 1.2
        /// million files (h2 of session 49).
        public var pageFiles: Int = 65_536
        /// After a restart, how long a large file waits for the destination agent that holds its
        /// partial copy to register again (agents reconnect within a second or two) before it
        /// goes to another agent, which means sending the whole file again.
        public var formerDestinationGrace: Double = 10
        /// What one unit carries at least, for a job under a cap: such a job holds no more units
        /// at once than its highest cap needs at this rate (`unitsFor(cap:)`). A unit of any kind
        /// runs several pipelined streams, and carries more than this on any path (bench-link.sh),
        /// so the cap, not the count, still sets the job's pace.
        public var cappedRatePerUnit: Double = 8 * 1_048_576
        public init() {}
    }

    struct JobQueue: Sendable {
        let source: String
        let destination: String
        let run: Int
        var ready: Deque<PlannedUnit> = []
        var cursor: UInt64?
        var exhausted = false
        var loading = false
        /// Units were planned after the page being read was asked for: a short page is not the end.
        var plannedSinceAsked = false
        /// The scan has ended and every unit is in the journal.
        var planned: Bool
        /// Units other than directories that are not done.
        var openWork: Int
        var openRanges: [UInt64: Int] = [:]
        var waitingFinish: [UInt64: PlannedUnit] = [:]
        /// finish id → the destination agent holding that file's partial copy.
        var pins: [UInt64: String] = [:]
        /// finish id → the destination agent that wrote ranges of that file before this
        /// coordinator started (the journal's), for files with no pin: the file goes back there
        /// while that agent is up. Unlike a pin it never parks a unit: an agent that has not
        /// registered since may never come back.
        var formerPins: [UInt64: String] = [:]
        var pinWait: [String: Deque<PlannedUnit>] = [:]
        var directories: Deque<PlannedUnit> = []
        var directoryCursor: DirectoryCursor?
        var directoriesExhausted = false
        var directoriesLoading = false
        /// Directories units held, by depth.
        var directoriesHeld: [Int: Int] = [:]
        /// Units done (a report for a unit not held) that may still sit in the window.
        var doneLately: Set<UInt64> = []
        /// Units other than directories held by lanes: directories wait until none runs (a unit
        /// done by an earlier assignment's report may still run again under its current one).
        var heldWork = 0
        /// At most this many units other than directories held at once (`limitUnits`): a job
        /// whose cap needs few.
        var heldLimit = Int.max

        var inDirectoryPhase: Bool { planned && openWork == 0 && heldWork == 0 }
    }

    private struct Retry: Comparable, Sendable {
        var at: Double
        var key: UnitKey
        static func < (a: Retry, b: Retry) -> Bool { (a.at, a.key.job, a.key.unit) < (b.at, b.key.job, b.key.unit) }
    }

    public var parameters: Parameters
    private(set) var lanes = LaneTable()
    private(set) var jobs: [String: JobQueue] = [:]
    private var order: [String] = []
    private var turn = 0
    private var runs = 0
    private(set) var held: [UnitKey: (unit: PlannedUnit, source: String, destination: String)] = [:]
    private var retries = Heap<Retry>()
    private var retrying: [UnitKey: PlannedUnit] = [:]
    /// Until when (after a restart) a file waits for its former destination agent; 0: no wait.
    private var formerGraceUntil: Double = 0
    private var now: Double = 0

    public init(parameters: Parameters = Parameters()) {
        self.parameters = parameters
    }

    // MARK: Agents

    /// An agent registered (again): units parked for it while it was away, or full, may go now.
    /// A destination agent that restarts within the agent timeout comes back with the partial
    /// copies pinned to it; the ranges of those files that failed while it was away were parked
    /// for it (`pinWait`), and nothing else would have woken them: the job hung.
    public mutating func agentUp(_ name: String, site: String, bound: Int) {
        lanes.up(name, site: site, bound: bound)
        if lanes.hasRoom(name) { unpark(for: name) }
    }

    /// The units parked for destination `name` go back to their jobs' ready queues, in order.
    private mutating func unpark(for name: String) {
        for job in order where jobs[job]?.pinWait[name] != nil {
            let waiting = jobs[job]!.pinWait.removeValue(forKey: name)!
            for u in waiting.reversed() { jobs[job]!.ready.prepend(u) }
        }
    }
    public mutating func drain(_ name: String) { lanes.drain(name) }
    /// Whether `name` is draining (`barge drain`): it is given nothing new.
    public func isDraining(_ name: String) -> Bool { lanes.isDraining(name) }
    /// Its connection dropped: no new work until it registers again; it keeps what it holds.
    public mutating func disconnected(_ name: String) { lanes.down(name) }
    public func hasAgents(at site: String) -> Bool { lanes.hasAgents(at: site) }
    public func load(of name: String) -> Int { lanes.load(of: name) }
    /// The least-loaded agent of a site that takes work, without charging it.
    public mutating func leastLoaded(at site: String) -> String? { lanes.least(at: site) }
    /// An agent of the site that is up and not draining, even if it has no room for units.
    public mutating func anyAgent(at site: String) -> String? { lanes.any(at: site) }

    /// An agent went down: the units it held are ready again at once (the work is not the unit's
    /// fault), and files pinned to it may go elsewhere. Returns those units with their sources.
    public mutating func agentDown(_ name: String) -> [(key: UnitKey, source: String)] {
        lanes.down(name)
        let lost = held.filter { $0.value.source == name || $0.value.destination == name }
        for (key, h) in lost.sorted(by: { ($0.key.job, $0.key.unit) > ($1.key.job, $1.key.unit) }) {
            release(key)
            jobs[key.job]?.requeue(h.unit)
        }
        for job in jobs.keys {
            jobs[job]!.pins = jobs[job]!.pins.filter { $0.value != name }
            jobs[job]!.formerPins = jobs[job]!.formerPins.filter { $0.value != name }
        }
        unpark(for: name)
        return lost.map { ($0.key, $0.value.source) }.sorted { ($0.key.job, $0.key.unit) < ($1.key.job, $1.key.unit) }
    }

    /// The units held with `name` as their source agent.
    public func units(heldBy name: String) -> [UnitKey] {
        held.filter { $0.value.source == name }.map(\.key)
    }

    /// A held unit's assignment is lost (its agent came back without it): it is ready again at
    /// once, as if its agent had gone down. Returns its source agent.
    @discardableResult
    public mutating func lost(_ key: UnitKey) -> String? {
        guard let h = held[key] else { return nil }
        release(key)
        jobs[key.job]?.requeue(h.unit)
        return h.source
    }

    // MARK: Jobs

    /// A job starts running (planning has begun, or the coordinator restarted with it running).
    /// `openWork`: its units other than directories that are not done.
    public mutating func start(job: String, source: String, destination: String, openWork: Int, planned: Bool) {
        guard jobs[job] == nil else { return }
        runs += 1
        jobs[job] = JobQueue(source: source, destination: destination, run: runs, planned: planned, openWork: openWork)
        order.append(job)
    }

    /// More units are in the journal (a scan page was planned); `final` when the scan has ended.
    public mutating func planned(job: String, workUnits: Int, final: Bool) {
        guard jobs[job] != nil else { return }
        jobs[job]!.openWork += workUnits
        if workUnits > 0 {
            jobs[job]!.exhausted = false
            jobs[job]!.plannedSinceAsked = true
        }
        if final { jobs[job]!.planned = true }
    }

    /// The job ended (succeeded, failed, cancelled): its held units are forgotten. Returns them.
    @discardableResult
    public mutating func end(job: String) -> [UnitKey] {
        guard jobs.removeValue(forKey: job) != nil else { return [] }
        order.removeAll { $0 == job }
        let keys = held.keys.filter { $0.job == job }
        for key in keys { release(key) }
        for key in retrying.keys where key.job == job { retrying.removeValue(forKey: key) }
        return keys.sorted { $0.unit < $1.unit }
    }

    /// A job under a cap holds at most `limit` units other than directories at once (nil: no
    /// limit). Its units last as long as the cap makes them, so, holding as many as the agents
    /// took, a job capped at 1 MiB/s came to hold nearly every unit slot of its agents as the
    /// others' units ended, and the jobs beside it waited behind it.
    public mutating func limitUnits(job: String, to limit: Int?) {
        guard jobs[job] != nil else { return }
        jobs[job]!.heldLimit = max(1, limit ?? .max)
    }

    /// The units a job under a cap of at most `cap` bytes a second needs at once; nil for none.
    /// Two at least: one unit's start and end (its have query, its files' finish) then overlap
    /// the other's sending (with one, 2,000 small files capped at 8 MiB/s made 7.0 MiB/s).
    public func unitsFor(cap: Double?) -> Int? {
        guard let cap, cap.isFinite, cap > 0 else { return nil }
        return max(2, Int((cap / parameters.cappedRatePerUnit).rounded(.up)))
    }

    public var runningJobs: [String] { order }
    public func isRunning(_ job: String) -> Bool { jobs[job] != nil }

    // MARK: Pages from the journal

    /// The pages to read now. Each is asked for once, until `loaded` answers it.
    public mutating func refills() -> [Refill] {
        var out: [Refill] = []
        for job in order {
            guard var q = jobs[job] else { continue }
            let parked = q.pinWait.values.reduce(0) { $0 + $1.count }
            if !q.loading && !q.exhausted && q.ready.count < parameters.lowWater && parked < parameters.page {
                q.loading = true
                q.plannedSinceAsked = false
                // One file per destination agent (at least a few, so that a page of one agent
                // still alternates between files).
                let spread = min(parameters.page, max(Refill.minimumSpread, lanes.agentsUp(at: q.destination)))
                out.append(Refill(job: job, kind: .work(after: q.cursor), limit: parameters.page, files: parameters.pageFiles, spread: spread, run: q.run))
            }
            if q.inDirectoryPhase && !q.directoriesLoading && !q.directoriesExhausted && q.directories.count < parameters.lowWater {
                q.directoriesLoading = true
                out.append(Refill(job: job, kind: .directories(after: q.directoryCursor), limit: parameters.page, run: q.run))
            }
            jobs[job] = q
        }
        return out
    }

    /// Where ranges of large files went before this coordinator started (the journal's, by
    /// finish unit): their other ranges and finish go to the same agent while it is up, as a pin
    /// would send them. A file already pinned keeps its pin.
    public mutating func formerDestinations(_ found: [UnitKey: String]) {
        for (key, agent) in found where jobs[key.job] != nil {
            guard jobs[key.job]!.pins[key.unit] == nil else { continue }
            jobs[key.job]!.formerPins[key.unit] = agent
        }
    }

    /// A page read for `refill`: pending units in its order. Fewer than asked means the end.
    public mutating func loaded(_ refill: Refill, units: [PlannedUnit]) {
        guard jobs[refill.job]?.run == refill.run, var q = jobs.removeValue(forKey: refill.job) else { return }
        switch refill.kind {
        case .work:
            q.loading = false
            for u in units where held[UnitKey(job: refill.job, unit: u.id)] == nil && retrying[UnitKey(job: refill.job, unit: u.id)] == nil {
                if q.doneLately.remove(u.id) != nil { continue }
                if u.kind == .finish && u.waitsFor > 0 { q.openRanges[u.id] = u.waitsFor }
                q.enqueue(u)
            }
            if let last = units.last { q.cursor = max(q.cursor ?? 0, last.id) }
            // A page the journal ended early for its files is not the end either.
            if units.count < refill.limit && units.reduce(0, { $0 + $1.files }) < refill.files && !q.plannedSinceAsked { q.exhausted = true }
        case .directories:
            q.directoriesLoading = false
            for u in units where held[UnitKey(job: refill.job, unit: u.id)] == nil && retrying[UnitKey(job: refill.job, unit: u.id)] == nil {
                if q.doneLately.remove(u.id) != nil { continue }
                q.directories.append(u)
            }
            if let last = units.last { q.directoryCursor = DirectoryCursor(depth: last.depth, id: last.id) }
            if units.count < refill.limit { q.directoriesExhausted = true }
        }
        jobs[refill.job] = q
    }

    // MARK: Units

    /// A unit's report came (done, whether first or again): it no longer holds its lane.
    public mutating func ended(_ key: UnitKey) {
        release(key)
        retrying.removeValue(forKey: key)
    }

    /// A unit is done for the first time (its report is journaled): what waited for it may go.
    /// `wasHeld` false: it was done by a lane the policy no longer tracked (a report from before
    /// a restart), and may still sit in the window.
    public mutating func done(_ key: UnitKey, unit: PlannedUnit, wasHeld: Bool) {
        guard var q = jobs.removeValue(forKey: key.job) else { return }
        let stillHeld = held[key] != nil || retrying[key] != nil
        if !wasHeld, !stillHeld, let cursor = q.cursor, unit.id <= cursor { q.doneLately.insert(unit.id) }
        if !wasHeld, !stillHeld, unit.kind == .directories, let c = q.directoryCursor, (unit.depth, unit.id) >= (c.depth, c.id) {
            q.doneLately.insert(unit.id)
        }
        switch unit.kind {
        case .directories:
            break
        case .range:
            q.openWork -= 1
            // A finish not read yet will read its count from the journal.
            if let f = unit.finish, let left = q.openRanges[f] {
                if left <= 1 {
                    q.openRanges.removeValue(forKey: f)
                    if let finish = q.waitingFinish.removeValue(forKey: f) { q.ready.prepend(finish) }
                } else {
                    q.openRanges[f] = left - 1
                }
            }
        case .finish:
            q.openWork -= 1
            q.pins.removeValue(forKey: unit.id)
            q.formerPins.removeValue(forKey: unit.id)
        case .files:
            q.openWork -= 1
        }
        jobs[key.job] = q
    }

    public func isRetrying(_ key: UnitKey) -> Bool { retrying[key] != nil }

    /// A held unit's lane failed. With `retryAt` it is handed out again from then on; without,
    /// it is only forgotten (its job is failing).
    public mutating func failed(_ key: UnitKey, retryAt: Double?) {
        guard let h = held[key] else { return }
        release(key)
        if let retryAt, jobs[key.job] != nil {
            retrying[key] = h.unit
            retries.insert(Retry(at: retryAt, key: key))
        }
    }

    /// A file's ranges go again (its partial copy was lost with its agent): they are ready now, and
    /// its finish waits for them once more.
    public mutating func resend(job: String, finish: UInt64, ranges: [PlannedUnit]) {
        guard !ranges.isEmpty, var q = jobs.removeValue(forKey: job) else { return }
        q.pins.removeValue(forKey: finish)
        q.formerPins.removeValue(forKey: finish)
        q.openWork += ranges.count
        q.openRanges[finish, default: 0] += ranges.count
        if q.ready.contains(where: { $0.id == finish }) {
            q.ready.removeAll { $0.id == finish }
            q.waitingFinish[finish] = PlannedUnit(id: finish, kind: .finish)
        }
        for r in ranges.reversed() { q.ready.prepend(r) }
        jobs[job] = q
    }

    public func lane(of key: UnitKey) -> (source: String, destination: String)? {
        held[key].map { ($0.source, $0.destination) }
    }

    public var heldCount: Int { held.count }

    /// A job's queue in one line, for logs and tests.
    public func describe(_ job: String) -> String {
        guard let q = jobs[job] else { return "\(job): not running" }
        // At most the first ten of each list: a job's window holds thousands of units.
        func few<S: Sequence>(_ ids: S) -> String where S.Element == UInt64 {
            let all = Array(ids)
            return all.count <= 10 ? "\(all)" : "\(Array(all.prefix(10))) and \(all.count - 10) more"
        }
        return "\(job) run \(q.run): ready \(few(q.ready.map(\.id))), waiting \(few(q.waitingFinish.keys.sorted())), open ranges \(q.openRanges.count) files, "
            + "open work \(q.openWork), held work \(q.heldWork), planned \(q.planned), cursor \(q.cursor.map(String.init) ?? "-"), "
            + "exhausted \(q.exhausted), loading \(q.loading), directories \(few(q.directories.map(\.id))) loading \(q.directoriesLoading), "
            + "parked \(q.pinWait.values.reduce(0) { $0 + $1.count }), "
            + "retrying \(few(retrying.keys.filter { $0.job == job }.map(\.unit).sorted())), held \(few(held.keys.filter { $0.job == job }.map(\.unit).sorted()))"
    }

    /// The next time a retry becomes due, if any waits.
    public var nextRetry: Double? { retries.min?.at }
    /// When `assign` has something to do that no event will bring: a retry due, or the end of
    /// the wait for former destination agents.
    public var nextWake: Double? {
        guard formerGraceUntil > 0 else { return nextRetry }
        return min(nextRetry ?? .infinity, formerGraceUntil)
    }

    /// The coordinator started again at `now`: files whose ranges went to an agent before (the
    /// journal's `formerDestinations`) wait a while for it to register again.
    public mutating func startedAgain(at now: Double) {
        formerGraceUntil = now + parameters.formerDestinationGrace
    }

    // MARK: Assignment

    /// Hands out ready units to lanes with room, the running jobs taking turns, until none can
    /// place one.
    public mutating func assign(now: Double) -> [Assignment] {
        self.now = now
        if formerGraceUntil > 0, now >= formerGraceUntil {
            // The wait is over: what still waits for an agent that never came back goes elsewhere.
            formerGraceUntil = 0
            let away = Set(jobs.values.flatMap(\.pinWait.keys)).filter { !lanes.isUp($0) }
            for name in away.sorted() { unpark(for: name) }
        }
        while let top = retries.min, top.at <= now {
            retries.removeMin()
            guard let unit = retrying.removeValue(forKey: top.key), jobs[top.key.job] != nil else { continue }
            jobs[top.key.job]!.requeue(unit)
        }
        var out: [Assignment] = []
        guard !order.isEmpty else { return out }
        turn = (turn + 1) % order.count
        var round = Array(order[turn...] + order[..<turn])
        while !round.isEmpty {
            var again: [String] = []
            for job in round {
                if let a = assignOne(job) {
                    out.append(a)
                    again.append(job)
                }
            }
            round = again
        }
        return out
    }

    private mutating func assignOne(_ job: String) -> Assignment? {
        // Taken out while it changes, here and wherever a queue's collections change: a copy left
        // in `jobs` would make the first change to its ready deque (or pins, or counts) copy it
        // whole, O(window) per assignment.
        guard var q = jobs.removeValue(forKey: job) else { return nil }
        defer { jobs[job] = q }
        while let front = q.directories.first, held[UnitKey(job: job, unit: front.id)] != nil { q.directories.removeFirst() }
        if q.inDirectoryPhase, let front = q.directories.first {
            // One depth at a time: a shallower unit waits until every deeper one is done.
            if let deepest = q.directoriesHeld.keys.max(), deepest > front.depth { return nil }
            // A job's last steps (its directories' modes and times: a little metadata) go one at
            // a time even to lanes that are full. Waiting behind other jobs' data units kept a
            // job whose every byte had arrived "running" for 4 s (a black-box review, h6).
            guard let lane = pickLane(q.source, q.destination, pinned: nil)
                    ?? (q.directoriesHeld.isEmpty ? anyLane(q.source, q.destination) : nil) else { return nil }
            q.directories.removeFirst()
            q.directoriesHeld[front.depth, default: 0] += 1
            return hold(job, front, lane)
        }
        guard lanes.least(at: q.source) != nil, q.heldWork < q.heldLimit else { return nil }
        while let u = q.ready.first {
            if q.doneLately.remove(u.id) != nil || held[UnitKey(job: job, unit: u.id)] != nil {
                q.ready.removeFirst()
                continue
            }
            let file = u.kind == .range ? u.finish : (u.kind == .finish ? u.id : nil)
            var pinned = file.flatMap { q.pins[$0] }
            if pinned == nil, let file, let former = q.formerPins[file] {
                if lanes.isUp(former) {
                    pinned = former
                } else if now < formerGraceUntil {
                    // Not registered again yet: wait for it (`agentUp` unparks), for a while.
                    q.ready.removeFirst()
                    q.pinWait[former, default: []].append(u)
                    continue
                } else {
                    q.formerPins.removeValue(forKey: file)
                }
            }
            if let pinned, !lanes.hasRoom(pinned) {
                q.ready.removeFirst()
                q.pinWait[pinned, default: []].append(u)
                continue
            }
            guard let lane = pickLane(q.source, q.destination, pinned: pinned) else { return nil }
            q.ready.removeFirst()
            if let file {
                q.pins[file] = lane.destination
                q.formerPins.removeValue(forKey: file)
            }
            q.heldWork += 1
            return hold(job, u, lane)
        }
        return nil
    }

    private mutating func pickLane(_ sourceSite: String, _ destinationSite: String, pinned: String?) -> (source: String, destination: String)? {
        guard let destination = pinned ?? lanes.least(at: destinationSite) else { return nil }
        lanes.charge(destination)
        defer { lanes.release(destination) }
        guard let source = lanes.least(at: sourceSite) else { return nil }
        return (source, destination)
    }

    /// A lane of up agents whatever their load (`assignOne`'s directories).
    private mutating func anyLane(_ sourceSite: String, _ destinationSite: String) -> (source: String, destination: String)? {
        guard let destination = lanes.any(at: destinationSite), let source = lanes.any(at: sourceSite) else { return nil }
        return (source, destination)
    }

    private mutating func hold(_ job: String, _ unit: PlannedUnit, _ lane: (source: String, destination: String)) -> Assignment {
        let key = UnitKey(job: job, unit: unit.id)
        held[key] = (unit, lane.source, lane.destination)
        lanes.charge(lane.source)
        if lane.destination != lane.source { lanes.charge(lane.destination) }
        return Assignment(key: key, unit: unit, source: lane.source, destination: lane.destination)
    }

    private mutating func release(_ key: UnitKey) {
        guard let h = held.removeValue(forKey: key) else { return }
        lanes.release(h.source)
        if h.destination != h.source { lanes.release(h.destination) }
        if var q = jobs.removeValue(forKey: key.job) {
            if h.unit.kind == .directories {
                let left = (q.directoriesHeld[h.unit.depth] ?? 1) - 1
                q.directoriesHeld[h.unit.depth] = left > 0 ? left : nil
            } else {
                q.heldWork -= 1
            }
            jobs[key.job] = q
        }
        // Units that waited for either agent to have room may go now: an agent's room counts
        // the units it sends and those it receives alike. Only the destination was looked at:
        // a large file pinned to an agent that was full as the source of another job (A to B
        // beside B to A) waited for ever once that work ended (black-box review h1).
        if lanes.hasRoom(h.destination) { unpark(for: h.destination) }
        if h.source != h.destination, lanes.hasRoom(h.source) { unpark(for: h.source) }
    }
}

extension SchedulingPolicy.JobQueue {
    /// A unit read or returned: ready, or (a finish whose ranges are open) waiting.
    mutating func enqueue(_ u: PlannedUnit) {
        if u.kind == .finish, (openRanges[u.id] ?? 0) > 0 {
            waitingFinish[u.id] = u
        } else {
            ready.append(u)
        }
    }

    /// A unit back from a failed lane or a lost agent goes first.
    mutating func requeue(_ u: PlannedUnit) {
        switch u.kind {
        case .directories: directories.prepend(u)
        case .finish where (openRanges[u.id] ?? 0) > 0: waitingFinish[u.id] = u
        default: ready.prepend(u)
        }
    }
}
