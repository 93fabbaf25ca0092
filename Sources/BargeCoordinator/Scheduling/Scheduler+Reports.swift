import BargeWire

/// Reports delivered at least once (protocol version 5).
///
/// Every `task done` and `task failed` is acknowledged once the batch that journals it is
/// durable; an agent sends what was not acknowledged again on its next connection, and a repeat
/// changes nothing (the journal counts a unit's report once per assignment, a stale assignment's
/// report frees no lane). A unit's lease is its agent's: heartbeats renew it, and an agent not
/// heard from for the agent timeout loses every unit it holds (`agentsDown`).
///
/// When an agent connects again its first message is `holding`, the units it runs with their
/// assignments, which is checked against what this coordinator gave it: a unit kept by both
/// sides under the same assignment goes on; one this side gave it and it does not run (the
/// `task assign` was lost with the old connection) is ready again at once; one it runs that is
/// no longer its own under that assignment is dropped with `task drop`.
extension Scheduler {
    /// The units held with `agent` as their source, with the assignment each answers.
    func assignments(heldBy agent: String) -> [UnitKey: UInt32] {
        var out: [UnitKey: UInt32] = [:]
        for key in policy.units(heldBy: agent) { out[key] = currentAssignment(key) }
        return out
    }

    /// The number of a unit's current assignment: this run's boot count in the high 16 bits, the
    /// unit's assignments in the low 16 (never 0, which means none).
    func currentAssignment(_ key: UnitKey) -> UInt32 {
        guard let n = records[key]?.assignments else { return 0 }
        return UInt32(truncatingIfNeeded: boot) << 16 | UInt32(truncatingIfNeeded: n) & 0xFFFF
    }

    /// Queues the acknowledgement of a report; it goes out after the batch that journals it.
    func acknowledge(_ key: AssignmentKey, to agent: String) {
        guard key.assignment != 0, let link = links[agent], link.version >= WireVersion.acks else { return }
        batchSends.append((nil, agent, .reportAck(key)))
    }

    /// A unit no longer held by its lane goes back to pending; the wire bytes its run reported
    /// so far still count.
    func journalRelease(_ key: UnitKey, source: String?, lost: Bool = false) {
        batch.append(lost ? .lost(key) : .release(key, retry: true, attempts: records[key]?.attempts ?? 0))
        if let progress = live.remove(key), progress.wireBytes > 0 {
            batch.append(.wireBytes(job: key.job, Int64(progress.wireBytes)))
            wireJournaled[AssignmentKey(job: key.job, unit: key.unit, assignment: currentAssignment(key))] = progress.wireBytes
        }
        // In the metrics already, from its progress; the next run counts from nothing.
        wireCounted.removeValue(forKey: key)
        noteReleased(key, source: source)
    }

    /// An agent's `holding`, checked against what it held when its connection attached.
    func reconcile(_ holding: Holding, from agent: String) {
        let before = heldAtAttach.removeValue(forKey: agent) ?? [:]
        var runs: [UnitKey: UInt32] = [:]
        for u in holding.units { runs[UnitKey(job: u.job, unit: u.unit)] = u.assignment }
        var requeued = 0
        for (key, assignment) in before.sorted(by: { ($0.key.job, $0.key.unit) < ($1.key.job, $1.key.unit) }) where runs[key] != assignment {
            // Reported meanwhile, or given elsewhere: nothing to do.
            guard policy.lane(of: key)?.source == agent, currentAssignment(key) == assignment else { continue }
            policy.lost(key)
            // The agent never had it: the attempt was the connection's, not the unit's.
            if var record = records[key] {
                record.attempts = max(0, record.attempts - 1)
                records[key] = record
            }
            journalRelease(key, source: agent, lost: true)
            requeued += 1
        }
        var dropped = 0
        for u in holding.units {
            let key = UnitKey(job: u.job, unit: u.unit)
            if policy.lane(of: key)?.source == agent && currentAssignment(key) == u.assignment { continue }
            links[agent]?.sink.yield(.taskDrop(u))
            dropped += 1
        }
        if requeued > 0 || dropped > 0 {
            logger.notice("agent \(agent) is back holding \(holding.units.count) units: \(requeued) it no longer had are pending again, \(dropped) no longer its own are dropped")
            metrics.retried(requeued)
        }
    }
}
