/// Parses and prints the sizes and rates people type: `64MiB`, `500MB`, `40MiB/s`, `1Gbit/s`.
///
/// - Byte units: `B`, decimal `kB` `MB` `GB` `TB` (10³ steps) and binary `KiB` `MiB` `GiB` `TiB`
///   (2¹⁰ steps). Case does not matter for these.
/// - Bit units, rates only: `bit`, `kbit`, `Mbit`, `Gbit`, `Tbit` (decimal), also spelled `bps`,
///   `kbps`, `Mbps`, `Gbps`. In a rate, `MBps` (a capital B) is bytes, and `Mb`, `kb` or `b`
///   (one letter and a small b, bits to some and bytes to others) is refused.
/// - A rate may end in `/s`; a bare number is bytes (per second).
public enum ByteQuantity {
    public static func parseSize(_ text: String) throws(QuantityError) -> Int {
        let notASize = QuantityError("'\(text)' is not a size; write it like 4096, 64KiB, 1MiB or 2GB")
        guard let (value, unit) = split(text), let scale = byteScale(unit) else { throw notASize }
        let bytes = value * scale
        guard bytes.rounded() == bytes, bytes >= 0, bytes < 9.2e18 else {
            throw QuantityError("'\(text)' is not a whole number of bytes")
        }
        return Int(bytes)
    }

    /// Bytes per second.
    public static func parseRate(_ text: String) throws(QuantityError) -> Double {
        var body = Substring(text.trimmingSpaces)
        let notARate = QuantityError("'\(text)' is not a rate; write it like 40MiB/s, 500MB/s or 1Gbit/s")
        if body.hasSuffix("/s") {
            body = body.dropLast(2)
        } else if (try? parseSize(String(body))) != nil || (split(String(body))?.1.lowercased().hasSuffix("bit") ?? false) {
            // `40MiB` is a size: a rate says per second, so a forgotten `/s` is not guessed at.
            if (try? parseSize(String(body))) == 0 { throw QuantityError("'\(text)' is no rate: a cap is above zero; for no cap, write 'off'") }
            throw QuantityError("'\(text)' is an amount, not a rate; write it per second, like \(body)/s")
        }
        guard let (value, parsedUnit) = split(String(body)) else { throw notARate }
        var unit = parsedUnit
        // `MBps` is megabytes a second (rclone, iperf), `Mbps` megabits; `Mb` and `kb` are bits to
        // some and bytes to others, and are refused rather than guessed (`50MBps` was taken for
        // 50 megabits a second, and `50Mb/s` for 50 megabytes).
        if unit.hasSuffix("Bps") { unit = String(unit.dropLast(2)) }
        if unit.last == "b", unit.count <= 2 {
            let prefix = unit.dropLast()
            let number = value == value.rounded() && abs(value) < 1e15 ? "\(Int(value))" : "\(value)"
            throw QuantityError("'\(text)': '\(unit)' is bits to some and bytes to others; write \(number)\(prefix.uppercased())B/s for bytes or \(number)\(prefix)bit/s for bits")
        }
        let scale: Double
        if let s = byteScale(unit) {
            scale = s
        } else if let s = bitScale(unit) {
            scale = s / 8
        } else {
            throw notARate
        }
        let rate = value * scale
        guard rate > 0, rate.isFinite else { throw QuantityError("rate '\(text)' must be above zero") }
        guard rate >= 1 else { throw QuantityError("rate '\(text)' is under 1 B/s, the least a cap may be") }
        return rate
    }

    /// A size for people, in binary units: `1.5 MiB`.
    public static func formatSize(_ bytes: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var v = bytes, i = 0
        while abs(v) >= 1024, i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(Int(v)) B" : "\(format(v, digits: v < 10 ? 2 : 1)) \(units[i])"
    }

    /// A rate for people, in decimal megabytes (10⁶ B/s), the unit compression benchmarks use.
    public static func formatRate(_ bytesPerSecond: Double) -> String {
        bytesPerSecond >= 1e9 ? "\(format(bytesPerSecond / 1e9, digits: 2)) GB/s" : "\(format(bytesPerSecond / 1e6, digits: 1)) MB/s"
    }

    /// The family of units a rate is shown in: the one the user wrote a rate in, as rclone does.
    public enum RateUnits: Sendable, Hashable {
        /// KiB/s, MiB/s, GiB/s (the default).
        case iec
        /// kB/s, MB/s, GB/s.
        case si
        /// kbit/s, Mbit/s, Gbit/s.
        case bits

        /// The family of the rate in `text` (`60MiB/s`, `500MB/s`, `1Gbit/s`, or a timetable
        /// holding them); IEC when it names none.
        public init(of text: String?) {
            guard let text else { self = .iec; return }
            if text.contains("bit") || text.contains("bps") { self = .bits; return }
            if text.contains("iB") { self = .iec; return }
            self = text.contains(where: { "kKMGTP".contains($0) }) && text.contains("B") ? .si : .iec
        }
    }

    /// A rate for people in `units`: `57.3 MiB/s`, `60.1 MB/s`, `481.0 Mbit/s`.
    public static func formatRate(_ bytesPerSecond: Double, in units: RateUnits) -> String {
        let (base, value, names): (Double, Double, [String]) = switch units {
        case .iec: (1024, bytesPerSecond, ["B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s"])
        case .si: (1000, bytesPerSecond, ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"])
        case .bits: (1000, bytesPerSecond * 8, ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"])
        }
        var v = value, i = 0
        while abs(v) >= base, i < names.count - 1 { v /= base; i += 1 }
        return "\(format(v, digits: i == 0 ? 0 : (v < 10 ? 2 : 1))) \(names[i])"
    }

    /// Fixed-point formatting without Foundation.
    public static func format(_ value: Double, digits: Int) -> String {
        guard value.isFinite else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        let whole = Int(scaled / scale)
        let frac = Int(scaled - Double(whole) * scale)
        var fracText = String(frac)
        while fracText.count < digits { fracText = "0" + fracText }
        let sign = value < 0 && scaled != 0 ? "-" : ""
        return digits == 0 ? "\(sign)\(whole)" : "\(sign)\(whole).\(fracText)"
    }

    /// The leading number and the unit after it; nil when there is no finite number first.
    private static func split(_ text: String) -> (Double, String)? {
        let t = text.trimmingSpaces
        let numberEnd = t.firstIndex { !($0.isNumber || $0 == ".") } ?? t.endIndex
        guard let value = Double(t[..<numberEnd]), value.isFinite else { return nil }
        return (value, String(t[numberEnd...]).trimmingSpaces)
    }

    private static func byteScale(_ unit: String) -> Double? {
        switch unit.lowercased() {
        case "", "b": 1
        case "k", "kb": 1e3
        case "m", "mb": 1e6
        case "g", "gb": 1e9
        case "t", "tb": 1e12
        case "kib": 1024
        case "mib": 1_048_576
        case "gib": 1_073_741_824
        case "tib": 1_099_511_627_776
        default: nil
        }
    }

    private static func bitScale(_ unit: String) -> Double? {
        switch unit.lowercased() {
        case "bit", "bps": 1
        case "kbit", "kbps": 1e3
        case "mbit", "mbps": 1e6
        case "gbit", "gbps": 1e9
        case "tbit", "tbps": 1e12
        default: nil
        }
    }
}

public struct QuantityError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension String {
    var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
