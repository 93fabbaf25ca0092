@testable import BargeWire
import Testing

/// The policy for a listener's handshake slots: when every slot is held, a newcomer takes one
/// from the address holding the most, if that address would still hold more than the
/// newcomer's; the connection that gives way is the oldest that has sent nothing, else the newest.
struct HandshakeSlotsTests {
    @Test func aFullListenerGivesASlotOfTheHeaviestAddressToANewcomer() {
        var slots = HandshakeSlots(limit: 8, perAddress: 4)
        var id = 0
        func arrive(_ address: String) -> HandshakeSlots.Decision {
            id += 1
            return slots.arrive(id, from: address)
        }
        // Room: everyone is let in, up to an address's share.
        for _ in 0..<4 { #expect(arrive("flood-1") == .admit(evicting: nil)) }      // 1...4
        #expect(arrive("flood-1") == .refuse(fromOneAddress: true))                 // 5
        for _ in 0..<3 { #expect(arrive("flood-2") == .admit(evicting: nil)) }      // 6...8
        #expect(arrive("peer") == .admit(evicting: nil))                            // 9
        #expect(slots.held == 8)
        // Full: a newcomer takes the oldest slot of the address holding the most.
        #expect(arrive("peer-2") == .admit(evicting: 1))                            // 10
        #expect(slots.held(by: "flood-1") == 3 && slots.held == 8)
        // flood-1 and flood-2 hold 3 each: the tie goes to the one whose oldest came first. A
        // connection that has spoken gives way last: flood-1's 2 and 3 have, so 4 goes.
        slots.heard(2, from: "flood-1")
        slots.heard(3, from: "flood-1")
        #expect(arrive("peer-3") == .admit(evicting: 4))                            // 11
        // flood-2 holds 3 and flood-1 2: flood-2's oldest silent one goes.
        #expect(arrive("peer-4") == .admit(evicting: 6))                            // 12
        // Now no address would still hold more than a newcomer: flood-1 and flood-2 hold 2,
        // the peers 1 each. Nobody is evicted; an address never takes from itself either.
        #expect(arrive("peer-5") == .refuse(fromOneAddress: false))                 // 13
        #expect(arrive("flood-2") == .refuse(fromOneAddress: false))                // 14
        // When every connection of the heaviest address has spoken, its newest goes (the
        // oldest is likeliest to have sent its `auth`, and counts itself connected).
        slots.heard(7, from: "flood-2")
        slots.heard(8, from: "flood-2")
        let given = [1, 4, 6].map { slots.forget($0) }, again = slots.forget(1)
        #expect(given == [true, true, true] && !again)
        slots.end(9, from: "peer")
        #expect(arrive("flood-2") == .admit(evicting: nil))                         // 15: flood-2 holds 3
        slots.heard(15, from: "flood-2")
        #expect(arrive("peer-6") == .admit(evicting: 15))                           // 16: all three spoke
        #expect(slots.held(by: "flood-2") == 2 && slots.held == 8)
        slots.heard(15, from: "flood-2")  // gone: nothing
        // A handshake that ended frees its slot; ending again, or one given away, frees nothing.
        slots.end(10, from: "peer-2")
        #expect(slots.held == 7)
        slots.end(10, from: "peer-2")
        slots.end(15, from: "flood-2")
        #expect(slots.held == 7)
        let fifteen = slots.forget(15), ten = slots.forget(10)
        #expect(fifteen && !ten)
    }

    @Test func slotsHeldByManyAddressesOfOneEachAreNotTaken() {
        var slots = HandshakeSlots(limit: 4, perAddress: 2)
        for i in 1...4 { #expect(slots.arrive(i, from: "a\(i)") == .admit(evicting: nil)) }
        #expect(slots.arrive(5, from: "b") == .refuse(fromOneAddress: false))
        slots.end(3, from: "a3")
        #expect(slots.arrive(6, from: "b") == .admit(evicting: nil))
        // b would then hold as many as the address it took from.
        #expect(slots.arrive(7, from: "b") == .refuse(fromOneAddress: false))
        #expect(slots.held(by: "b") == 1 && slots.held == 4)
    }
}
