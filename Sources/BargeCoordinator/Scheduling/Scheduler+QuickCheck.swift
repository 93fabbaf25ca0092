import BargeWire

/// The quick check of re-syncs, as rsync does by default: each scan page is shown to an agent
/// of the destination site (`compare request`, protocol version 5) before it is planned, and the
/// files it holds with the same size, mtime and mode (links with the same target) are skipped,
/// read at neither side. They count in the job's `skipped_files` and `skipped_bytes`, not in its
/// totals. Agents of one site share its root, so any of them can answer. `submit --checksum`
/// plans every file instead; unchanged chunks then go by reference (dedup).
///
/// The page waits for the answer, so the source agent's next page waits too (its connection is
/// not read meanwhile). Without an agent of version 5 at the destination, or without an answer
/// within `compareTimeout`, the page is planned whole: a re-sync is then slower, never wrong.
extension Scheduler {
    static let compareTimeout: Duration = .seconds(10)

    /// Which entries of a scan page the destination holds unchanged; nil to plan them all.
    func quickCheck(_ reply: ScanReply) async -> [Bool]? {
        guard reply.error.isEmpty, !reply.entries.isEmpty, let scan = scans[reply.request],
              reply.entries.contains(where: { $0.kind != .directory }),
              let job = running[scan.job]?.record ?? (try? journal.job(scan.job)), !job.checksum,
              let agent = comparer(at: job.destinationSite) else { return nil }
        let request = nextRequest
        nextRequest += 1
        let entries = reply.entries.map { e -> FileEntry in
            var d = e
            d.path = JobPath.join(job.destinationPath, e.path)
            return d
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: Self.compareTimeout)
            await self?.compared(request, nil)
        }
        defer { timer.cancel() }
        // The request goes out once its answer has somewhere to go: an answer that came first
        // would be dropped, and the page would wait for the timeout.
        let sink = links[agent]?.sink
        let unchanged = await withCheckedContinuation { continuation in
            compares[request] = (agent, continuation)
            sink?.yield(.compareRequest(CompareRequest(request: request, entries: entries)))
        }
        guard let unchanged, unchanged.count == entries.count else {
            logger.warning("job \(job.id): no quick check from \(agent) for \(entries.count) entries; they are planned whole")
            return nil
        }
        return unchanged
    }

    /// A destination agent that answers compare requests, least loaded first.
    private func comparer(at site: String) -> String? {
        if let a = policy.anyAgent(at: site), let link = links[a], link.version >= WireVersion.acks { return a }
        return links.values.first { $0.agent.site == site && $0.version >= WireVersion.acks }?.agent.name
    }

    /// A compare request answered (or given up: nil).
    func compared(_ request: UInt64, _ unchanged: [Bool]?) {
        compares.removeValue(forKey: request)?.continuation.resume(returning: unchanged)
    }

    /// An agent went down: its compare requests are given up.
    func comparesLost(to names: [String]) {
        for (request, waiting) in compares where names.contains(waiting.agent) { compared(request, nil) }
    }
}
