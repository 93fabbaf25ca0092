import NIOCore

/// One assignment of one unit: the key of a report, of its acknowledgement, and of the units an
/// agent holds (protocol version 5).
public struct AssignmentKey: Hashable, Sendable, PayloadCodable, CustomStringConvertible {
    public var job: String
    public var unit: UInt64
    public var assignment: UInt32

    public init(job: String, unit: UInt64, assignment: UInt32) {
        self.job = job
        self.unit = unit
        self.assignment = assignment
    }

    public var description: String { "unit \(unit) of job \(job) (assignment \(assignment))" }

    static let minimumSize = 2 + 8 + 4

    init(from r: inout PayloadReader) throws(WireError) {
        job = try r.string("job", maxLength: ChunkPlace.maxJobLength)
        unit = try r.identifier("unit")
        assignment = try r.integer(UInt32.self, "assignment")
    }

    func write(to b: inout ByteBuffer) {
        b.writeWireString(job)
        b.writeInteger(unit)
        b.writeInteger(assignment)
    }
}

extension TaskDone {
    /// What the coordinator's `report ack` names.
    public var key: AssignmentKey { AssignmentKey(job: job, unit: unit, assignment: assignment) }
}

extension TaskFailed {
    public var key: AssignmentKey { AssignmentKey(job: job, unit: unit, assignment: assignment) }
}

/// Agent → coordinator, first after `registered` on every connection (version 5): the units it
/// is running, each with the assignment it answers. The coordinator re-queues the units it had
/// given this agent that are not listed, and drops (`task drop`) the listed ones it no longer
/// gives it.
public struct Holding: Hashable, Sendable, PayloadCodable {
    public var units: [AssignmentKey]

    public init(units: [AssignmentKey]) { self.units = units }

    init(from r: inout PayloadReader) throws(WireError) {
        units = try r.list("units", minimumSize: AssignmentKey.minimumSize) { (r: inout PayloadReader) throws(WireError) in
            try AssignmentKey(from: &r)
        }
    }

    func write(to b: inout ByteBuffer) {
        b.writeList(units) { b, u in u.write(to: &b) }
    }
}
