/// Who holds a listener's handshake slots: the policy `BargeServer` carries out as connections
/// arrive, speak, and end their handshakes.
///
/// A connection holds a slot from its accept until its handshake ends, which for a peer that
/// connects and says nothing is the handshake timeout (10 s). The slots are few (128), and a
/// limit per address keeps one client from taking them all; but a client at three addresses
/// took every slot, opening each connection again as soon as it was closed, and no agent or peer
/// got in while it went on (h2 of session 52, F2). So when every slot is held, a newcomer takes
/// a slot from the address holding the most, provided that address would still hold more than
/// the newcomer's own then. A peer's handshake takes a few round trips and holds one slot or a
/// few; a flood holds many from each of its addresses, and is what gives way.
///
/// The connection that gives way is the oldest that has sent nothing, else the newest: a client
/// that has sent its `auth` counts itself connected, and a `busy` then reaches its session rather
/// than its handshake (the review of session 53), so the connections furthest along are the last
/// to go. It is told `busy` (a peer tries again) and closed.
struct HandshakeSlots {
    /// Slots in all.
    let limit: Int
    /// Slots any one address may hold.
    let perAddress: Int
    /// Connections in their handshake, by address, oldest first.
    private var holders: [String: [Int]] = [:]
    /// Those of them that have sent a byte.
    private var spoken: Set<Int> = []
    /// Connections that gave their slot away, until `forget` is asked about them.
    private var evicted: Set<Int> = []
    private(set) var held = 0

    init(limit: Int, perAddress: Int) {
        self.limit = limit
        self.perAddress = perAddress
    }

    enum Decision: Equatable {
        /// The newcomer holds a slot; `evicting` (a connection id) gave its slot up for it.
        case admit(evicting: Int?)
        /// Every slot is held, and none by an address that would still hold more than the
        /// newcomer's; or the newcomer's address holds its share.
        case refuse(fromOneAddress: Bool)
    }

    /// Slots held by connections from `address`.
    func held(by address: String) -> Int { holders[address]?.count ?? 0 }

    /// Connection `id` (ids rise with arrival) from `address` wants a slot.
    mutating func arrive(_ id: Int, from address: String) -> Decision {
        let own = held(by: address)
        guard own < perAddress else { return .refuse(fromOneAddress: true) }
        var victim: Int?
        if held >= limit {
            // The address holding the most slots; among those that hold as many, the one whose
            // oldest connection came first.
            guard let heaviest = holders.max(by: { a, b in
                a.value.count != b.value.count ? a.value.count < b.value.count : a.value[0] > b.value[0]
            }), heaviest.key != address, heaviest.value.count - 1 > own + 1
            else { return .refuse(fromOneAddress: false) }
            let v = heaviest.value.first { !spoken.contains($0) } ?? heaviest.value[heaviest.value.count - 1]
            remove(v, from: heaviest.key)
            evicted.insert(v)
            victim = v
        }
        holders[address, default: []].append(id)
        held += 1
        return .admit(evicting: victim)
    }

    /// Connection `id` sent its first byte.
    mutating func heard(_ id: Int, from address: String) {
        if holders[address]?.contains(id) == true { spoken.insert(id) }
    }

    /// Connection `id`'s handshake ended (it succeeded, failed, or the connection closed): its
    /// slot is free. Nothing for a connection that had given its slot away, or ended before.
    mutating func end(_ id: Int, from address: String) {
        remove(id, from: address)
    }

    /// Whether connection `id` gave its slot away; asked once, when it is done with.
    mutating func forget(_ id: Int) -> Bool {
        evicted.remove(id) != nil
    }

    private mutating func remove(_ id: Int, from address: String) {
        guard var ids = holders[address], let at = ids.firstIndex(of: id) else { return }
        ids.remove(at: at)
        spoken.remove(id)
        held -= 1
        holders[address] = ids.isEmpty ? nil : ids
    }
}
