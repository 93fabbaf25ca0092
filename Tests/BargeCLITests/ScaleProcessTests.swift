import Foundation
import Testing

/// `barge bench scale` at small sizes, and the coordinator planning a million-file tree in bounded
/// memory: the real scheduler, journal and HTTP API in one process, driven as agents drive them.
struct ScaleProcessTests {
    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func benchScaleReportsEveryScenario() throws {
        let r = try BargeProcess.run(["bench", "scale", "--json", "--range-files", "8", "--range-file-size", "4GiB", "--small-files", "3000",
                                      "--agents", "6", "--decisions", "300"])
        #expect(r.status == 0, "\(r.stderr)")
        let results = try #require(try json(r.stdout)["results"] as? [[String: Any]])
        #expect(results.map { $0["scenario"] as? String } == ["range", "files", "agents"])
        for result in results.prefix(1) + results.suffix(1) {
            #expect((result["decisions"] as? Int ?? 0) >= 300, "\(result)")
        }
        for result in results {
            #expect((result["decisions_per_second"] as? Double ?? 0) > 0)
            #expect((result["status_samples"] as? Int ?? 0) > 0)
            #expect((result["journal_bytes"] as? Int ?? 0) > 0)
            #expect((result["seconds_to_first_assignment"] as? Double ?? -1) >= 0)
        }
        #expect(results[0]["units"] as? Int == 8 * 64 + 8 + 1)
        #expect(results[2]["agents"] as? Int == 6)
        let bad = try BargeProcess.run(["bench", "scale", "--scenarios", "nope"])
        #expect(bad.status != 0 && bad.stderr.contains("unknown scenario 'nope'"), "\(bad.stderr)")
    }

    /// A million files are planned as their scan pages arrive, and the coordinator's memory stays
    /// bounded (the whole tree is never held): a generous 1 GiB for a debug build.
    @Test func aMillionFilesArePlannedInBoundedMemory() throws {
        let r = try BargeProcess.run(["bench", "scale", "--json", "--scenarios", "files", "--small-files", "1000000", "--decisions", "200"])
        #expect(r.status == 0, "\(r.stderr)")
        let result = try #require((try json(r.stdout)["results"] as? [[String: Any]])?.first)
        let rss = result["peak_rss_bytes"] as? Int ?? .max
        print("scale: 1,000,000 files planned in \(result["seconds_to_planned"] ?? "?") s, peak RSS \(rss >> 20) MiB, journal \((result["journal_bytes"] as? Int ?? 0) >> 20) MiB")
        #expect(result["files"] as? Int == 1_000_000)
        #expect(rss < 1 << 30, "peak RSS \(rss >> 20) MiB")
    }
}
