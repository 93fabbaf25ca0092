@testable import BargeCoordinator
import BargeWire
import Synchronization
import Testing

/// An agent's reports waiting for the scheduler (`ReportQueue`): bounded in reports and in
/// bytes, and taken in the order they came.
struct ReportQueueTests {
    static func progress(_ unit: UInt64) -> Message {
        .taskProgress(TaskProgress(job: "j", unit: unit, bytesDone: 1, wireBytes: 1))
    }

    @Test(.timeLimit(.minutes(1))) func reportsPastTheBytesWaitUntilSomeAreTaken() async throws {
        let queue = ReportQueue()
        try await queue.add(Self.progress(0), bytes: 3 << 20)
        final class Flag: Sendable { let on = Mutex(false) }
        let added = Flag()
        let adding = Task {
            try await queue.add(Self.progress(1), bytes: 3 << 20)
            added.on.withLock { $0 = true }
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(!added.on.withLock { $0 }, "6 MiB of reports waiting, past the 4 MiB bound")
        var taken: [Message] = []
        var it = queue.messages.makeAsyncIterator()
        if let m = await it.next() { taken.append(m); queue.took() }
        try await adding.value
        #expect(added.on.withLock { $0 })
        if let m = await it.next() { taken.append(m); queue.took() }
        #expect(taken == [Self.progress(0), Self.progress(1)])
        // A report larger than the bound alone is let in when nothing waits.
        try await queue.add(Self.progress(2), bytes: 16 << 20)
        queue.finish()
        #expect(await it.next() == Self.progress(2))
    }
}
