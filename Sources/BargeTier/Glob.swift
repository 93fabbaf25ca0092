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

    /// Whether `path` (relative, `/`-separated) matches.
    public func matches(_ path: String) -> Bool {
        let subject = matchesName ? Substring(path.split(separator: "/").last ?? "") : Substring(path)
        return Self.match(tokens[...], Array(subject)[...])
    }

    private static func match(_ pattern: ArraySlice<Token>, _ text: ArraySlice<Character>) -> Bool {
        guard let token = pattern.first else { return text.isEmpty }
        let rest = pattern.dropFirst()
        switch token {
        case .literal(let c):
            return text.first == c && match(rest, text.dropFirst())
        case .any:
            guard let c = text.first, c != "/" else { return false }
            return match(rest, text.dropFirst())
        case .set(let ranges, let negated):
            guard let c = text.first, c != "/" else { return false }
            return ranges.contains { $0.contains(c) } != negated && match(rest, text.dropFirst())
        case .separator:
            return text.first == "/" && match(rest, text.dropFirst())
        case .star:
            var t = text
            while true {
                if match(rest, t) { return true }
                guard let c = t.first, c != "/" else { return false }
                t = t.dropFirst()
            }
        case .globstar:
            // Zero or more whole components: try here, then after each '/'.
            if rest.isEmpty { return true }
            var t = text
            while true {
                if match(rest, t) { return true }
                guard let slash = t.firstIndex(of: "/") else { return false }
                t = t[t.index(after: slash)...]
            }
        }
    }
}
