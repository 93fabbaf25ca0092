import ArgumentParser
import BargeCoordinator
import Foundation

/// `barge audit verify|show`: the coordinator's tamper-evident audit trail, read from its file.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Check and read the coordinator's audit trail (STATE/audit.jsonl).",
        discussion: """
            The coordinator appends every control action (who, what, when, from where, and the \
            result) and every job's outcome to STATE/audit.jsonl. Each line carries the SHA-256 \
            of its content and of the line before it, so the file is a hash chain: `audit verify` \
            finds a line that was changed, removed or reordered, and prints the head hash, which \
            stands for the whole trail: publish or countersign it elsewhere. `verify` and `show` \
            read the file, so run them where it is (or on a copy); they need no coordinator. \
            `export JOB` asks the coordinator for an evidence bundle (the job, each file's path, \
            size and Merkle root, the job root, and the trail from the job's first entry to the \
            head), which `verify --bundle` checks with nothing else.
            """,
        subcommands: [Verify.self, Show.self, Export.self])

    struct Source: ParsableArguments {
        @Option(help: ArgumentHelp("The coordinator's state directory (its audit.jsonl is read).", valueName: "dir"))
        var state = "./barge-state"
        @Option(help: ArgumentHelp("An audit file to read instead (a copy, say).", valueName: "file"))
        var file: String?

        var path: String { file ?? state + "/" + AuditTrail.fileName }

        func lines() throws -> LineReader {
            guard let reader = LineReader(path: path) else { throw Failure("cannot read the audit trail \(path): \(String(cString: strerror(errno)))") }
            return reader
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recompute the hash chain; print the entry count and the head hash. Exits 1 at the first bad entry.")

        @OptionGroup var source: Source
        @Flag(help: "Print JSON: entries, head, and the first bad line with its reason.") var json = false
        @Option(help: ArgumentHelp("Check an evidence bundle from `barge audit export` instead.", valueName: "file"))
        var bundle: String?

        func run() throws {
            if let bundle { return try checkBundle(bundle) }
            let report = AuditChain.verify(lines: try source.lines())
            if json {
                var out: [String: Any] = ["file": source.path, "entries": report.entries, "head": report.head, "ok": report.broken == nil]
                if let b = report.broken { out["bad_line"] = b.line; out["reason"] = b.reason }
                print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys]), as: UTF8.self))
            } else if let b = report.broken {
                print("\(source.path): BROKEN at line \(b.line): \(b.reason)")
                print("  the \(report.entries) \(report.entries == 1 ? "entry" : "entries") before it \(report.entries == 1 ? "is" : "are") intact; head \(report.head)")
            } else {
                print("\(source.path): \(report.entries) entries, chain intact")
                print("head \(report.head)")
            }
            if report.broken != nil { throw ExitCode(1) }
        }

        private func checkBundle(_ path: String) throws {
            guard let data = FileManager.default.contents(atPath: path) else { throw Failure("cannot read the bundle \(path)") }
            let o = EvidenceCheck.check(data)
            if json {
                let out: [String: Any] = ["bundle": path, "job": o.job, "files": o.files, "job_root": o.jobRoot, "chain_entries": o.chainEntries,
                                          "head": o.head, "ok": o.problems.isEmpty, "problems": o.problems]
                print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys]), as: UTF8.self))
            } else if o.problems.isEmpty {
                print("\(path): job \(o.job), \(o.files) files, job root \(o.jobRoot) (recorded in audit entry \(o.rootEntry ?? 0))")
                print("chain of \(o.chainEntries) entries intact; head \(o.head)")
                print("compare the head with the one the operator published or countersigned")
            } else {
                print("\(path): BROKEN")
                for p in o.problems { print("  \(p)") }
            }
            if !o.problems.isEmpty { throw ExitCode(1) }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List entries, oldest first: control actions, job outcomes and verification outcomes.")

        @OptionGroup var source: Source
        @Option(help: ArgumentHelp("Only the entries about this job.", valueName: "job")) var job: String?
        @Flag(help: "Print the entries as JSON lines, as they are in the file.") var json = false

        func run() throws {
            var rows = [["SEQ", "TIME", "WHO", "FROM", "WHAT", "JOB", "RESULT"]]
            var number = 0
            for line in try source.lines() where !line.isEmpty {
                number += 1
                guard let (_, r) = AuditChain.parse(line) else {
                    FileHandle.standardError.write(Data("line \(number) is not an intact entry (run 'barge audit verify')\n".utf8))
                    continue
                }
                if let job, r.job != job { continue }
                if json { print(line); continue }
                let who = r.actor.role.map { "\(r.actor.name) (\($0))" } ?? r.actor.name
                let what = switch r.kind {
                case "job": "job ended"
                case "merkle": "job root"
                case "verify": "verification ended"
                default: r.action ?? ""
                }
                let result: String
                if let v = r.verification {
                    let found = v.repair ? "\(v.mismatches) mismatches, \(v.repaired) repaired, \(v.remaining) remaining" : "\(v.mismatches) mismatches"
                    result = "\(v.state): \(v.ok ? "OK" : "NOT OK"), \(v.files) files, \(v.chunks) of \(v.chunksTotal) chunks, \(found)"
                        + (v.error.map { ": \($0)" } ?? "")
                } else if let o = r.outcome {
                    result = "\(o.state): \(o.files) files, \(o.bytes) bytes\(o.error.map { ": \($0)" } ?? "")"
                } else if let res = r.result {
                    result = [res.outcome, res.status.map(String.init), res.detail].compactMap { $0 }.joined(separator: " ")
                } else {
                    result = ""
                }
                rows.append(["\(r.seq)", r.time, who, r.from ?? "-", what, r.job ?? "-", result])
            }
            if !json { print(Table.render(rows)) }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a job's evidence bundle to stdout (check it with `barge audit verify --bundle FILE`).",
            discussion: "Example: barge audit export j-0123456789 > evidence.json")

        @Argument(help: ArgumentHelp("The job id.", valueName: "job")) var job: String
        @OptionGroup var coordinator: CoordinatorURLOptions

        func run() async throws {
            // Streamed: a bundle for millions of files need not fit in memory.
            do {
                try await coordinator.api().download("/v1/jobs/\(pathComponent(job))/evidence", to: .standardOutput, timeout: 3600)
                try FileHandle.standardOutput.write(contentsOf: Data("\n".utf8))
            } catch let error as Failure { throw error } catch {
                throw Failure("cannot write the bundle to standard output (a closed pipe or a full disk?): \(error)")
            }
        }
    }
}

