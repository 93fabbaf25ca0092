import NIOCore

/// Reads a message from a complete payload: any shortfall, bad UTF-8, over-long string or
/// leftover byte is a `WireError.malformed` naming the message type.
struct PayloadReader {
    var buffer: ByteBuffer
    let type: MessageType

    init(_ frame: Frame) {
        buffer = frame.payload
        type = frame.type
    }

    init(buffer: ByteBuffer, type: MessageType) {
        self.buffer = buffer
        self.type = type
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type = T.self, _ field: String) throws(WireError) -> T {
        guard let v = buffer.readInteger(as: T.self) else { throw .malformed(type, "truncated at \(field)") }
        return v
    }

    /// A size, offset or count of bytes: at most `maxQuantity`. Every one of them becomes an
    /// `off_t` or an SQLite integer somewhere, and sums of them must fit too: a peer holding the
    /// token once crashed an agent with a file of 2^63 bytes and the coordinator with a scanned
    /// entry of 2^64 - 1.
    mutating func quantity(_ field: String) throws(WireError) -> UInt64 {
        let v = try integer(UInt64.self, field)
        guard v <= Self.maxQuantity else { throw .malformed(type, "\(field) of \(v) is over 2^56 (64 PiB), the most Barge handles") }
        return v
    }

    /// 64 PiB: far beyond any file, yet 127 of them still add up inside a signed 64-bit integer
    /// (the coordinator's sums of what peers report saturate beyond that: `addingSaturated`).
    static let maxQuantity: UInt64 = 1 << 56

    /// An id (unit, request, batch): it fits a signed 64-bit integer, as the journal keeps it.
    mutating func identifier(_ field: String) throws(WireError) -> UInt64 {
        let v = try integer(UInt64.self, field)
        guard v <= UInt64(Int64.max) else { throw .malformed(type, "\(field) \(v) is over 2^63 - 1") }
        return v
    }

    mutating func bytes(_ count: Int, _ field: String) throws(WireError) -> [UInt8] {
        guard let v = buffer.readBytes(length: count) else { throw .malformed(type, "truncated at \(field)") }
        return v
    }

    /// A u16 length, then that many bytes of UTF-8.
    mutating func string(_ field: String, maxLength: Int) throws(WireError) -> String {
        let length = Int(try integer(UInt16.self, field))
        guard length <= maxLength else { throw .malformed(type, "\(field) of \(length) bytes is over \(maxLength)") }
        let raw = try bytes(length, field)
        guard let s = String(validating: raw, as: UTF8.self) else { throw .malformed(type, "\(field) is not UTF-8") }
        return s
    }

    /// A reason or detail in words (at most `ErrorMessage.maxReasonLength` bytes), its control
    /// characters escaped: it goes into logs, the journal and terminals.
    mutating func reason(_ field: String) throws(WireError) -> String {
        ControlCharacters.escaped(try string(field, maxLength: ErrorMessage.maxReasonLength))
    }

    func finish() throws(WireError) {
        guard buffer.readableBytes == 0 else { throw .malformed(type, "\(buffer.readableBytes) unexpected trailing bytes") }
    }
}

extension ByteBuffer {
    /// A u16 length, then the UTF-8 bytes. Callers keep strings under their message's limit.
    @discardableResult
    mutating func writeWireString(_ s: String) -> Int {
        let utf8 = Array(s.utf8)
        precondition(utf8.count <= Int(UInt16.max), "wire string too long")
        return writeInteger(UInt16(utf8.count)) + writeBytes(utf8)
    }
}
