import ArgumentParser
import BargeCoordinator
import BargeFlow
import BargeWire
import Foundation

/// Follows a job until it reaches a terminal state. On a terminal (stderr), it redraws a block of
/// lines that fits the terminal's width, as `rclone -P` does: totals, rate and ETA, files, one
/// line per lane, the codec mix. On a pipe or a log, it prints one plain line every few seconds.
///
/// A coordinator that stops answering meanwhile (restarted, upgraded, killed) does not end the
/// wait: the job is in its journal and goes on when it is back. The watcher says so once, asks
/// again every `retryEvery`, and gives up only after `patience` without an answer. One that has
/// not answered at all in this run (a wrong URL, `http://` to an HTTPS coordinator, a
/// coordinator that is down) fails at once with the reason, as any other command does.
struct JobWatcher {
    let api: CoordinatorAPI
    let job: String
    var interval: Duration = .milliseconds(500)
    var patience: Duration = Self.defaultPatience
    var retryEvery: Duration = .seconds(1)
    /// The coordinator answered already in this run (the `submit` before a `--wait`): a request
    /// that then gets no answer is worth asking again.
    var answered = false

    /// How long `--wait` and `--watch` keep asking a coordinator that does not answer.
    static let defaultPatience: Duration = .seconds(300)

    /// After how many seconds with no byte or file done a running job's progress says so.
    static let stillAfter = 10

    func follow() async throws -> JobStatus {
        var answered = answered
        let live = isatty(STDERR_FILENO) == 1
        var rate = RateMeter()
        var lastPrinted = Date.distantPast
        var drawn = 0
        var lost: ContinuousClock.Instant? = nil
        var moved: (bytes: Int64, files: Int64, at: ContinuousClock.Instant)? = nil
        while true {
            // A long poll: the coordinator answers at once when the job ends, else after the interval.
            let asked = ContinuousClock.now
            let status: JobStatus
            do {
                status = try JSONDecoder().decode(JobStatus.self, from: try await api.get("/v1/jobs/\(pathComponent(job))?wait=\(interval.seconds)", waiting: interval.seconds))
            } catch let failure as Failure where failure.noAnswer && answered {
                if let since = lost {
                    guard ContinuousClock.now - since < patience else {
                        throw Failure("gave up waiting: no answer from the coordinator for \(Int(patience.seconds)) s (\(failure)); job \(job) is in its journal and goes on when it is back: barge status \(job) --watch")
                    }
                } else {
                    lost = asked
                    FileHandle.standardError.write(Data(((live && drawn > 0 ? "\n" : "") + "barge: no answer from the coordinator (\(failure)); job \(job) goes on when it is back. Asking again every \(Int(retryEvery.seconds)) s for up to \(Int(patience.seconds)) s (Ctrl-C stops the waiting, not the job)\n").utf8))
                    drawn = 0
                }
                try await Task.sleep(for: retryEvery)
                continue
            }
            answered = true
            if let since = lost {
                FileHandle.standardError.write(Data("barge: the coordinator answers again, after \(String(format: "%.1f", (ContinuousClock.now - since).seconds)) s\n".utf8))
                lost = nil
            }
            // Its mean rate over the time it ran (a resumed job's start moves on by the time it stood ended).
            rate.add(bytes: status.bytesDone, at: Date(), startedAt: status.state == .running ? status.startedAt.map { $0 + (status.idleSeconds ?? 0) } : nil)
            // A running job whose figures stand still says for how long: its lanes' last round
            // trip stays on show, and read as if the link were merely slow.
            if moved.map({ status.bytesDone > $0.bytes || status.filesDone != $0.files }) ?? true || status.state != .running {
                moved = (status.bytesDone, status.filesDone, .now)
            }
            let still = moved.map { Int((ContinuousClock.now - $0.at).seconds) } ?? 0
            let note = status.state == .running && status.waiting == nil && still >= Self.stillAfter ? ProgressLine.still(still) : nil
            if live {
                let block = ProgressBlock.render(status, rate: rate.perSecond, width: Terminal.columns(), note: note)
                // Back to the block's first line, then each line cleared and drawn again.
                var out = drawn > 1 ? "\r\u{1B}[\(drawn - 1)A" : "\r"
                out += block.map { "\u{1B}[2K" + $0 }.joined(separator: "\n")
                // A block shorter than the last one clears what is left below it.
                if block.count < drawn { out += "\n\u{1B}[J\u{1B}[1A" }
                FileHandle.standardError.write(Data(out.utf8))
                drawn = block.count
            } else if Date().timeIntervalSince(lastPrinted) >= 5 || status.state.isTerminal {
                FileHandle.standardError.write(Data((ProgressLine.render(status, rate: rate.perSecond) + (note.map { "  " + $0 } ?? "") + "\n").utf8))
                lastPrinted = Date()
            }
            if status.state.isTerminal {
                if live { FileHandle.standardError.write(Data("\n".utf8)) }
                return status
            }
            // A coordinator without long polls answers at once: wait out the rest of the interval.
            let elapsed = ContinuousClock.now - asked
            if elapsed < interval { try await Task.sleep(for: interval - elapsed) }
        }
    }
}

/// Bytes per second over the last few seconds of samples; until they span 0.2 s, the job's mean
/// since it started (the first line of `status --watch` on a running job said 0 B/s).
struct RateMeter {
    private var samples: [(time: Date, bytes: Int64)] = []
    /// When the job started (Unix seconds, the coordinator's clock), while it runs.
    private var startedAt: Double?

    mutating func add(bytes: Int64, at time: Date, startedAt: Double? = nil) {
        self.startedAt = startedAt
        // Bytes of units handed out again (their agent went down) are taken back from the
        // total: the rate starts over rather than going negative.
        if let last = samples.last, bytes < last.bytes { samples.removeAll() }
        samples.append((time, bytes))
        samples.removeAll { time.timeIntervalSince($0.time) > 5 }
    }

    var perSecond: Double {
        guard let first = samples.first, let last = samples.last else { return 0 }
        let dt = last.time.timeIntervalSince(first.time)
        if dt > 0.2 { return Double(last.bytes - first.bytes) / dt }
        // From a second after the start on. The start is the coordinator's clock: one that is
        // off this host's by d seconds makes the mean off as much for a job e seconds old
        // (cluster clocks keep to NTP; the samples take over within 0.2 s anyway).
        guard let started = startedAt, case let elapsed = last.time.timeIntervalSince1970 - started, elapsed >= 1, last.bytes > 0 else { return 0 }
        return Double(last.bytes) / elapsed
    }
}

/// The terminal's width: `COLUMNS`, else the terminal's own, else 80.
enum Terminal {
    static func columns() -> Int {
        if let text = ProcessInfo.processInfo.environment["COLUMNS"], let n = Int(text), n >= 20 { return n }
        var size = winsize()
        if ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col >= 20 { return Int(size.ws_col) }
        return 80
    }
}

/// The block `status --watch` draws on a terminal, every line cut to `width`:
///
///     running   1.20 GiB / 4.00 GiB  30%  57.3 MiB/s  ETA 0:50
///     files     120 / 400  unchanged 12  retries 1  refetched 2
///     lane      a1 → b1  55.1 MiB/s  rtt 1.2 ms  queue 0.3 ms
///     codecs    zstd-1 60% none 40%
enum ProgressBlock {
    static func render(_ s: JobStatus, rate: Double, width: Int, note: String? = nil) -> [String] {
        let units = ByteQuantity.RateUnits(of: s.bwlimit)
        let done = Double(s.bytesDone), total = Double(max(s.bytesTotal, 0))
        let percent = total > 0 ? Int(done / total * 100) : (s.state == .succeeded ? 100 : 0)
        var first = "\(s.state.rawValue.padding(9)) \(ByteQuantity.formatSize(done)) / \(ByteQuantity.formatSize(total))  \(percent)%  \(ByteQuantity.formatRate(rate, in: units))"
        if rate > 0, total > done { first += "  ETA \(ProgressLine.clock(Int((total - done) / rate)))" }
        var files = "files     \(s.filesDone) / \(s.filesTotal)"
        if s.skippedFiles > 0 { files += "  unchanged \(s.skippedFiles)" }
        if s.retries > 0 { files += "  retries \(s.retries)" }
        if s.chunksRefetched > 0 { files += "  refetched \(s.chunksRefetched)" }
        if s.dedupBytes > 0 { files += "  already there \(ByteQuantity.formatSize(Double(s.dedupBytes)))" }
        var lines = [first, files]
        for l in s.lanes.sorted(by: { ($0.source, $0.destination) < ($1.source, $1.destination) }) {
            lines.append("lane      \(l.source) → \(l.destination)  \(ByteQuantity.formatRate(Double(l.sendRate), in: units))  rtt \(ByteQuantity.format(l.rttMs, digits: 1)) ms  queue \(ByteQuantity.format(l.queueingDelayMs, digits: 1)) ms")
        }
        if !s.codecs.isEmpty { lines.append("codecs    " + ProgressLine.mix(s.codecs)) }
        if let waiting = s.waiting { lines.append(waiting) }
        if let note { lines.append(note) }
        return lines.map { cut($0, to: width - 1) }
    }

    /// At most `width` characters (a terminal that wraps a full line would scroll the block).
    static func cut(_ line: String, to width: Int) -> String {
        line.count <= width ? line : String(line.prefix(max(1, width - 1))) + "…"
    }
}

/// `running  1.20 GiB / 4.00 GiB  30%  57.3 MiB/s  ETA 0:06  files 120/400  zstd-1 60% none 40%`:
/// one line every few seconds, where stderr is not a terminal.
enum ProgressLine {
    static func render(_ s: JobStatus, rate: Double) -> String {
        let units = ByteQuantity.RateUnits(of: s.bwlimit)
        let done = Double(s.bytesDone), total = Double(max(s.bytesTotal, 0))
        let percent = total > 0 ? Int(done / total * 100) : (s.state == .succeeded ? 100 : 0)
        var parts = [s.state.rawValue.padding(9),
                     "\(ByteQuantity.formatSize(done)) / \(ByteQuantity.formatSize(total))", "\(percent)%",
                     ByteQuantity.formatRate(rate, in: units)]
        if rate > 0, total > done { parts.append("ETA \(clock(Int((total - done) / rate)))") }
        parts.append("files \(s.filesDone)/\(s.filesTotal)")
        if !s.codecs.isEmpty { parts.append(mix(s.codecs)) }
        if s.chunksRefetched > 0 { parts.append("refetched \(s.chunksRefetched)") }
        if s.dedupBytes > 0 { parts.append("already there \(ByteQuantity.formatSize(Double(s.dedupBytes)))") }
        if s.skippedFiles > 0 { parts.append("unchanged \(s.skippedFiles) files") }
        if s.retries > 0 { parts.append("retries \(s.retries)") }
        if let lane = s.lanes.max(by: { $0.queueingDelayMs < $1.queueingDelayMs }) {
            parts.append("rtt \(ByteQuantity.format(lane.rttMs, digits: 1)) ms (queue \(ByteQuantity.format(lane.queueingDelayMs, digits: 1)))")
        }
        if let waiting = s.waiting { parts.append(waiting) }
        return parts.joined(separator: "  ")
    }

    /// The codec mix by raw bytes, largest first, the tail summed: `zstd-1 60% none 30% other 10%`.
    static func mix(_ codecs: [JobStatus.CodecMix], top: Int = 4) -> String {
        let total = codecs.reduce(0) { $0 + $1.rawBytes }
        guard total > 0 else { return "" }
        func percent(_ bytes: UInt64) -> String { "\(Int((Double(bytes) / Double(total) * 100).rounded()))%" }
        let sorted = codecs.sorted { $0.rawBytes > $1.rawBytes }
        var parts = sorted.prefix(top).map { "\($0.codec) \(percent($0.rawBytes))" }
        let rest = sorted.dropFirst(top).reduce(0) { $0 + $1.rawBytes }
        if rest > 0 { parts.append("other \(percent(rest))") }
        return parts.joined(separator: " ")
    }

    /// What a running job whose figures have stood still for `seconds` says.
    static func still(_ seconds: Int) -> String {
        "nothing done for \(seconds) s: the destination, or the network to it, is not answering; its units are retried"
    }

    static func clock(_ seconds: Int) -> String {
        seconds >= 3600 ? "\(seconds / 3600):\(String(format: "%02d:%02d", seconds / 60 % 60, seconds % 60))"
            : "\(seconds / 60):\(String(format: "%02d", seconds % 60))"
    }
}

/// A finished or current job in a few human lines.
enum JobSummary {
    /// A demotion or promotion.
    static func tierText(_ s: JobStatus, _ operation: String) -> String {
        var lines = ["\(s.id): \(s.state.rawValue), \(operation) \(TerminalText.field(s.destination))",
                     "  \(s.filesDone) files, \(ByteQuantity.formatSize(Double(s.bytesDone))) moved; packs \(operation == "demote" ? "written" : "read"): \(ByteQuantity.formatSize(Double(s.wireBytes)))"]
        if s.finishedAt != nil, let seconds = s.elapsed(), seconds > 0, s.bytesDone > 0 {
            lines.append("  \(ByteQuantity.format(seconds, digits: 2)) s, \(ByteQuantity.formatRate(Double(s.bytesDone) / seconds, in: .init(of: s.bwlimit)))")
        }
        if let n = s.untransferableEntries, n > 0 {
            lines.append("  NOT moved: \(n) \(n == 1 ? "file stays" : "files stay") cold, \(n == 1 ? "its cold copy" : "their cold copies") damaged; the first: \(TerminalText.field(s.firstUntransferable ?? "?"))")
            lines.append("  run 'barge verify JOB --repair' for the job that sent \(n == 1 ? "it" : "them") (or send \(n == 1 ? "it" : "them") again from the source), then \(operation) again")
        }
        if s.skippedFiles > 0 { lines.append("  left where they were: \(s.skippedFiles) files (the coordinator's log says why)") }
        if let waiting = s.waiting { lines.append("  " + waiting) }
        if let e = s.error { lines.append("  error: \(e)") }
        return TerminalText.safe(lines.joined(separator: "\n"))
    }

    /// The exit code of a command that followed a job to its end: 1 unless it succeeded, 2 when
    /// it succeeded but source entries were not transferred: its scan left them out, or they
    /// vanished or changed at the source during the transfer (as rsync's 23 and 24, a partial
    /// transfer).
    static func exit(for s: JobStatus) throws {
        if s.state != .succeeded { throw ExitCode(1) }
        if (s.untransferableEntries ?? 0) > 0 { throw ExitCode(2) }
    }

    /// What to do about entries not transferred, for the reason the first of them gives.
    static func untransferableHint(_ first: String, count n: Int64) -> String {
        if first.contains("could not be read at the source") {
            return "the agent's user may not read \(n == 1 ? "it" : "them"): fix the permissions at the source and submit again"
        }
        if first.contains("vanished from the source during the transfer") || first.contains("changed during the transfer") {
            // Also after a resume: it sends the files as the job's scan saw them (a black-box
            // review read "during the transfer" of files changed while the job stood cancelled).
            return "the source changed after the job's scan: while it ran (as rsync's 'file has vanished'), or before a resume, which sends the files as the scan saw them and leaves out those that changed; submit again to copy what is there now"
        }
        if first.contains("not a regular file, directory or symbolic link") {
            return "Barge copies regular files, directories and symbolic links; FIFOs, sockets and device files stay behind (as with rsync without --specials and --devices)"
        }
        if first.contains("as Barge names its unfinished copies") {
            return "an unfinished copy of a transfer into the source tree (one still running, or an interrupted transfer): let it finish, or submit it again, then submit this job again; or rename such a file if it is yours"
        }
        if first.contains("a path may have (PATH_MAX)") {
            return "shorten \(n == 1 ? "its" : "their") path at the source (or submit from deeper down, or to a shorter destination) and submit again"
        }
        if first.contains("not valid UTF-8") {
            return "fix \(n == 1 ? "it" : "them") at the source (convmv renames a name that is not UTF-8; ln -sfn points a link elsewhere) and submit again"
        }
        return "fix \(n == 1 ? "it" : "them") at the source and submit again"
    }

    /// "1 mismatch", "2 mismatches".
    static func count(_ n: Int64, _ one: String, _ many: String) -> String { "\(n) \(n == 1 ? one : many)" }

    static func text(_ s: JobStatus) -> String {
        if let operation = s.operation, operation != "transfer" { return tierText(s, operation) }
        var lines = ["\(s.id): \(s.state.rawValue), \(TerminalText.field(s.source)) → \(TerminalText.field(s.destination))"]
        // Failed before any file was planned (its source is missing, say): the reason alone, as
        // rsync says only that, not a page of zeros with a hint about units that never ran.
        if s.state == .failed, s.filesTotal == 0, s.chunksTotal == 0, s.bytesTotal == 0, let e = s.error {
            lines.append("  error: \(e)")
            return TerminalText.safe(lines.joined(separator: "\n"))
        }
        lines += ["  \(ByteQuantity.formatSize(Double(s.bytesDone))) of \(ByteQuantity.formatSize(Double(s.bytesTotal))), \(s.filesDone) of \(s.filesTotal) files, \(s.chunksDone) of \(s.chunksTotal) chunks"]
        if s.state == .failed || s.state == .cancelled {
            // A review read "0 of 12 files" as nothing written, though most had arrived.
            lines.append("  (counted by units that completed: a unit that stopped may have put some of its files in place; 'barge resume' sends only what is missing)")
        }
        // The time it ran: not the time it stood failed or cancelled before a resume.
        if s.finishedAt != nil, let seconds = s.elapsed(), seconds > 0, s.bytesDone > 0 {
            let ratio = s.wireBytes > 0 ? Double(s.bytesDone) / Double(s.wireBytes) : 1
            lines.append("  \(ByteQuantity.format(seconds, digits: 2)) s, \(ByteQuantity.formatRate(Double(s.bytesDone) / seconds, in: .init(of: s.bwlimit))), \(ByteQuantity.formatSize(Double(s.wireBytes))) on the wire (ratio \(ByteQuantity.format(ratio, digits: 2)))")
        }
        if !s.codecs.isEmpty { lines.append("  codecs: \(ProgressLine.mix(s.codecs))") }
        if let waiting = s.waiting { lines.append("  " + waiting) }
        if let n = s.untransferableEntries, n > 0 {
            let first = s.firstUntransferable ?? "?"
            lines.append("  NOT transferred: \(n) \(n == 1 ? "entry" : "entries") (left out by the scan, or gone or changed at the source during the transfer; a directory left out counts once, with all it holds); the first: \(TerminalText.field(first))")
            lines.append("  " + Self.untransferableHint(first, count: n))
            if n > 1 { lines.append("  'barge status \(s.id) --not-transferred' names every one") }
        }
        if s.skippedFiles > 0 {
            lines.append("  unchanged at the destination (skipped unread): \(s.skippedFiles) files, \(ByteQuantity.formatSize(Double(s.skippedBytes)))")
        }
        if s.dedupBytes > 0 {
            lines.append("  already at the destination (copied there, not sent): \(ByteQuantity.formatSize(Double(s.dedupBytes)))")
        }
        lines.append("  chunks refetched: \(s.chunksRefetched)" + (s.retries > 0 ? ", units retried: \(s.retries)" : ""))
        if s.bwlimit != nil || s.cc != "fair" { lines.append("  bwlimit \(s.bwlimit ?? "off"), cc \(s.cc)") }
        if let v = s.verification {
            // "succeeded" says the verification ran to its end, not that the copy is good.
            let outcome = switch v.state {
            case "succeeded" where v.mismatches == 0: "passed"
            case "succeeded" where v.repair && v.remaining == 0: "repaired what differed"
            case "succeeded": "found differences"
            default: v.state + (v.repair ? " (with repair)" : "")
            }
            lines.append("  verification \(outcome): \(v.chunksChecked) of \(v.chunksTotal) chunks checked, \(Self.count(Int64(v.mismatches), "mismatch", "mismatches"))"
                         + (v.repair && v.mismatches > 0 ? ", \(v.repaired) repaired, \(v.remaining) still differ" : ""))
        }
        for l in s.lanes {
            lines.append("  lane \(l.source) → \(l.destination): rtt \(ByteQuantity.format(l.rttMs, digits: 2)) ms, queueing delay \(ByteQuantity.format(l.queueingDelayMs, digits: 2)) ms, window \(ByteQuantity.formatSize(Double(l.windowBytes))), sending \(ByteQuantity.formatRate(Double(l.sendRate), in: .init(of: s.bwlimit)))")
        }
        if let e = s.error { lines.append("  error: \(e)") }
        return TerminalText.safe(lines.joined(separator: "\n"))
    }
}

