import BargeAgent
import Testing

/// The units that send at once: first come first served, a slot given back once, and a wait
/// that cancellation ends without taking a slot.
struct SendSlotsTests {
    @Test func slotsGoInOrderAndEachIsGivenBackOnce() async throws {
        let slots = SendSlots(2)
        let a = try await slots.acquire(), b = try await slots.acquire()
        #expect(slots.free == 0)
        let order = Recorder()
        let third = Task { let s = try await slots.acquire(); await order.add(3); return s }
        while await order.count == 0 && slots.waitingForTest < 1 { await Task.yield() }
        let fourth = Task { let s = try await slots.acquire(); await order.add(4); return s }
        while slots.waitingForTest < 2 { await Task.yield() }
        a.release()
        a.release()  // once only: the fourth still waits
        let c = try await third.value
        #expect(await order.values == [3])
        #expect(slots.free == 0)
        b.release()
        let d = try await fourth.value
        #expect(await order.values == [3, 4])
        c.release(); d.release()
        #expect(slots.free == 2)
    }

    @Test func aCancelledWaitTakesNoSlot() async throws {
        let slots = SendSlots(1)
        let held = try await slots.acquire()
        let waiter = Task { try await slots.acquire() }
        while slots.waitingForTest < 1 { await Task.yield() }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiter.value }
        #expect(slots.waitingForTest == 0)
        held.release()
        #expect(slots.free == 1)
        // Cancelled before it asks: it never waits.
        let early = Task { () async throws -> SendSlots.Slot in
            withUnsafeCurrentTask { $0?.cancel() }
            return try await slots.acquire()
        }
        await #expect(throws: CancellationError.self) { _ = try await early.value }
        #expect(slots.free == 1)
    }
}

private actor Recorder {
    var values: [Int] = []
    var count: Int { values.count }
    func add(_ v: Int) { values.append(v) }
}
