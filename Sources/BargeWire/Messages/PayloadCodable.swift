import NIOCore

/// A message body that reads and writes itself. The message families added after the handshake
/// (scan, task, verify, entries) implement this, and `Message` only dispatches on the type.
protocol PayloadCodable {
    init(from r: inout PayloadReader) throws(WireError)
    func write(to b: inout ByteBuffer)
}

extension PayloadReader {
    mutating func flag(_ field: String) throws(WireError) -> Bool {
        let v = try integer(UInt8.self, field)
        guard v <= 1 else { throw .malformed(type, "\(field) must be 0 or 1, not \(v)") }
        return v == 1
    }

    /// A u32 count, then that many elements. The count is checked against the bytes left (each
    /// element takes at least `minimumSize`), so a hostile count never reserves memory.
    mutating func list<T>(_ field: String, minimumSize: Int, maxCount: Int = .max,
                          _ element: (inout PayloadReader) throws(WireError) -> T) throws(WireError) -> [T] {
        let count = Int(try integer(UInt32.self, field))
        // Refused on its count, before any element is read.
        guard count <= maxCount else { throw .malformed(type, "\(count) \(field), more than \(maxCount)") }
        guard count <= buffer.readableBytes / max(1, minimumSize) else {
            throw .malformed(type, "\(field) count \(count) does not fit in \(buffer.readableBytes) bytes")
        }
        var out: [T] = []
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(try element(&self)) }
        return out
    }
}

extension ByteBuffer {
    mutating func writeFlag(_ v: Bool) { writeInteger(UInt8(v ? 1 : 0)) }

    mutating func writeList<T>(_ items: [T], _ element: (inout ByteBuffer, T) -> Void) {
        writeInteger(UInt32(items.count))
        for item in items { element(&self, item) }
    }
}

/// Strings on the wire are capped; callers that build messages from user data shorten them here.
extension String {
    func truncatedUTF8(_ max: Int) -> String {
        guard utf8.count > max else { return self }
        var s = self
        while s.utf8.count > max { s.removeLast() }
        return s
    }
}
