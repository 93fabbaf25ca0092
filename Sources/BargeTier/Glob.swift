/// A path glob for placement rules: `*` and `?` within one component, `**` across components,
/// `[abc]`, `[a-z]` and `[!abc]` for one character. Without a `/` it matches the last component
/// (the file's name) anywhere; with one, the whole relative path.
public struct Glob: Sendable, Hashable, CustomStringConvertible {
    enum Token: Sendable, Hashable {
        case literal(Character)
        case any          // ?
        case star         // *
        case globstar     // ** as a whole component
        case separator    // /
        case set([ClosedRange<Character>], negated: Bool)
    }

    public let description: String
    let tokens: [Token]
    let matchesName: Bool

    public init(_ pattern: String) throws(TierPolicyError) {
        guard !pattern.isEmpty else { throw TierPolicyError("an empty path glob") }
        var p = pattern
        if p.hasPrefix("/") { p.removeFirst() }  // rooted at the job's root, as it is anyway
        guard !p.isEmpty else { throw TierPolicyError("'\(pattern)' matches nothing (a glob of '/' alone)") }
        description = pattern
        matchesName = !pattern.contains("/")
        var tokens: [Token] = []
        let chars = Array(p)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            switch c {
            case "*":
                let atStart = i == 0 || chars[i - 1] == "/"
                if i + 1 < chars.count, chars[i + 1] == "*" {
                    let atEnd = i + 2 == chars.count || chars[i + 2] == "/"
                    guard atStart && atEnd else {
                        throw TierPolicyError("'\(pattern)': '**' must be a whole path component, as in raw/** or **/x.nc")
                    }
                    tokens.append(.globstar)
                    i += 2
                    if i < chars.count { i += 1 }  // the '/' after **/ belongs to it
                    continue
                }
                tokens.append(.star)
            case "?": tokens.append(.any)
            case "/": tokens.append(.separator)
            case "[":
                var j = i + 1
                var negated = false
                if j < chars.count, chars[j] == "!" || chars[j] == "^" { negated = true; j += 1 }
                var ranges: [ClosedRange<Character>] = []
                var first = true
                while j < chars.count, chars[j] != "]" || first {
                    first = false
                    let lo = chars[j]
                    if j + 2 < chars.count, chars[j + 1] == "-", chars[j + 2] != "]" {
                        let hi = chars[j + 2]
                        guard lo <= hi else { throw TierPolicyError("'\(pattern)': the range \(lo)-\(hi) is backwards") }
                        ranges.append(lo...hi)
                        j += 3
                    } else {
                        ranges.append(lo...lo)
                        j += 1
                    }
                }
                guard j < chars.count else { throw TierPolicyError("'\(pattern)': a '[' without its ']'") }
                tokens.append(.set(ranges, negated: negated))
                i = j
            case "\\":
                guard i + 1 < chars.count else { throw TierPolicyError("'\(pattern)' ends in a lone '\\'") }
                i += 1
                tokens.append(.literal(chars[i]))
            default: tokens.append(.literal(c))
            }
            i += 1
        }
        self.tokens = tokens
    }

    /// Whether `path` (relative, `/`-separated) matches. Each (token, character) pair is tried
    /// once at most (`Attempts`): a pattern of many stars against a long name takes time in
    /// proportion to their product, not exponential time (`*a*a*a*a*a*a*a*a*a*a*b` against 100
    /// `a`s would have taken some 10^14 steps, on the scheduler, for each file planned).
    public func matches(_ path: String) -> Bool {
        let subject = matchesName ? Substring(path.split(separator: "/").last ?? "") : Substring(path)
        let text = Array(subject)
        var failed = Attempts(tokens: tokens.count, characters: text.count)
        return Self.match(tokens, 0, text, 0, &failed)
    }

    /// The (token, character) positions known not to match: one bit each.
    struct Attempts {
        private var bits: [UInt64]
        private let stride: Int

        init(tokens: Int, characters: Int) {
            stride = characters + 1
            bits = [UInt64](repeating: 0, count: ((tokens + 1) * stride + 63) / 64)
        }

        func contains(_ token: Int, _ character: Int) -> Bool {
            let i = token * stride + character
            return bits[i >> 6] & (1 << UInt64(i & 63)) != 0
        }

        mutating func insert(_ token: Int, _ character: Int) {
            let i = token * stride + character
            bits[i >> 6] |= 1 << UInt64(i & 63)
        }
    }

    private static func match(_ pattern: [Token], _ p: Int, _ text: [Character], _ t: Int, _ failed: inout Attempts) -> Bool {
        guard p < pattern.count else { return t == text.count }
        if failed.contains(p, t) { return false }
        let matched: Bool
        switch pattern[p] {
        case .literal(let c):
            matched = t < text.count && text[t] == c && match(pattern, p + 1, text, t + 1, &failed)
        case .any:
            matched = t < text.count && text[t] != "/" && match(pattern, p + 1, text, t + 1, &failed)
        case .set(let ranges, let negated):
            matched = t < text.count && text[t] != "/" && ranges.contains { $0.contains(text[t]) } != negated
                && match(pattern, p + 1, text, t + 1, &failed)
        case .separator:
            matched = t < text.count && text[t] == "/" && match(pattern, p + 1, text, t + 1, &failed)
        case .star:
            var i = t
            while true {
                if match(pattern, p + 1, text, i, &failed) { matched = true; break }
                guard i < text.count, text[i] != "/" else { matched = false; break }
                i += 1
            }
        case .globstar:
            // Zero or more whole components: try here, then after each '/'.
            guard p + 1 < pattern.count else { return true }
            var i = t
            while true {
                if match(pattern, p + 1, text, i, &failed) { matched = true; break }
                guard let slash = text[i...].firstIndex(of: "/") else { matched = false; break }
                i = slash + 1
            }
        }
        if !matched { failed.insert(p, t) }
        return matched
    }
}
