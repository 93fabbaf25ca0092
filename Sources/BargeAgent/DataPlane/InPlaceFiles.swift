import BargeStore
import DequeModule
import NIOConcurrencyHelpers

/// Files a unit brings whole (`HaveQuery.wholeBit`, protocol version 17) whose copy under their
/// final name may already hold their bytes, and the chunks of each found there so far.
///
/// An unchanged file sent again (`--checksum`, or a file only touched at the source) comes as
/// chunks by reference. Each was copied into a new partial copy from where the destination held
/// it, which was the same place of the same file, and the finish renamed that copy over the
/// file: the whole file written again, under a new inode. A chunk of a file recorded here is
/// instead read at its own place in the final copy and checked (XXH3-128), and left there; when
/// every byte of the file was found so, while the file stayed as it was (`UnchangedFinal.Identity`),
/// its finish keeps it in place and gives it only its mode and mtime, as `rsync --checksum`
/// leaves an identical file alone.
///
/// The first chunk that must be written (sent by value, or found elsewhere) opens a partial copy
/// as before, and the chunks recorded here are copied into it first (`take`): from then on the
/// file is received as any other.
///
/// Only for a file the unit brings whole: a large file's ranges go in units of their own,
/// possibly to another agent sharing the root, and its finish could not know what they found.
///
/// Bounded: the most recent `capacity` files; one forgotten is received as any other.
final class InPlaceFiles: Sendable {
    /// A chunk found at its own place in the final copy.
    struct Chunk: Sendable {
        let offset: UInt64
        let length: Int
        let id: [UInt8]
        let xxh: [UInt8]
    }

    /// What was found of one file: the chunks, the bytes they cover, and what the file was
    /// while they were read (nil before the first).
    struct File: Sendable {
        var identity: UnchangedFinal.Identity?
        var chunks: [Chunk] = []
        var covered = ByteRanges()

        /// Every one of its `size` bytes was found in place.
        func whole(_ size: UInt64) -> Bool { identity != nil && covered.total == size && covered.contains(0, size) }
    }

    static let capacity = 65_536

    private struct State {
        var files: [JobFile: File] = [:]
        /// Insertion order, for eviction (a key removed meanwhile is skipped when it comes up).
        var order: Deque<JobFile> = []
    }

    private let state = NIOLockedValueBox(State())

    /// The file comes whole in a unit: its chunks may be found in place. What an earlier run of
    /// the same unit found is kept.
    func allow(_ key: JobFile) {
        state.withLockedValue { s in
            guard s.files[key] == nil else { return }
            s.files[key] = File()
            s.order.append(key)
            if s.order.count > Self.capacity, let oldest = s.order.popFirst() { s.files.removeValue(forKey: oldest) }
        }
    }

    /// The file is not (or no longer) one to keep in place; what was found of it is forgotten.
    func forbid(_ key: JobFile) {
        _ = state.withLockedValue { $0.files.removeValue(forKey: key) }
    }

    /// Forgets every file of `job`.
    func forget(job: String) {
        state.withLockedValue { s in s.files = s.files.filter { $0.key.job != job } }
    }

    func isAllowed(_ key: JobFile) -> Bool { state.withLockedValue { $0.files[key] != nil } }

    /// Records `chunk`, read in place while the final copy was `identity`, when the file is
    /// allowed, everything found of it so far was read while it was that same file, and `alone`
    /// (asked under this lock: no partial copy of it is open) holds. False: nothing recorded,
    /// and the chunk must be written into a partial copy.
    func record(_ key: JobFile, _ chunk: Chunk, as identity: UnchangedFinal.Identity, alone: () -> Bool) -> Bool {
        state.withLockedValue { s in
            guard var f = s.files[key], f.identity == nil || f.identity == identity, alone() else { return false }
            f.identity = identity
            if !f.covered.contains(chunk.offset, UInt64(chunk.length)) {
                f.chunks.append(chunk)
                f.covered.insert(chunk.offset, UInt64(chunk.length))
            }
            s.files[key] = f
            return true
        }
    }

    /// Takes what was found of the file (a partial copy of it is opened, or it is finished): it
    /// is no longer one to keep in place.
    func take(_ key: JobFile) -> File? {
        state.withLockedValue { $0.files.removeValue(forKey: key) }
    }

    /// Files tracked now (tests).
    var count: Int { state.withLockedValue { $0.files.count } }
}
