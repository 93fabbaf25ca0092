import ArgumentParser
import BargeBench
import BargeFlow

struct BenchHash: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash",
        abstract: "Measure XXH3-128, SHA-256, FastCDC cut points, AES-256-GCM and ChaCha20-Poly1305 on one core.",
        discussion: "Hashes (or seals) an in-memory buffer repeatedly. GB/s is 10^9 bytes per second. Compare with `xxhsum -b`, `openssl speed -evp sha256` and `openssl speed -evp aes-256-gcm` (or chacha20-poly1305). FastCDC cuts 32 MiB into chunks of Barge's sizes (512 KiB minimum, 1 MiB average, 4 MiB maximum), whatever --size says."
    )

    @Flag(help: "Print JSON for tools instead of text.")
    var json = false

    @Option(help: ArgumentHelp("Buffer hashed per call.", valueName: "size"))
    var size = "1MiB"

    @Option(help: ArgumentHelp("Seconds per algorithm.", valueName: "seconds"))
    var seconds = 1.0

    func run() throws {
        var bench = HashBench()
        do { bench.bufferSize = try ByteQuantity.parseSize(size) } catch { throw ValidationError("--size: \(error)") }
        guard bench.bufferSize >= 1, bench.bufferSize <= 1 << 30 else { throw ValidationError("--size must be 1 B to 1GiB") }
        guard seconds > 0, seconds <= 3600 else { throw ValidationError("--seconds must be above 0 and at most 3600") }
        bench.seconds = seconds
        let report = bench.run()
        if json {
            print(try JSONOutput.encode(report))
        } else {
            print("Buffers of \(ByteQuantity.formatSize(Double(bench.bufferSize))), one core:")
            for r in report.results {
                print("  \(r.algorithm.padding(17))  \(ByteQuantity.format(r.gbPerS, digits: 2)) GB/s")
            }
        }
    }
}

extension String {
    func padding(_ n: Int) -> String { self + String(repeating: " ", count: max(0, n - count)) }
}
