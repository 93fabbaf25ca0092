import BargeFlow

/// Where a file lives at a destination site.
public enum Tier: String, Sendable, Codable, Hashable, CaseIterable {
    /// A plain file under the agent's root.
    case hot
    /// Chunks in the site's content-addressed pack store (`--cold DIR`); no plain copy.
    case cold
}

/// What a placement rule looks at: the file's path relative to the job's root, its size, and its
/// modification time (Unix seconds).
public struct FileFacts: Sendable, Hashable {
    public var path: String
    public var size: UInt64
    public var mtime: Int64

    public init(path: String, size: UInt64, mtime: Int64) {
        self.path = path
        self.size = size
        self.mtime = mtime
    }
}

/// A placement policy: rules separated by `;`, the first that matches wins, and a file that no
/// rule matches goes hot. A rule is `TIER` or `TIER:COND,COND…`, and every condition must hold.
///
/// Conditions:
/// - a path glob: `raw/**`, `*.nc`, `runs/*/out-?.h5`. `*` and `?` stay within one path
///   component, `**` spans any number of them, `[abc]` and `[a-z]` match one character of a
///   class (`[!a]` one not in it). A glob without `/` matches the file's name in any directory,
///   as in `.gitignore`; one with `/` matches the whole path from the job's root.
/// - `size>N`, `size<N`, with N a size (`1GiB`, `128KB`, `4096`);
/// - `age>D`, `age<D`, with D like `30d`, `12h`, `90m` or `2w`, against the file's mtime.
///
/// Example: `cold:raw/**;cold:age>90d,size>1MiB;hot`.
public struct TierPolicy: Sendable, Hashable, CustomStringConvertible {
    public enum Condition: Sendable, Hashable {
        case glob(Glob)
        case sizeAbove(UInt64)
        case sizeBelow(UInt64)
        /// Older than this many seconds.
        case ageAbove(Int64)
        /// Younger than this many seconds.
        case ageBelow(Int64)

        func holds(for file: FileFacts, now: Int64) -> Bool {
            switch self {
            case .glob(let g): return g.matches(file.path)
            case .sizeAbove(let n): return file.size > n
            case .sizeBelow(let n): return file.size < n
            case .ageAbove(let s): return Self.age(of: file, now: now) > s
            case .ageBelow(let s): return Self.age(of: file, now: now) < s
            }
        }

        /// Seconds since the file's mtime, saturated: an mtime near the ends of `Int64` (tmpfs
        /// and btrfs keep `touch -d @-9223372036854775000`) is the oldest or the newest there is.
        static func age(of file: FileFacts, now: Int64) -> Int64 {
            let (age, overflow) = now.subtractingReportingOverflow(file.mtime)
            return overflow ? (file.mtime < 0 ? .max : .min) : age
        }
    }

    public struct Rule: Sendable, Hashable {
        public var tier: Tier
        public var conditions: [Condition]
    }

    public let rules: [Rule]
    /// The policy as written (spaces around tokens removed), for the journal and the CLI.
    public let description: String

    /// Everything hot: the default when no policy is given.
    public static let allHot = try! TierPolicy(parsing: "hot")

    public init(parsing text: String) throws(TierPolicyError) {
        var rules: [Rule] = []
        var written: [String] = []
        let parts = text.split(separator: ";", omittingEmptySubsequences: false).map { $0.trimmingSpaces }
        guard !(parts.count == 1 && parts[0].isEmpty) else {
            throw TierPolicyError("the tier policy is empty; write rules like 'cold:raw/**;hot'")
        }
        for (i, part) in parts.enumerated() {
            let n = i + 1
            guard !part.isEmpty else { throw TierPolicyError("tier policy rule \(n) is empty (two ';' in a row, or one at the end)") }
            let (head, tail) = part.firstIndex(of: ":").map { (String(part[..<$0]).trimmingSpaces, Optional(String(part[part.index(after: $0)...]))) }
                ?? (part, nil)
            guard let tier = Tier(rawValue: head) else {
                throw TierPolicyError("tier policy rule \(n) '\(part)': '\(head)' is not a tier; use hot or cold")
            }
            var conditions: [Condition] = []
            var texts: [String] = []
            if let tail {
                for raw in tail.split(separator: ",", omittingEmptySubsequences: false) {
                    let c = String(raw).trimmingSpaces
                    guard !c.isEmpty else { throw TierPolicyError("tier policy rule \(n) '\(part)' has an empty condition") }
                    conditions.append(try Self.condition(c, rule: n, in: part))
                    texts.append(c)
                }
            }
            rules.append(Rule(tier: tier, conditions: conditions))
            written.append(texts.isEmpty ? tier.rawValue : tier.rawValue + ":" + texts.joined(separator: ","))
        }
        self.rules = rules
        self.description = written.joined(separator: ";")
    }

    /// The tier for `file`, with `now` in Unix seconds.
    public func tier(for file: FileFacts, now: Int64) -> Tier {
        for rule in rules where rule.conditions.allSatisfy({ $0.holds(for: file, now: now) }) { return rule.tier }
        return .hot
    }

    /// Whether any rule can place a file cold (so a destination needs a cold store).
    public var canPlaceCold: Bool { rules.contains { $0.tier == .cold } }

    private static func condition(_ c: String, rule n: Int, in part: String) throws(TierPolicyError) -> Condition {
        for (prefix, above) in [("size>", true), ("size<", false)] where c.hasPrefix(prefix) {
            let value = String(c.dropFirst(prefix.count))
            let bytes: Int
            do { bytes = try ByteQuantity.parseSize(value) } catch {
                throw TierPolicyError("tier policy rule \(n) '\(part)': '\(value)' is not a size; write it like 128KiB, 1MiB or 2GB")
            }
            return above ? .sizeAbove(UInt64(bytes)) : .sizeBelow(UInt64(bytes))
        }
        for (prefix, above) in [("age>", true), ("age<", false)] where c.hasPrefix(prefix) {
            let value = String(c.dropFirst(prefix.count))
            guard let seconds = age(value) else {
                throw TierPolicyError("tier policy rule \(n) '\(part)': '\(value)' is not an age; write it like 30d, 12h, 90m or 2w")
            }
            return above ? .ageAbove(seconds) : .ageBelow(seconds)
        }
        if c.hasPrefix("size") || c.hasPrefix("age") {
            throw TierPolicyError("tier policy rule \(n) '\(part)': '\(c)' is not a condition; use size>N, size<N, age>D or age<D")
        }
        do { return .glob(try Glob(c)) } catch {
            throw TierPolicyError("tier policy rule \(n) '\(part)': \(error.description)")
        }
    }

    /// `30d`, `12h`, `90m`, `2w` (and `45s`) in seconds; nil for anything else, and for an age
    /// that does not fit in 64 bits of seconds.
    static func age(_ text: String) -> Int64? {
        guard let unit = text.last, let n = Int64(text.dropLast()), n >= 0 else { return nil }
        let seconds: Int64
        switch unit {
        case "s": seconds = 1
        case "m": seconds = 60
        case "h": seconds = 3_600
        case "d": seconds = 86_400
        case "w": seconds = 604_800
        default: return nil
        }
        let (age, overflow) = n.multipliedReportingOverflow(by: seconds)
        return overflow ? nil : age
    }
}

public struct TierPolicyError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension StringProtocol {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }
}
