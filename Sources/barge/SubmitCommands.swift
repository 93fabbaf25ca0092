import ArgumentParser
import BargeCodec
import BargeCoordinator
import BargeFlow
import BargeTier
import Foundation

/// `SITE:PATH` as the CLI takes it.
struct SitePath: ExpressibleByArgument, CustomStringConvertible {
    let site: String
    let path: String

    init?(argument: String) {
        // At the first ":" byte: a path that begins with a combining mark makes one `Character`
        // of the ":" before it.
        guard let colon = argument.utf8.firstIndex(of: UInt8(ascii: ":")), colon != argument.startIndex else { return nil }
        site = String(argument[..<colon])
        path = String(argument[argument.utf8.index(after: colon)...])
    }

    var description: String { "\(site):\(path)" }
    var endpoint: SubmitRequest.Endpoint { .init(site: site, path: path) }
}

struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Submit a transfer from one site to another.",
        discussion: """
            SRC and DST are SITE:PATH, with PATH under the root of that site's agents: `a:/ds` and \
            `a:ds` both mean <root>/ds. A directory's contents land under DST (like `rsync -a SRC/ DST/`); \
            a single file lands at DST, or inside it under its own name when DST ends with a slash \
            (`b:/dst/`, or the root `b:`), as `rsync FILE DIR/` puts it. A file already at DST with the same size, mtime and mode is skipped \
            unread (--checksum compares content instead; within one site this needs a second agent there, \
            since the scanning agent cannot also answer). Every chunk is verified (XXH3-128 and SHA-256) and files appear \
            under their final names only once complete; runs of zeros arrive as holes, so sparse files \
            stay sparse (as with `rsync -S`). Prints the job id; with --wait, follows the job \
            and exits non-zero unless it succeeds.
            """)

    @Argument(help: ArgumentHelp("Source, as SITE:PATH.", valueName: "src")) var source: SitePath
    @Argument(help: ArgumentHelp("Destination, as SITE:PATH.", valueName: "dst")) var destination: SitePath
    @Flag(help: "Follow the job until it ends; exit non-zero unless it succeeds. A coordinator that stops answering meanwhile (a restart) is asked again for up to 5 minutes: the job goes on when it is back.") var wait = false
    @Flag(help: "Print the job's status object as JSON (with --wait, the final one).") var json = false
    @Option(help: ArgumentHelp("auto (choose per chunk), none, lz4, zstd-N, or a filter form such as shuffle4+zstd-1.", valueName: "codec"))
    var codec = "auto"
    @Option(help: ArgumentHelp("Cap on the job's wire bytes, all its agents together: a rate (100MiB/s, 1Gbit/s), 'off', or a weekly timetable in the agents' local time, like 'Mon-Fri 08:00-18:00 100MiB/s, 18:00 off'. 'barge set' changes it while the job runs. A capped job holds only the units its cap needs (one per 8 MiB/s of its highest cap, two at least), so jobs beside it keep the agents' other unit slots.", valueName: "rate"))
    var bwlimit = "off"
    @Option(help: ArgumentHelp("Congestion control: fair (keep the queue short; competes like TCP on cubic sockets, gives ground to a flow that fills the queue on BBR ones), scavenger (give way to other traffic), or off (leave it to TCP).", valueName: "mode"))
    var cc = "fair"
    @Flag(help: "Compare files by content: read every source file and send only the chunks whose SHA-256 the destination lacks. Without it, files whose size, mtime and mode match at the destination are skipped without reading either side (rsync's quick check).")
    var checksum = false
    @Option(help: ArgumentHelp("Place each file in the destination site's hot tier (plain files) or cold tier (its pack store, --cold on its agents): rules 'TIER[:COND,…]' separated by ';', the first match wins, no match is hot. Conditions: a path glob relative to DST (raw/**, *.nc), size>N, size<N, age>D, age<D (mtime). Example: 'cold:raw/**;cold:age>90d,size>1MiB;hot'. Cold files are written straight into packs, with no plain copy. Without it, the destination agents' --tier-policy decides, else everything is hot.", valueName: "policy"))
    var tier: String?
    @Option(help: ArgumentHelp("A web hook told of this job's events (started, succeeded, failed, cancelled, verified) as CloudEvents 1.0 JSON POSTs, beside the coordinator's --notify URLs.", valueName: "url"))
    var notify: String?
    @OptionGroup var coordinator: CoordinatorURLOptions

    func validate() throws {
        do { _ = try CodecChoice(name: codec) } catch { throw ValidationError("--codec: \(error)") }
        if let tier { do { _ = try TierPolicy(parsing: tier) } catch { throw ValidationError("--tier: \(error)") } }
        if let notify, !NotifyURL.isValid(notify) { throw ValidationError("--notify \(notify): give an http:// or https:// URL") }
        do { _ = try Timetable(parsing: bwlimit) } catch { throw ValidationError("--bwlimit: \(error)") }
        do { _ = try CongestionMode(named: cc) } catch { throw ValidationError("--\(error)") }
    }

    func run() async throws {
        let api = try coordinator.api()
        let body = try JSONEncoder().encode(SubmitRequest(source: source.endpoint, destination: destination.endpoint, codec: codec,
                                                          bwlimit: bwlimit, cc: cc, checksum: checksum, tier: tier, notify: notify))
        let submitted = try JSONDecoder().decode(JobStatus.self, from: try await api.post("/v1/jobs", body: body))
        guard wait else {
            print(json ? try JSONOutput.encode(submitted) : submitted.id)
            return
        }
        if !json { FileHandle.standardError.write(Data("job \(submitted.id): \(TerminalText.field("\(source)")) → \(TerminalText.field("\(destination)"))\n".utf8)) }
        let final = try await JobWatcher(api: api, job: submitted.id, answered: true).follow()
        print(json ? try JSONOutput.encode(final) : JobSummary.text(final))
        try JobSummary.exit(for: final)
    }
}

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Re-hash a finished job's destination against the journal's manifest.",
        discussion: """
            The destination agents re-read every file and compare each chunk's SHA-256 with the one \
            recorded when it arrived, then each file's mode and mtime with those it was given \
            (agents of 0.14 or later; not when a later job wrote to an overlapping destination, \
            which may have given the files others). Exits 1 when anything differs. With --repair, \
            only the chunks that differ (or files that are missing or resized) are fetched again \
            from the source, a mode or mtime is set again where the file is (not on a file with \
            other names: hard links), and all is checked again; exits 0 once all is repaired. A job \
            whose destination a later job wrote to is not repaired (its older files would go back over \
            the later job's): repair the later job. The verification runs in the \
            coordinator, page by page, and survives its restart; this command follows it, asking a \
            coordinator that stops answering meanwhile (a restart) again for up to 5 minutes \
            (--no-wait only starts it; 'barge status JOB' shows its progress, and 'barge verify JOB' \
            again follows it or resumes one that failed).
            """)

    @Argument(help: ArgumentHelp("The job id.", valueName: "job")) var job: String
    @Flag(help: "Fetch the mismatching chunks again from the source, and set a mode or mtime that differs again.") var repair = false
    @Flag(help: "Print the result as JSON.") var json = false
    @Flag(help: "Start the verification and return; do not follow it.") var noWait = false
    @OptionGroup var coordinator: CoordinatorURLOptions

    func run() async throws {
        let api = try coordinator.api()
        // On a terminal one line drawn over and over; into a log or a pipe, a line every 5 s
        // (as `status --watch`), not a carriage return per answer.
        let live = isatty(STDERR_FILENO) == 1
        var lastPrinted = Date.distantPast
        let (outcome, data) = try await VerifyWatcher.run(api: api, job: job, repair: repair, wait: !noWait,
                                                          progress: json ? nil : { o in
            let line = "  verifying: \(o.chunksChecked) of \(o.chunksTotal) chunks, \(JobSummary.count(Int64(o.mismatchCount), "mismatch", "mismatches"))"
            if live {
                FileHandle.standardError.write(Data("\r\(line)   ".utf8))
            } else if Date().timeIntervalSince(lastPrinted) >= 5 {
                FileHandle.standardError.write(Data("\(line)\n".utf8))
                lastPrinted = Date()
            }
        })
        if !json && !noWait && live { FileHandle.standardError.write(Data("\n".utf8)) }
        if json {
            print(String(decoding: data, as: UTF8.self))
        } else if outcome.state == "running" {
            print("\(outcome.id): verification started; 'barge status \(outcome.id)' shows its progress")
            return
        } else {
            // A verification that stopped has not looked at everything: what it found so far, and
            // neither a Merkle root (it covers only the pages done) nor a verdict on the rest.
            let stopped = outcome.state == "failed"
            if let error = outcome.error { print("\(outcome.id): verification stopped: \(error)") }
            print("\(outcome.id): checked \(outcome.filesChecked) files, \(outcome.chunksChecked) of \(outcome.chunksTotal) chunks, \(outcome.bytesChecked) bytes"
                  + (stopped ? " before it stopped (pages repaired or checked since the last one done are not counted)" : ""))
            // A mode or mtime, or an empty file, is the file's, not a range of it.
            for m in outcome.mismatches { print("  mismatch: \(m.path)\(m.length == 0 ? "" : " at \(m.offset), \(m.length) bytes"): \(m.reason)") }
            if outcome.mismatchCount > outcome.mismatches.count { print("  … \(outcome.mismatchCount) mismatches in all") }
            if repair && !outcome.mismatches.isEmpty {
                print("  repaired \(outcome.repaired); \(outcome.remainingCount) still differ")
                for m in outcome.remaining { print("  still differs: \(m.path)\(m.length == 0 ? "" : " at \(m.offset)"): \(m.reason)") }
            }
            if stopped {
                print("INCOMPLETE: run 'barge verify \(outcome.id)\(repair ? " --repair" : "")' again to go on from where it stopped")
            } else {
                // Not the job root of `audit export` and of the coordinator's log, which is over the
                // files' own roots in path order: two fingerprints, named apart.
                print("  Merkle root of the job's chunks, in the journal's order: \(outcome.merkleRoot) (the job root that 'barge audit export' gives is over the files' roots)")
                print(outcome.ok ? "OK" : "MISMATCH")
            }
        }
        if !outcome.ok && !(noWait && outcome.state == "running") { throw ExitCode(1) }
    }
}

/// Starts a verification and follows it to its end. A coordinator that stops answering
/// meanwhile (a restart) does not end the following, as for `JobWatcher`: the verification is in
/// its journal and goes on when it is back, so it is asked again every second for up to
/// `patience`. Before, `barge verify` exited 1 at the first refused connection, which a script
/// could not tell from a mismatch.
enum VerifyWatcher {
    static func run(api: CoordinatorAPI, job: String, repair: Bool, wait: Bool = true, patience: Duration = JobWatcher.defaultPatience,
                    progress: ((VerifyOutcome) -> Void)? = nil) async throws -> (VerifyOutcome, Data) {
        let path = try "/v1/jobs/\(pathComponent(job))/verify"
        var data = try await api.post(path + (repair ? "?repair=true" : ""))
        var outcome = try JSONDecoder().decode(VerifyOutcome.self, from: data)
        var lost: ContinuousClock.Instant? = nil
        while wait && outcome.state == "running" {
            if lost == nil { progress?(outcome) }
            try await Task.sleep(for: lost == nil ? .milliseconds(200) : .seconds(1))
            do {
                data = try await api.get(path)
            } catch let failure as Failure where failure.noAnswer {
                guard let since = lost else {
                    lost = ContinuousClock.now
                    FileHandle.standardError.write(Data("\nbarge: no answer from the coordinator (\(failure)); the verification of job \(job) goes on when it is back. Asking again every 1 s for up to \(Int(patience.seconds)) s (Ctrl-C stops the waiting, not the verification)\n".utf8))
                    continue
                }
                guard ContinuousClock.now - since < patience else {
                    throw Failure("gave up waiting: no answer from the coordinator for \(Int(patience.seconds)) s (\(failure)); the verification of job \(job) is in its journal and goes on when it is back: barge verify \(job)")
                }
                continue
            }
            if let since = lost {
                FileHandle.standardError.write(Data("barge: the coordinator answers again, after \(String(format: "%.1f", (ContinuousClock.now - since).seconds)) s\n".utf8))
                lost = nil
            }
            outcome = try JSONDecoder().decode(VerifyOutcome.self, from: data)
        }
        return (outcome, data)
    }
}

struct SetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set", abstract: "Change a queued or running job's bandwidth cap.",
        discussion: """
            The new cap applies at once to every agent sending the job's units, each taking an equal \
            share. --bwlimit takes a rate (50MiB/s, 400Mbit/s), 'off', or a weekly timetable like \
            'Mon-Fri 08:00-18:00 100MiB/s, 18:00 off'.
            """)

    @Argument(help: ArgumentHelp("The job id.", valueName: "job")) var job: String
    @Option(help: ArgumentHelp("The new cap: a rate, 'off', or a timetable.", valueName: "rate")) var bwlimit: String
    @Flag(help: "Print the job's status object as JSON.") var json = false
    @OptionGroup var coordinator: CoordinatorURLOptions

    func validate() throws {
        do { _ = try Timetable(parsing: bwlimit) } catch { throw ValidationError("--bwlimit: \(error)") }
    }

    func run() async throws {
        let body = try JSONEncoder().encode(LimitRequest(bwlimit: bwlimit))
        let s = try JSONDecoder().decode(JobStatus.self, from: try await coordinator.api().post("/v1/jobs/\(pathComponent(job))/limit", body: body))
        print(json ? try JSONOutput.encode(s) : "\(s.id): \(s.state.rawValue), bwlimit \(s.bwlimit ?? "off")")
    }
}
