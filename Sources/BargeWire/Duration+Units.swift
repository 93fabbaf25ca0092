import NIOCore

extension Duration {
    /// The duration in whole nanoseconds (attoseconds below a nanosecond are dropped).
    public var wholeNanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }

    public var wholeMilliseconds: Int64 { wholeNanoseconds / 1_000_000 }

    /// The duration in seconds, fractions included.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }

    /// The same span as NIO's `TimeAmount`.
    public var timeAmount: TimeAmount { .nanoseconds(wholeNanoseconds) }
}
