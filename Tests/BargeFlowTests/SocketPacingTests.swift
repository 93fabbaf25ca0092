import BargeFlow
import Testing

struct SocketPacingTests {
    @Test func noCapUntilThePathsRateIsKnown() {
        #expect(SocketPacing.cap(bottleneck: nil, sockets: 4) == nil)
        #expect(SocketPacing.cap(bottleneck: 0, sockets: 4) == nil)
        #expect(SocketPacing.cap(bottleneck: .nan, sockets: 4) == nil)
        #expect(SocketPacing.cap(bottleneck: .infinity, sockets: 4) == nil)
        // Beyond any link, and beyond what a UInt64 holds: no cap, not a trap.
        #expect(SocketPacing.cap(bottleneck: 1e300, sockets: 4) == nil)
        #expect(SocketPacing.cap(bottleneck: 2e19, sockets: 1) == nil)
        #expect(SocketPacing.cap(bottleneck: 0.79e12, sockets: 1) == 987_500_000_000)
    }

    /// Each socket may pace at its share of the bottleneck, with the headroom; no sockets active
    /// yet counts as one, so that the first socket has the whole rate.
    @Test func eachSocketGetsItsShareWithHeadroom() {
        #expect(SocketPacing.cap(bottleneck: 100e6, sockets: 4) == 31_250_000)
        #expect(SocketPacing.cap(bottleneck: 100e6, sockets: 1) == 125_000_000)
        #expect(SocketPacing.cap(bottleneck: 100e6, sockets: 0) == 125_000_000)
        #expect(SocketPacing.cap(bottleneck: 1000, sockets: 4) == UInt64(SocketPacing.least))
    }

    /// The cap is set again only when it comes, goes, or moves by an eighth or more.
    @Test func theCapIsSetAgainOnlyWhenItMovesEnough() {
        #expect(!SocketPacing.needsUpdate(current: nil, wanted: nil))
        #expect(SocketPacing.needsUpdate(current: nil, wanted: 5))
        #expect(SocketPacing.needsUpdate(current: 5, wanted: nil))
        #expect(!SocketPacing.needsUpdate(current: 800, wanted: 800))
        #expect(!SocketPacing.needsUpdate(current: 800, wanted: 899))
        #expect(SocketPacing.needsUpdate(current: 800, wanted: 900))
        #expect(!SocketPacing.needsUpdate(current: 800, wanted: 701))
        #expect(SocketPacing.needsUpdate(current: 800, wanted: 700))
    }
}
