import BargeWire
import NIOCore

/// One libFuzzer input. Its first byte picks what the rest goes to:
///
/// - 0: the frame decoder, as a byte stream (every frame it yields is parsed as a message);
/// - 1: a message parser directly (the next byte is the type, the rest the payload), so that the
///   fuzzer reaches payload parsing without having to find valid checksums;
/// - 2: the server side of the handshake, fed the messages that mode 1 would parse, in order;
/// - 3: the client side of the handshake, likewise.
///
/// Anything may be refused; nothing may crash, hang or read out of bounds (AddressSanitizer).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let input = UnsafeBufferPointer(start: data + 1, count: size - 1)
    switch data[0] % 4 {
    case 0: decodeStream(input)
    case 1: _ = message(input)
    case 2:
        var server = ServerHandshake(token: token, name: "fuzz", nonce: nonce)
        for m in messages(input) { _ = server.receive(m) }
    default:
        var client = ClientHandshake(token: token, name: "fuzz", role: .agent, nonce: nonce)
        _ = client.start()
        for m in messages(input) { _ = client.receive(m) }
    }
    return 0
}

private let token = Array("fuzzing-token-0123456789abcdef".utf8)
private let nonce = [UInt8](repeating: 7, count: 32)

private func decodeStream(_ input: UnsafeBufferPointer<UInt8>) {
    var buffer = ByteBuffer(bytes: input)
    while buffer.readableBytes > 0 {
        guard let frame = try? buffer.readFrame(maxPayloadLength: 1 << 20) else { return }
        _ = try? Message(frame: frame)
    }
}

/// A message from a type byte and a payload.
private func message(_ input: UnsafeBufferPointer<UInt8>) -> Message? {
    guard let first = input.first, let type = MessageType(rawValue: first) else { return nil }
    return try? Message(frame: Frame(type: type, payload: ByteBuffer(bytes: UnsafeBufferPointer(rebasing: input.dropFirst()))))
}

/// Messages from records of: type byte, u16 length, payload.
private func messages(_ input: UnsafeBufferPointer<UInt8>) -> [Message] {
    var out: [Message] = []
    var i = 0
    while i + 3 <= input.count {
        let length = Int(input[i + 1]) << 8 | Int(input[i + 2])
        let end = min(input.count, i + 3 + length)
        var record = [input[i]]
        record += input[(i + 3)..<end]
        if let m = record.withUnsafeBufferPointer({ message($0) }) { out.append(m) }
        i = end
    }
    return out
}
