import Foundation

/// The lines of a file, read a megabyte at a time (an audit trail of millions of entries is
/// never held whole).
public struct LineReader: Sequence, IteratorProtocol {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var start = 0
    private var done = false

    public init?(path: String) {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        handle = h
    }

    public mutating func next() -> Substring? {
        while true {
            if let i = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
                defer { start = i + 1 }
                return Substring(String(decoding: buffer[start..<i], as: UTF8.self))
            }
            if done {
                guard start < buffer.count else { return nil }
                defer { start = buffer.count }
                return Substring(String(decoding: buffer[start...], as: UTF8.self))
            }
            buffer.removeFirst(start)
            start = 0
            let chunk = handle.readData(ofLength: 1 << 20)
            if chunk.isEmpty { done = true } else { buffer.append(contentsOf: chunk) }
        }
    }
}
