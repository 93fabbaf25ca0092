import BargeDigest
import NIOCore

extension ByteBuffer {
    /// Reads one frame, or returns nil (reader index unchanged) until all of it has arrived. The
    /// header is checked field by field as soon as each field is readable, so a bad magic, version,
    /// type or flags, or a length over `maxPayloadLength`, is refused before the body is awaited.
    public mutating func readFrame(maxPayloadLength: Int) throws(WireError) -> Frame? {
        let start = readerIndex
        let available = readableBytes
        if available >= 4, let magic = getInteger(at: start, as: UInt32.self), magic != Frame.magic {
            throw .badMagic(magic)
        }
        if available >= 5, let version = getInteger(at: start + 4, as: UInt8.self), version != Frame.version {
            throw .unsupportedFrameVersion(version)
        }
        var type: MessageType?
        if available >= 6, let raw = getInteger(at: start + 5, as: UInt8.self) {
            guard let t = MessageType(rawValue: raw) else { throw .unknownType(raw) }
            type = t
        }
        var flags: UInt16 = 0
        if available >= 8, let f = getInteger(at: start + 6, as: UInt16.self) {
            // Bit 0 marks a sealed payload (version 8); whether one is due is the session's to check.
            guard f == 0 || f == Frame.sealedFlag else { throw .unsupportedFlags(f) }
            flags = f
        }
        guard available >= Frame.headerSize, let type,
              let length = getInteger(at: start + 8, as: UInt32.self),
              let checksum = getInteger(at: start + 12, as: UInt64.self)
        else { return nil }
        guard length <= maxPayloadLength else { throw .frameTooLarge(length: length, limit: maxPayloadLength) }
        guard available >= Frame.headerSize + Int(length) else { return nil }

        moveReaderIndex(forwardBy: Frame.headerSize)
        let payload = readSlice(length: Int(length))!
        // A sealed frame is checked by its tag when it is opened, which a checksum would only repeat.
        if flags != Frame.sealedFlag {
            let actual = payload.withUnsafeReadableBytes { XXH3.hash64($0) }
            guard actual == checksum else { throw .checksumMismatch(expected: checksum, actual: actual) }
        }
        return Frame(type: type, flags: flags, payload: payload)
    }

    /// Writes `frame` (header and payload); returns the bytes written.
    @discardableResult
    public mutating func writeFrame(_ frame: Frame) -> Int {
        var n = writeFrameHeader(frame)
        var payload = frame.payload
        n += writeBuffer(&payload)
        return n
    }

    /// Writes the 20-byte header of `frame`, whose checksum covers its payload (0 for a sealed
    /// frame, whose GCM tag already covers every byte of it).
    @discardableResult
    public mutating func writeFrameHeader(_ frame: Frame) -> Int {
        let checksum = frame.flags == Frame.sealedFlag ? 0 : frame.payload.withUnsafeReadableBytes { XXH3.hash64($0) }
        var n = writeInteger(Frame.magic)
        n += writeInteger(Frame.version)
        n += writeInteger(frame.type.rawValue)
        n += writeInteger(frame.flags)
        n += writeInteger(UInt32(frame.payload.readableBytes))
        n += writeInteger(checksum)
        return n
    }
}
