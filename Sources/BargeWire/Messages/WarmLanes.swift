import NIOCore

/// Coordinator → source agent (protocol version 12), when a job starts: open and authenticate
/// data-plane connections to these destination agents now, so that they are ready when the job's
/// first unit is assigned. The coordinator sends it as it asks for the scan, and the connections
/// open while the scan and the destination's quick check run; without it, the first unit pays
/// TCP's handshake and `hello`/`challenge` after its assignment. An agent that already holds
/// connections to a destination opens none. Nothing is assigned by it, and nothing is answered.
public struct WarmLanes: Hashable, Sendable, PayloadCodable {
    /// At most this many destinations in one message.
    public static let maxDestinations = 16

    public var destinations: [DataPeer]

    public init(destinations: [DataPeer]) {
        precondition(destinations.count <= Self.maxDestinations)
        self.destinations = destinations
    }

    init(from r: inout PayloadReader) throws(WireError) {
        destinations = try r.list("destinations", minimumSize: DataPeer.minimumSize, maxCount: Self.maxDestinations) { (r: inout PayloadReader) throws(WireError) in
            try DataPeer(from: &r)
        }
    }

    func write(to b: inout ByteBuffer) {
        b.writeList(destinations) { b, d in d.write(to: &b) }
    }
}
