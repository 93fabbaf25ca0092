@testable import BargeAgent
import BargeWire
import Testing

/// How a destination agent compares a finished file's mode and mtime with what its finish set
/// (`verify`, protocol 22).
struct AttributesCheckTests {
    static let expected = VerifyRequest.Attributes(file: 0, mode: 0o104755, mtimeSeconds: 1_234_567_890, mtimeNanoseconds: 123_456_789)

    /// The mode as a finish sets it (no set-user-ID), the mtime to the nanosecond; both values
    /// named, in UTC.
    @Test func namesWhatDiffersWithBothValues() {
        let e = Self.expected
        #expect(AttributesCheck.differences(mode: 0o100755, mtimeSeconds: e.mtimeSeconds, mtimeNanoseconds: e.mtimeNanoseconds, expected: e) == nil)
        #expect(AttributesCheck.differences(mode: 0o100600, mtimeSeconds: e.mtimeSeconds, mtimeNanoseconds: e.mtimeNanoseconds, expected: e)
                == "mode 0600, expected 0755")
        #expect(AttributesCheck.differences(mode: 0o100755, mtimeSeconds: 5, mtimeNanoseconds: 7, expected: e)
                == "mtime 1970-01-01T00:00:05.000000007Z, expected 2009-02-13T23:31:30.123456789Z")
        // Past the first of a reply, only what differs (a reply to a `chmod -R` stays small).
        #expect(AttributesCheck.differences(mode: 0o100600, mtimeSeconds: 5, mtimeNanoseconds: 7, expected: e, detailed: false) == "mode; mtime")
    }

    /// A file system that keeps whole microseconds or whole seconds cuts the time it was given:
    /// the same, not a difference that setting again could never clear. Another second, or other
    /// digits kept, still differ.
    @Test func aTimeCutByTheFileSystemIsTheSame() {
        let e = Self.expected
        for (s, ns) in [(e.mtimeSeconds, Int32(123_456_000)), (e.mtimeSeconds, 0)] {
            #expect(AttributesCheck.sameTime(s, ns, as: e.mtimeSeconds, e.mtimeNanoseconds), "\(s).\(ns)")
        }
        for (s, ns) in [(e.mtimeSeconds + 1, Int32(0)), (e.mtimeSeconds, 123_457_000), (e.mtimeSeconds, 123_456_780)] {
            #expect(!AttributesCheck.sameTime(s, ns, as: e.mtimeSeconds, e.mtimeNanoseconds), "\(s).\(ns)")
        }
    }

    @Test func timestampsArePaddedAndInUTC() {
        #expect(AttributesCheck.timestamp(-62_135_596_800, 5) == "0001-01-01T00:00:00.000000005Z")
        #expect(AttributesCheck.timestamp(1_600_000_000, 0) == "2020-09-13T12:26:40.000000000Z")
    }
}
