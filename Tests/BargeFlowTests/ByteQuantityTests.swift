import BargeFlow
import Testing

struct ByteQuantityTests {
    @Test(arguments: [(String, Double)]([
        ("40MiB/s", 40.0 * 1_048_576), ("500MB/s", 500e6), ("1Gbit/s", 125e6), ("100Mbps", 12.5e6),
        ("2.5GB/s", 2.5e9), ("1000/s", 1000), ("64 KiB/s", 65536), ("1gbit/s", 125e6),
        // A capital B is bytes, `bps` with a small b is bits (`50MBps` was read as megabits).
        ("50MBps", 50e6), ("50mbps", 6.25e6), ("2GBps", 2e9), ("8kbps", 1000),
    ]))
    func rates(_ text: String, _ bytesPerSecond: Double) throws {
        #expect(try ByteQuantity.parseRate(text) == bytesPerSecond)
    }

    @Test(arguments: [("4096", 4096), ("1MiB", 1 << 20), ("64KiB", 65536), ("2GB", 2_000_000_000), ("1.5KiB", 1536)])
    func sizes(_ text: String, _ bytes: Int) throws {
        #expect(try ByteQuantity.parseSize(text) == bytes)
    }

    @Test(arguments: ["", "fast", "10 parsecs", "0MB/s", "-5MB/s", "1e999", "MiB", "0.00001B/s", "0.5B/s", "7bit/s"])
    func badRates(_ text: String) {
        #expect(throws: QuantityError.self) { try ByteQuantity.parseRate(text) }
    }

    @Test func ratesAreShownInTheFamilyTheyWereWrittenIn() {
        #expect(ByteQuantity.RateUnits(of: "100Mbps") == .bits && ByteQuantity.RateUnits(of: "1Gbit/s") == .bits)
        #expect(ByteQuantity.RateUnits(of: "50MBps") == .si && ByteQuantity.RateUnits(of: "50MB/s") == .si)
        #expect(ByteQuantity.RateUnits(of: "50MiB/s") == .iec && ByteQuantity.RateUnits(of: nil) == .iec)
    }

    /// One letter and a small b is bits to some and bytes to others: refused, with both spellings
    /// that say which (`50Mb/s` was read as 50 megabytes a second).
    @Test(arguments: ["50Mb/s", "50mb/s", "1Gb/s", "8kb/s", "100b/s"])
    func ambiguousRates(_ text: String) {
        #expect {
            try ByteQuantity.parseRate(text)
        } throws: { error in
            let said = "\(error)"
            return said.contains("bits to some and bytes to others") && said.contains("B/s for bytes") && said.contains("bit/s for bits")
        }
    }

    @Test(arguments: ["1Gbit", "0.3B", "x", "1MiB/s"])
    func badSizes(_ text: String) {
        #expect(throws: QuantityError.self) { try ByteQuantity.parseSize(text) }
    }

    @Test func formatting() {
        #expect(ByteQuantity.formatSize(1536) == "1.50 KiB")
        #expect(ByteQuantity.formatSize(64 * 1_048_576) == "64.0 MiB")
        #expect(ByteQuantity.formatSize(12) == "12 B")
        #expect(ByteQuantity.formatRate(2.345e9) == "2.35 GB/s")
        #expect(ByteQuantity.formatRate(160.04e6) == "160.0 MB/s")
        #expect(ByteQuantity.format(-0.004, digits: 2) == "0.00")
        #expect(ByteQuantity.format(1.005, digits: 1) == "1.0")
    }
}

/// Rates say per second, and are shown in the family of units the user wrote.
struct RateUnitTests {
    @Test func aRateWithoutPerSecondIsRefusedWithTheFix() throws {
        for text in ["40MiB", "1Gbit", "4096"] {
            #expect(throws: QuantityError.self) { try ByteQuantity.parseRate(text) }
            #expect((try? ByteQuantity.parseRate(text)) == nil)
        }
        do {
            _ = try ByteQuantity.parseRate("40MiB")
        } catch {
            #expect(error.description.contains("40MiB/s"), "\(error)")
        }
        #expect(try ByteQuantity.parseRate("40MiB/s") == 40 * 1_048_576)
        #expect(try ByteQuantity.parseRate("1Gbps") == 125e6)
    }

    @Test func ratesAreShownInTheUnitsTheUserTyped() {
        #expect(ByteQuantity.RateUnits(of: "60MiB/s") == .iec && ByteQuantity.RateUnits(of: nil) == .iec)
        #expect(ByteQuantity.RateUnits(of: "500MB/s") == .si && ByteQuantity.RateUnits(of: "1Gbit/s") == .bits)
        #expect(ByteQuantity.RateUnits(of: "Mon-Fri 08:00-18:00 100MiB/s, 18:00 off") == .iec)
        #expect(ByteQuantity.formatRate(60 * 1_048_576, in: .iec) == "60.0 MiB/s")
        #expect(ByteQuantity.formatRate(62.9e6, in: .si) == "62.9 MB/s")
        #expect(ByteQuantity.formatRate(125e6, in: .bits) == "1.00 Gbit/s")
        #expect(ByteQuantity.formatRate(512, in: .iec) == "512 B/s")
    }
}
