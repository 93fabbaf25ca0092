import BargeTier
import Testing

struct TierPolicyTests {
    let now: Int64 = 1_800_000_000
    func file(_ path: String, size: UInt64 = 10, ageDays: Int64 = 0) -> FileFacts {
        FileFacts(path: path, size: size, mtime: now - ageDays * 86_400)
    }

    @Test func theIssuesExampleFirstMatchWins() throws {
        let p = try TierPolicy(parsing: "cold:raw/**;cold:age>90d,size>1MiB;hot")
        #expect(p.tier(for: file("raw/a/b/frame.tif"), now: now) == .cold)
        #expect(p.tier(for: file("raw/x"), now: now) == .cold)
        #expect(p.tier(for: file("rawdata/x"), now: now) == .hot)
        #expect(p.tier(for: file("old/big.h5", size: 2 << 20, ageDays: 91), now: now) == .cold)
        #expect(p.tier(for: file("old/small.h5", size: 1 << 20, ageDays: 91), now: now) == .hot)  // size>1MiB is strict
        #expect(p.tier(for: file("new/big.h5", size: 2 << 20, ageDays: 89), now: now) == .hot)
        #expect(p.description == "cold:raw/**;cold:age>90d,size>1MiB;hot")
        // size<N is strict too, and a rule may bound a size on both sides.
        let band = try TierPolicy(parsing: "hot:size<128KiB;cold:size>1GiB;cold:*.nc,size<1GiB;hot")
        #expect(band.tier(for: file("x.nc", size: 128 << 10 - 1), now: now) == .hot)
        #expect(band.tier(for: file("x.nc", size: 128 << 10), now: now) == .cold)
        #expect(band.tier(for: file("x.h5", size: 128 << 10), now: now) == .hot)
        #expect(band.tier(for: file("x.h5", size: (1 << 30) + 1), now: now) == .cold)
        #expect(p.canPlaceCold)
    }

    @Test func noMatchingRuleMeansHot() throws {
        let p = try TierPolicy(parsing: " cold : *.nc ")
        #expect(p.tier(for: file("a/b/c.nc"), now: now) == .cold)
        #expect(p.tier(for: file("c.nc.tmp"), now: now) == .hot)
        #expect(p.description == "cold:*.nc")
        #expect(!TierPolicy.allHot.canPlaceCold)
        #expect(TierPolicy.allHot.tier(for: file("x"), now: now) == .hot)
    }

    @Test func globs() throws {
        let cases: [(String, String, Bool)] = [
            ("*.nc", "x.nc", true), ("*.nc", "deep/dir/x.nc", true), ("*.nc", "x.nc4", false),
            ("raw/*.h5", "raw/a.h5", true), ("raw/*.h5", "raw/sub/a.h5", false), ("raw/*.h5", "x/raw/a.h5", false),
            ("**/out-?.h5", "out-1.h5", true), ("**/out-?.h5", "a/b/out-2.h5", true), ("**/out-?.h5", "a/out-12.h5", false),
            ("runs/**/ckpt", "runs/ckpt", true), ("runs/**/ckpt", "runs/1/2/ckpt", true), ("runs/**/ckpt", "runs/1/ckpt2", false),
            ("f[0-9][!a]", "f1b", true), ("f[0-9][!a]", "f1a", false), ("f[0-9][!a]", "fxb", false),
            ("/top.txt", "top.txt", true), ("/top.txt", "a/top.txt", false),
            ("a\\*b", "a*b", true), ("a\\*b", "axb", false),
            ("**", "anything/at/all", true),
            ("é*.dat", "été.dat", true),
        ]
        for (pattern, path, expected) in cases {
            #expect(try Glob(pattern).matches(path) == expected, "\(pattern) ~ \(path)")
        }
    }

    @Test func ages() throws {
        let p = try TierPolicy(parsing: "cold:age<2w,age>1d;hot:age>12h")
        #expect(p.tier(for: file("x", ageDays: 3), now: now) == .cold)
        #expect(p.tier(for: file("x", ageDays: 20), now: now) == .hot)
        #expect(p.tier(for: FileFacts(path: "x", size: 1, mtime: now - 3_600), now: now) == .hot)
    }

    /// An mtime at the ends of 64 bits (tmpfs and btrfs keep one) is the oldest, or the newest,
    /// there is; an age that does not fit in 64 bits of seconds is refused. Both trapped before:
    /// the coordinator planning a job with an age rule, or parsing an operator's policy.
    @Test func extremeAgesAndMtimesNeitherTrapNorWrap() throws {
        let p = try TierPolicy(parsing: "cold:age>36500d;hot")
        #expect(p.tier(for: FileFacts(path: "x", size: 1, mtime: .min), now: now) == .cold)
        #expect(p.tier(for: FileFacts(path: "x", size: 1, mtime: -9_223_372_036_854_775_000), now: now) == .cold)
        #expect(p.tier(for: FileFacts(path: "x", size: 1, mtime: .max), now: now) == .hot)
        let young = try TierPolicy(parsing: "cold:age<1h;hot")
        #expect(young.tier(for: FileFacts(path: "x", size: 1, mtime: .max), now: -now) == .cold)
        #expect(young.tier(for: FileFacts(path: "x", size: 1, mtime: .min), now: now) == .hot)
        for text in ["cold:age>15250284452472w", "cold:age<9223372036854775807m", "cold:age>99999999999999999999d"] {
            #expect(throws: TierPolicyError.self, "\(text)") { try TierPolicy(parsing: text) }
        }
        #expect(try TierPolicy(parsing: "cold:age>9223372036854775807s").rules.count == 1)
    }

    /// A glob of many stars against a long name that it does not match ends at once: each
    /// (token, character) pair is tried once. Before, `*a` eleven times and a `b`, against a name
    /// of 100 `a`s, backtracked some 10^14 times, on the coordinator's scheduler.
    @Test(.timeLimit(.minutes(1)))
    func globsOfManyStarsDoNotBacktrackExponentially() throws {
        let name = String(repeating: "a", count: 100)
        #expect(try !Glob(String(repeating: "*a", count: 11) + "*b").matches(name))
        #expect(try Glob(String(repeating: "*a", count: 11) + "*").matches(name))
        let deep = Array(repeating: name, count: 30).joined(separator: "/")
        let stars = Array(repeating: "**", count: 6).joined(separator: "/") + "/" + String(repeating: "*a", count: 8)
        #expect(try !Glob(stars + "*b").matches(deep))
        #expect(try Glob(stars + "*").matches(deep))
    }

    @Test func badPoliciesGetClearErrors() {
        let cases: [(String, String)] = [
            ("", "the tier policy is empty"),
            ("warm", "'warm' is not a tier; use hot or cold"),
            ("cold:*.nc;;hot", "rule 2 is empty"),
            ("cold:*.nc;", "rule 2 is empty"),
            ("cold:", "has an empty condition"),
            ("cold:size>1XB", "'1XB' is not a size"),
            ("cold:size<", "'' is not a size"),
            ("cold:age>30y", "'30y' is not an age"),
            ("cold:size=4", "'size=4' is not a condition"),
            ("cold:raw**", "'**' must be a whole path component"),
            ("cold:f[ab", "a '[' without its ']'"),
            ("cold:f[z-a]", "the range z-a is backwards"),
            ("cold:/", "matches nothing"),
        ]
        for (text, message) in cases {
            do {
                _ = try TierPolicy(parsing: text)
                Issue.record("'\(text)' was accepted")
            } catch {
                #expect(error.description.contains(message), "'\(text)': \(error.description)")
            }
        }
    }
}
