/// A reusable, growable byte buffer for intermediate results (shuffled planes, say), so that the
/// encoder and decoder do not allocate per chunk.
final class ScratchBuffer {
    private(set) var storage: UnsafeMutableRawBufferPointer

    init() { storage = UnsafeMutableRawBufferPointer(start: nil, count: 0) }

    deinit { storage.deallocate() }

    /// A buffer of exactly `count` bytes, valid until the next call.
    func take(_ count: Int) -> UnsafeMutableRawBufferPointer {
        if storage.count < count {
            storage.deallocate()
            storage = .allocate(byteCount: count, alignment: 64)
        }
        return UnsafeMutableRawBufferPointer(rebasing: storage[0..<count])
    }
}
