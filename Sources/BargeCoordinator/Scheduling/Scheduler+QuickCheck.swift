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
///
/// So the agent asked is never one whose connection is not read now: not the scanning agent
/// itself (a job within one site), nor one whose own scan page waits for a quick check (two
/// such jobs asking each other). Its answer would sit unread behind the page until the timeout,
/// with its heartbeats: with one agent on the site, each page took 10 s, and an agent timeout
/// under that marked the agent down and started the scan again, for ever. Without another
/// agent, the page is planned whole at once.
extension Scheduler {
    static let compareTimeout: Duration = .seconds(10)

    /// Which entries of a scan page the destination holds unchanged; nil to plan them all.
    func quickCheck(_ reply: ScanReply) async -> [Bool]? {
        guard reply.error.isEmpty, !reply.entries.isEmpty, let scan = scans[reply.request],
              reply.entries.contains(where: { $0.kind != .directory }),
              let job = running[scan.job]?.record ?? (try? journal.job(scan.job)), !job.checksum else { return nil }
        guard let agent = comparer(at: job.destinationSite, busy: scan.agent) else {
            if unchecked.insert(job.id).inserted {
                logger.notice("job \(job.id): no agent of site '\(job.destinationSite)' is free to answer the quick check (the scanning agent cannot be asked while its page waits); pages are planned whole meanwhile, so unchanged files among them are sent again")
            }
            return nil
        }
        waitingForCompare[scan.agent, default: 0] += 1
        defer {
            waitingForCompare[scan.agent, default: 1] -= 1
            if waitingForCompare[scan.agent] == 0 { waitingForCompare.removeValue(forKey: scan.agent) }
        }
        let request = nextRequest
        nextRequest += 1
        let entries = reply.entries.map { e -> FileEntry in
            var d = e
            d.path = scan.builder.destination(of: e.path, kind: e.kind)
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

    /// A destination agent that answers compare requests, least loaded first, other than the
    /// scanning one and those whose pages wait for a quick check (their connections are not read
    /// now).
    private func comparer(at site: String, busy scanning: String) -> String? {
        func free(_ name: String) -> Bool { name != scanning && waitingForCompare[name] == nil }
        if let a = policy.anyAgent(at: site), free(a), let link = links[a], link.version >= WireVersion.acks { return a }
        return links.values.filter { $0.agent.site == site && $0.version >= WireVersion.acks && free($0.agent.name) }
            .map(\.agent.name).min()
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
