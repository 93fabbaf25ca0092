import BargeWire

/// The quick check of re-syncs, as rsync does by default: each scan page is shown to an agent
/// of the destination site (`compare request`, protocol version 5) before it is planned, and the
/// files it holds with the same size, mtime and mode (links with the same target) are skipped,
/// read at neither side. They count in the job's `skipped_files` and `skipped_bytes`, not in its
/// totals. Agents of one site share its root, so any of them can answer. `submit --checksum`
/// plans every file instead; unchanged chunks then go by reference (dedup).
///
/// Up to `pagesAhead` pages of a scan wait for their answers at once, and are planned in the
/// order they came; the source agent's next page waits (its connection is not read) only while
/// that many do. Before, each page waited for its answer alone: a round trip to the destination
/// per 1,024 entries, during which nothing else from the source agent was read (its reports of
/// units done either): 20,000 small files at 400 ms spent 11-13 s in their scan, and `status`
/// showed 0 bytes while 4,090 files were in place (black-box review h3). Without an agent of
/// version 5 at the destination, or without an answer within `compareTimeout`, a page is
/// planned whole: a re-sync is then slower, never wrong.
///
/// So the agent asked is never one whose connection is not read now: not the scanning agent
/// itself (a job within one site), nor one whose own scan page waits for a quick check (two
/// such jobs asking each other). Its answer would sit unread behind the page until the timeout,
/// with its heartbeats: with one agent on the site, each page took 10 s, and an agent timeout
/// under that marked the agent down and started the scan again, for ever. Without another
/// agent, the page is planned whole at once.
extension Scheduler {
    static let compareTimeout: Duration = .seconds(10)
    /// Pages of one scan that may wait for their quick check at once.
    static let pagesAhead = 8

    /// A scan page in its turn to be planned: its quick check asked, or settled (`unchanged`:
    /// the entries the destination holds unchanged; nil: plan them all).
    final class CheckedPage {
        let reply: ScanReply
        var settled = false
        var unchanged: [Bool]?
        init(_ reply: ScanReply) { self.reply = reply }
    }

    /// A scan page from its source agent: its quick check is asked, the pages settled in order are
    /// planned, and the caller (the agent's connection) waits while `pagesAhead` pages of the
    /// scan wait for their answers.
    func takePage(_ reply: ScanReply) async {
        let page = CheckedPage(reply)
        pagesInCheck[reply.request, default: []].append(page)
        askQuickCheck(page)
        planSettledPages(reply.request)
        while (pagesInCheck[reply.request]?.count ?? 0) >= Self.pagesAhead {
            await withCheckedContinuation { pageWindow[reply.request] = $0 }
        }
    }

    /// Plans the settled pages at the head of scan `request`'s queue, in order, and lets its
    /// source agent's connection be read again once fewer than `pagesAhead` wait.
    func planSettledPages(_ request: UInt64) {
        var planned = false
        while let head = pagesInCheck[request]?.first, head.settled {
            pagesInCheck[request]!.removeFirst()
            do { try scanned(head.reply, unchanged: head.unchanged) } catch { logger.error("planning a scan page of request \(request): \(error)") }
            planned = true
        }
        if pagesInCheck[request]?.isEmpty == true { pagesInCheck.removeValue(forKey: request) }
        if (pagesInCheck[request]?.count ?? 0) < Self.pagesAhead, let waiting = pageWindow.removeValue(forKey: request) { waiting.resume() }
        if planned { schedule() }
    }

    /// Asks the destination which entries of `page` it holds unchanged; settles it at once when
    /// there is nothing to ask, or no one.
    private func askQuickCheck(_ page: CheckedPage) {
        let reply = page.reply
        guard reply.error.isEmpty, !reply.entries.isEmpty, let scan = scans[reply.request],
              reply.entries.contains(where: { $0.kind != .directory }),
              let job = running[scan.job]?.record ?? (try? journal.job(scan.job)), !job.checksum else {
            page.settled = true
            return
        }
        guard let agent = comparer(at: job.destinationSite, busy: scan.agent) else {
            if unchecked.insert(job.id).inserted {
                logger.notice("job \(job.id): no agent of site '\(job.destinationSite)' is free to answer the quick check (the scanning agent cannot be asked while its page waits); pages are planned whole meanwhile, so unchanged files among them are sent again")
            }
            page.settled = true
            return
        }
        waitingForCompare[scan.agent, default: 0] += 1
        let request = nextRequest
        nextRequest += 1
        let entries = reply.entries.map { e -> FileEntry in
            var d = e
            d.path = scan.builder.destination(of: e.path, kind: e.kind)
            return d
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: Self.compareTimeout)
            guard !Task.isCancelled else { return }
            await self?.compared(request, nil)
        }
        compares[request] = Compare(agent: agent, scanAgent: scan.agent, job: job.id, page: page, timer: timer)
        links[agent]?.sink.yield(.compareRequest(CompareRequest(request: request, entries: entries)))
    }

    /// A destination agent that answers compare requests, least loaded first, other than the
    /// scanning one and those whose pages wait for a quick check (their connections may not be
    /// read now).
    /// The one with the fewest quick checks waiting goes first: the pages in flight spread over
    /// the site's agents, so one that hangs (stopped, not yet taken for down) holds fewer of them
    /// for the timeout (after which they are planned whole, and their unchanged files sent again).
    private func comparer(at site: String, busy scanning: String) -> String? {
        func free(_ name: String) -> Bool { name != scanning && waitingForCompare[name] == nil }
        let candidates = links.values.filter { $0.agent.site == site && $0.version >= WireVersion.acks && free($0.agent.name) }.map(\.agent.name)
        guard candidates.count > 1 else { return candidates.first }
        var asked: [String: Int] = [:]
        for c in compares.values { asked[c.agent, default: 0] += 1 }
        return candidates.min { (asked[$0] ?? 0, $0) < (asked[$1] ?? 0, $1) }
    }

    /// A compare request answered (or given up: nil): its page is settled, and the pages settled
    /// at the head of its scan are planned.
    func compared(_ request: UInt64, _ unchanged: [Bool]?) {
        guard let c = compares.removeValue(forKey: request) else { return }
        c.timer.cancel()
        waitingForCompare[c.scanAgent, default: 1] -= 1
        if waitingForCompare[c.scanAgent] == 0 { waitingForCompare.removeValue(forKey: c.scanAgent) }
        if let unchanged, unchanged.count == c.page.reply.entries.count {
            c.page.unchanged = unchanged
        } else {
            logger.warning("job \(c.job): no quick check from \(c.agent) for \(c.page.reply.entries.count) entries; they are planned whole")
        }
        c.page.settled = true
        planSettledPages(c.page.reply.request)
    }

    /// An agent went down: its compare requests are given up.
    func comparesLost(to names: [String]) {
        for (request, waiting) in compares where names.contains(waiting.agent) { compared(request, nil) }
    }
}

/// A quick check waiting for its destination agent.
struct Compare {
    let agent: String
    /// The agent whose scan page it is.
    let scanAgent: String
    let job: String
    let page: Scheduler.CheckedPage
    let timer: Task<Void, Never>
}
