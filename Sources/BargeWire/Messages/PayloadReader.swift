import BargeDigest
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

    /// Version 13's AEAD rates: AES-256-GCM's, then ChaCha20-Poly1305's, each a u16.
    mutating func aeadRates() throws(WireError) -> AEADRates {
        let aes = try integer(UInt16.self, "AES-256-GCM rate")
        return AEADRates(aes256GCM: aes, chacha20Poly1305: try integer(UInt16.self, "ChaCha20-Poly1305 rate"))
    }

    func finish() throws(WireError) {
        guard buffer.readableBytes == 0 else { throw .malformed(type, "\(buffer.readableBytes) unexpected trailing bytes") }
    }
}

extension ByteBuffer {
    @discardableResult
    mutating func writeAEADRates(_ rates: AEADRates) -> Int {
        writeInteger(rates.aes256GCM) + writeInteger(rates.chacha20Poly1305)
    }

    /// A u16 length, then the UTF-8 bytes. Callers keep strings under their message's limit.
    @discardableResult
    mutating func writeWireString(_ s: String) -> Int {
        let utf8 = Array(s.utf8)
        precondition(utf8.count <= Int(UInt16.max), "wire string too long")
        return writeInteger(UInt16(utf8.count)) + writeBytes(utf8)
    }
}
