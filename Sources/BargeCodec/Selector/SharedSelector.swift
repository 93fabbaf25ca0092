import Foundation

/// One `CodecSelector` for several encoders at once: an agent's streams each have an
/// `AdaptiveEncoder`, and sharing the selector pools what they learn. Each stream sees only a few
/// chunks of a class per unit; alone, it would rarely reach its turn to explore another candidate,
/// and would keep the first codec its priors favoured. Choosing and learning take a lock; encoding
/// does not.
public final class SharedSelector: @unchecked Sendable {
    private let lock = NSLock()
    private var selector: CodecSelector

    public init(_ selector: CodecSelector = CodecSelector()) {
        self.selector = selector
    }

    public func withSelector<T>(_ body: (inout CodecSelector) -> T) -> T {
        lock.withLock { body(&selector) }
    }

    /// A copy of the selector as it is now.
    public var snapshot: CodecSelector { withSelector { $0 } }
}
