@testable import BargeWire
import Testing

/// The policy for a listener's handshake slots: a newcomer takes the slot of the oldest
/// connection from the address holding the most, when that address holds more than its own.
struct HandshakeSlotsTests {
    @Test func aFullListenerGivesTheHeaviestAddressesOldestSlotToANewcomer() {
        var slots = HandshakeSlots(limit: 6, perAddress: 3)
        var id = 0
        func arrive(_ address: String) -> HandshakeSlots.Decision {
            id += 1
            return slots.arrive(id, from: address)
        }
        // Room: everyone is let in, up to an address's share.
        for _ in 0..<3 { #expect(arrive("flood-1") == .admit(evicting: nil)) }      // 1, 2, 3
        #expect(arrive("flood-1") == .refuse(fromOneAddress: true))                 // 4
        for _ in 0..<2 { #expect(arrive("flood-2") == .admit(evicting: nil)) }      // 5, 6
        #expect(arrive("peer") == .admit(evicting: nil))                            // 7
        #expect(slots.held == 6)
        // Full: a newcomer takes the oldest slot of the address holding the most.
        #expect(arrive("peer-2") == .admit(evicting: 1))                            // 8
        #expect(slots.held(by: "flood-1") == 2 && slots.held == 6)
        // Now flood-1 and flood-2 hold 2 each: the tie goes to the oldest connection (2, flood-1's).
        #expect(arrive("peer-3") == .admit(evicting: 2))                            // 9
        // An address never takes a slot from one holding no more than one more than itself, nor
        // from itself: flooding harder only churns its own connections out.
        #expect(arrive("flood-2") == .refuse(fromOneAddress: false))                // 10
        #expect(arrive("peer") == .refuse(fromOneAddress: false))                   // 11
        #expect(slots.held(by: "flood-2") == 2 && slots.held(by: "peer") == 1)
        // A connection that gave its slot away says so when it ends, and frees nothing more.
        #expect(slots.end(1, from: "flood-1") == true)
        #expect(slots.held == 6)
        // One whose handshake ended frees its slot.
        #expect(slots.end(7, from: "peer") == false)
        #expect(slots.held == 5 && slots.held(by: "peer") == 0)
        #expect(arrive("peer") == .admit(evicting: nil))                            // 12
        // Ending twice, or an unknown id, changes nothing.
        #expect(slots.end(7, from: "peer") == false && slots.held == 6)
    }

    @Test func slotsHeldByManyAddressesOfOneEachAreNotTaken() {
        var slots = HandshakeSlots(limit: 4, perAddress: 2)
        for i in 1...4 { #expect(slots.arrive(i, from: "a\(i)") == .admit(evicting: nil)) }
        #expect(slots.arrive(5, from: "b") == .refuse(fromOneAddress: false))
        #expect(slots.end(3, from: "a3") == false)
        #expect(slots.arrive(6, from: "b") == .admit(evicting: nil))
        // b would then hold more than the address it took from.
        #expect(slots.arrive(7, from: "b") == .refuse(fromOneAddress: false))
        #expect(slots.held(by: "b") == 1 && slots.held == 4)
    }
}
