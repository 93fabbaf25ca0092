@testable import BargeCoordinator
import Testing

/// When a job whose evidence root could not be made is tried again.
struct RetryTimesTests {
    @Test func failuresWaitTwiceAsLongEachTimeUpToTheLongestAndSuccessForgets() {
        var retries = RetryTimes<String>(first: 4, longest: 3_600)
        #expect(retries.isDue("j", now: 0))
        var now = 0.0
        var waits: [Double] = []
        for _ in 0..<12 {
            let (_, wait) = retries.failed("j", now: now)
            waits.append(wait)
            #expect(!retries.isDue("j", now: now + wait - 0.5))
            now += wait
            #expect(retries.isDue("j", now: now))
        }
        #expect(waits == [4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 3_600, 3_600])
        #expect(retries.isDue("other", now: now))
        retries.succeeded("j")
        #expect(retries.isDue("j", now: 0) && retries.waiting == 0)
        // A thousand failures in a row neither overflow nor wait past the longest.
        for _ in 0..<1_000 { _ = retries.failed("k", now: 0) }
        #expect(retries.failed("k", now: 0) == (1_001, 3_600))
        retries.keep(only: ["j"])
        #expect(retries.waiting == 0)
    }
}
