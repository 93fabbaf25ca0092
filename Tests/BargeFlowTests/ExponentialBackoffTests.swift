import BargeFlow
import Testing

struct ExponentialBackoffTests {
    @Test func doublesUpToTheMaximumWithJitterAndResets() {
        var b = ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1))
        #expect((0..<6).map { _ in b.next(fraction: 1) } ==
                [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
        #expect(b.next(fraction: 0) == .milliseconds(500))  // jitter: between half and all of the step
        b.reset()
        #expect(b.next(fraction: 0.5) == .milliseconds(75))
    }

    @Test func theDelayOfARetryDependsOnlyOnItsNumber() {
        let b = ExponentialBackoff(initial: .milliseconds(500), maximum: .seconds(30))
        #expect(b.delay(attempt: 0, fraction: 1) == .milliseconds(500))
        #expect(b.delay(attempt: 2, fraction: 1) == .seconds(2))
        #expect(b.delay(attempt: 2, fraction: 0) == .seconds(1))
        #expect(b.delay(attempt: 40, fraction: 1) == .seconds(30))
        #expect(b.delay(attempt: -3, fraction: 1) == .milliseconds(500))
    }
}
