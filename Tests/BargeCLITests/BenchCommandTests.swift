import BargeBench
import Foundation
import Testing

/// `barge bench …` as a user runs it: a real process, real files, the JSON contract of DESIGN.md.
struct BenchCommandTests {
    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func compressJSONFollowsTheContract() throws {
        let dir = try TemporaryDirectory()
        let floats = dir.url.appendingPathComponent("field.f32").path
        let text = dir.url.appendingPathComponent("notes.txt").path
        try Data(SampleData.float32Field(bytes: 600_000)).write(to: URL(fileURLWithPath: floats))
        try Data(SampleData.text(bytes: 300_000)).write(to: URL(fileURLWithPath: text))

        let r = try BargeProcess.run(["bench", "compress", "--json", "--seconds", "0.01", "--chunk-size", "256KiB", floats, text])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try json(r.stdout)
        let files = try #require(report["files"] as? [[String: Any]])
        #expect(files.map { $0["path"] as? String } == [floats, text])
        #expect(files.map { $0["bytes"] as? Int } == [600_000, 300_000])
        for file in files {
            let results = try #require(file["results"] as? [[String: Any]])
            #expect(results.map { $0["codec"] as? String } == ["none", "lz4", "zstd-1", "zstd-3", "auto"])
            for result in results {
                #expect((result["ratio"] as? Double ?? 0) > 0.99)
                #expect((result["encoded_bytes"] as? Int ?? 0) > 0)
                #expect((result["compress_mbps"] as? Double ?? 0) > 0)
                #expect((result["decompress_mbps"] as? Double ?? 0) > 0)
            }
            let auto = try #require(results.last?["mix"] as? [[String: Any]])
            #expect(auto.reduce(0) { $0 + ($1["chunks"] as? Int ?? 0) } == ((file["bytes"] as! Int) + 262_143) / 262_144)
        }
        let total = try #require(report["total"] as? [String: Any])
        #expect(total["bytes"] as? Int == 900_000)
        #expect((total["results"] as? [[String: Any]])?.count == 5)
        // The float field compresses, and better with auto than with plain zstd-3.
        let floatResults = try #require(files[0]["results"] as? [[String: Any]])
        #expect((floatResults[4]["ratio"] as! Double) > (floatResults[3]["ratio"] as! Double))
    }

    @Test func compressTableShowsAutosMix() throws {
        let dir = try TemporaryDirectory()
        let path = dir.url.appendingPathComponent("data.bin").path
        try Data(SampleData.random(bytes: 200_000)).write(to: URL(fileURLWithPath: path))
        let r = try BargeProcess.run(["bench", "compress", "--seconds", "0.01", "--codecs", "zstd-1,auto", path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("auto"))
        #expect(r.stdout.contains("none 100%"))
        // Random data is stored raw: the chunk header is all it costs.
        let json = try BargeProcess.run(["bench", "compress", "--json", "--seconds", "0.01", "--codecs", "auto", path])
        let results = try #require((try self.json(json.stdout)["files"] as? [[String: Any]])?.first?["results"] as? [[String: Any]])
        #expect(results.first?["encoded_bytes"] as? Int == 200_000 + 40)
        #expect(r.stdout.contains("selector"))
    }

    @Test func hashJSONFollowsTheContract() throws {
        let r = try BargeProcess.run(["bench", "hash", "--json", "--seconds", "0.05", "--size", "64KiB"])
        #expect(r.status == 0, "\(r.stderr)")
        let results = try #require(try json(r.stdout)["results"] as? [[String: Any]])
        #expect(results.map { $0["algorithm"] as? String } == ["xxh3-128", "sha256", "fastcdc", "aes-256-gcm", "chacha20-poly1305"])
        #expect(results.allSatisfy { ($0["gb_per_s"] as? Double ?? 0) > 0 })
    }

    @Test func generateWritesTheSampleDataset() throws {
        let dir = try TemporaryDirectory()
        let r = try BargeProcess.run(["bench", "generate", "--size", "64KiB", dir.path + "/sample"])
        #expect(r.status == 0, "\(r.stderr)")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/sample").sorted()
        #expect(names == ["float32.bin", "float64.bin", "int16.bin", "random.bin", "text.txt"])
        let size = try FileManager.default.attributesOfItem(atPath: dir.path + "/sample/text.txt")[.size] as? Int
        #expect(size == 65536)
    }

    @Test(arguments: [
        (["bench", "compress", "/nonexistent/data.bin"], "cannot read /nonexistent/data.bin: no such file"),
        (["bench", "compress", "--codecs", "gzip", "x"], "unknown codec 'gzip'"),
        (["bench", "compress", "--codecs", "shuffle3+lz4", "x"], "stride must be 2, 4 or 8"),
        (["bench", "compress", "--link-rate", "fast", "x"], "is not a rate"),
        (["bench", "compress", "--chunk-size", "64MiB", "x"], "--chunk-size must be"),
        (["bench", "compress"], "Missing expected argument"),
        (["bench", "hash", "--seconds", "0"], "--seconds must be above 0"),
    ])
    func badInputGetsAClearErrorAndNonZeroExit(_ arguments: [String], _ message: String) throws {
        let r = try BargeProcess.run(arguments)
        #expect(r.status != 0)
        #expect(r.stderr.contains(message), "stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    @Test func aDirectoryIsNotAFile() throws {
        let dir = try TemporaryDirectory()
        let r = try BargeProcess.run(["bench", "compress", dir.path])
        #expect(r.status != 0)
        #expect(r.stderr.contains("is a directory"))
    }
}
