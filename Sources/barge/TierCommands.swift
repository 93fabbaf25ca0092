import ArgumentParser
import BargeCoordinator
import BargeFlow
import BargeTier
import Foundation

/// `barge tier demote|promote|stats|gc`: hot and cold tiers at a destination site.
struct TierCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tier",
        abstract: "Move files between a site's hot tier (plain files) and its cold tier (a deduplicated, compressed pack store).",
        discussion: """
            A site's agents keep the cold tier in a directory they share (barge agent --cold DIR, \
            optionally encrypted with --cold-key-file). Demotion and promotion run as jobs: they \
            show in `barge jobs` and `barge status`, survive a coordinator restart, and `barge \
            resume` picks up a failed or cancelled one. A demotion writes and reads back its packs \
            before it removes a hot copy; a promotion writes each file under a partial name, checks \
            it, renames it, and only then takes it out of the cold tier. `barge ls SITE:PATH` \
            shows each file's tier.
            """,
        subcommands: [Demote.self, Promote.self, Stats.self, GC.self])

    struct Demote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move files under SITE:PATH into the site's cold tier.",
            discussion: "Example: barge tier demote site-b:/runs/2024 --policy 'cold:age>90d,size>1MiB' --wait")

        @Argument(help: ArgumentHelp("The site and path, as SITE:PATH.", valueName: "site:path")) var target: SitePath
        @Option(help: ArgumentHelp("Only the files this placement policy places cold (rules 'TIER[:COND,…]' separated by ';'); the site's --tier-policy when absent, else every file.", valueName: "policy"))
        var policy: String?
        @Flag(help: "Follow the job until it ends; exit non-zero unless it succeeds. A coordinator that stops answering meanwhile (a restart) is asked again for up to 5 minutes: the job goes on when it is back.") var wait = false
        @Flag(help: "Print the job's status object as JSON (with --wait, the final one).") var json = false
        @OptionGroup var coordinator: CoordinatorURLOptions

        func validate() throws {
            if let policy { do { _ = try TierPolicy(parsing: policy) } catch { throw ValidationError("--policy: \(error.description)") } }
        }

        func run() async throws {
            try await TierJob.run("demote", target, policy: policy, wait: wait, json: json, coordinator: coordinator)
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bring cold files under SITE:PATH back as plain files.",
            discussion: """
                Every chunk is checked as it is read back. A file whose cold copy is damaged stays cold and is named; \
                the rest is promoted, and --wait exits 2 (run 'barge verify JOB --repair' for the job that sent it, \
                or send it again, then promote again).
                Example: barge tier promote site-b:/runs/2024/run-17 --wait
                """)

        @Argument(help: ArgumentHelp("The site and path, as SITE:PATH.", valueName: "site:path")) var target: SitePath
        @Flag(help: "Follow the job until it ends; exit non-zero unless it succeeds. A coordinator that stops answering meanwhile (a restart) is asked again for up to 5 minutes: the job goes on when it is back.") var wait = false
        @Flag(help: "Print the job's status object as JSON (with --wait, the final one).") var json = false
        @OptionGroup var coordinator: CoordinatorURLOptions

        func run() async throws {
            try await TierJob.run("promote", target, policy: nil, wait: wait, json: json, coordinator: coordinator)
        }
    }

    struct Stats: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a site's cold store: logical and stored bytes, dedup and compression ratios, packs.")

        @Argument(help: ArgumentHelp("The site.", valueName: "site")) var site: String
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var coordinator: CoordinatorURLOptions

        func run() async throws {
            let data = try await coordinator.api().get("/v1/sites/\(pathComponent(site))/tiers", timeout: 600)
            let s = try JSONDecoder().decode(TierStats.self, from: data)
            if json { print(try JSONOutput.encode(s)); return }
            print("""
                site \(s.site): \(s.files) cold files, \(ByteQuantity.formatSize(Double(s.logicalBytes))) logical
                  stored \(ByteQuantity.formatSize(Double(s.storedBytes))) in \(s.packs) packs (\(ByteQuantity.format(s.storedRatio, digits: 2))× smaller)
                  dedup \(ByteQuantity.format(s.dedupRatio, digits: 2))×, compression \(ByteQuantity.format(s.compressionRatio, digits: 2))×
                """)
        }
    }

    struct GC: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Remove packs that no cold file references from a site's cold store.",
            discussion: "It waits for running demotions (they hold the store's lock), and a crash in the middle leaves nothing a later run does not clean up.")

        @Argument(help: ArgumentHelp("The site.", valueName: "site")) var site: String
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var coordinator: CoordinatorURLOptions

        func run() async throws {
            let data = try await coordinator.api().post("/v1/sites/\(pathComponent(site))/tiers/gc", timeout: 3600)
            let o = try JSONDecoder().decode(TierGCOutcome.self, from: data)
            if json { print(try JSONOutput.encode(o)); return }
            print("site \(o.site): removed \(o.packsRemoved) packs (\(ByteQuantity.formatSize(Double(o.bytesRemoved)))), kept \(o.packsKept)")
        }
    }
}

enum TierJob {
    static func run(_ operation: String, _ target: SitePath, policy: String?, wait: Bool, json: Bool, coordinator: CoordinatorURLOptions) async throws {
        let api = try coordinator.api()
        let body = try JSONEncoder().encode(TierJobRequest(site: target.site, path: target.path, policy: policy))
        let submitted = try JSONDecoder().decode(JobStatus.self, from: try await api.post("/v1/tiers/\(operation)", body: body))
        guard wait else {
            print(json ? try JSONOutput.encode(submitted) : submitted.id)
            return
        }
        if !json { FileHandle.standardError.write(Data("job \(submitted.id): \(operation) \(target)\n".utf8)) }
        let final = try await JobWatcher(api: api, job: submitted.id, answered: true).follow()
        print(json ? try JSONOutput.encode(final) : JobSummary.text(final))
        try JobSummary.exit(for: final)  // 2: files left cold because their cold copies are damaged
    }
}

/// `barge ls SITE:PATH`: files at a destination site with their tier.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List files under SITE:PATH, hot and cold, with their tier.",
        discussion: "Hot entries (files, directories, links) come first, in walk order, then cold files by path.")

    @Argument(help: ArgumentHelp("The site and path, as SITE:PATH.", valueName: "site:path")) var target: SitePath
    @Flag(help: "Print JSON: a list of objects with path, tier, kind, size, mtime and mode.") var json = false
    @Option(help: ArgumentHelp("Entries per request.", valueName: "n")) var pageSize = 1000
    @OptionGroup var coordinator: CoordinatorURLOptions

    func validate() throws {
        guard (1...10_000).contains(pageSize) else { throw ValidationError("--page-size must be from 1 to 10000") }
    }

    /// Prints page by page, holding one page at a time, whatever the tree's size: JSON as one
    /// array written element by element, text with columns at least as wide as their usual content.
    func run() async throws {
        let api = try coordinator.api()
        var after: String?
        var listed = 0
        // Query values percent-encoded: the path, and the cursor each page returns, which names
        // the entry it ended at (`h:PATH`): a name with '&', '#', '+' or '%' in it would have
        // cut the cursor short, or decoded to another name, and the listing skipped or repeated.
        func value(_ text: String) -> String {
            text.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+#"))) ?? text
        }
        let path = value(target.path)
        let dates = ISO8601DateFormatter()
        repeat {
            var query = try "/v1/sites/\(pathComponent(target.site))/files?path=\(path)&limit=\(pageSize)"
            if let after { query += "&after=\(value(after))" }
            let page = try JSONDecoder().decode(SiteFileList.self, from: try await api.get(query, timeout: 600))
            if json {
                for f in page.files {
                    print(listed == 0 ? "[" : ",", try JSONOutput.encode(f), separator: "")
                    listed += 1
                }
            } else if !page.files.isEmpty {
                let rows = page.files.map { f in
                    [f.tier, f.kind == "directory" ? "d" + f.mode : f.kind == "symlink" ? "l" + f.mode : f.mode,
                     f.kind == "file" ? ByteQuantity.formatSize(Double(f.size)) : "-",
                     dates.string(from: Date(timeIntervalSince1970: Double(f.mtime))), f.path]
                }
                print(Table.render((listed == 0 ? [Self.header] : []) + rows, minimumWidths: Self.widths))
                listed += rows.count
            }
            after = page.next
        } while after != nil
        if json {
            print(listed == 0 ? "[]" : "]")
        } else if listed == 0 {
            print("Nothing under \(target).")
        }
    }

    static let header = ["TIER", "MODE", "SIZE", "MODIFIED", "PATH"]
    /// "cold", "d0755", "1023.9 MiB", an ISO 8601 time in UTC.
    static let widths = [4, 5, 10, 20, 0]
}