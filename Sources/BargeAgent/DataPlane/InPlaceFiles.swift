import BargeStore
import DequeModule
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Files whose every chunk and finish come to this agent (`HaveQuery.wholeBit`, protocol version
/// 17: a file a unit brings whole, or a `--checksum` job's large file, whose ranges and finish
/// the coordinator pins to one destination agent) and whose copy under their final name may
/// already hold their bytes, with the chunks of each found there so far.
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
/// What is found is known to this agent alone: should a large file's ranges end up at two agents
/// (the one it was pinned to went down), the finish finds less than the whole file found, makes
/// nothing and refuses the file as incomplete, and the coordinator sends the file again, from its
/// first range, to one agent.
///
/// Bounded: at most `capacity` files (when full, one idle for `idleEviction` makes room, else a
/// new file is not tracked and is received as any other), and per file the chunks of its first
/// `copyLimit` bytes found in place (past that only the ranges they cover are kept, and a file
/// that then needs a partial copy is not copied into it: its finish is refused as incomplete, and
/// the file sent again, rather than copy gigabytes while a chunk's answer waits).
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
        /// Empty once `overflowed`.
        var chunks: [Chunk] = []
        var covered = ByteRanges()
        /// More than `copyLimit` bytes were found: the chunks are no longer listed.
        var overflowed = false
        /// Which of the file's entries in the eviction order is its own.
        var generation: UInt64 = 0
        /// When it was allowed or last found a chunk (monotonic seconds).
        var touched: Double = 0

        /// Every one of its `size` bytes was found in place.
        func whole(_ size: UInt64) -> Bool { identity != nil && covered.total == size && covered.contains(0, size) }
    }

    static let capacity = 65_536
    /// A file tracked this long with nothing found may be dropped to make room: its unit was
    /// abandoned (its source went down, say).
    static let idleEviction: Double = 600
    /// The most bytes found in place that are copied into a partial copy when one is opened.
    static let defaultCopyLimit: UInt64 = 256 << 20
    let copyLimit: UInt64
    /// A file whose ctime is less than this many seconds old when a chunk of it is read is not
    /// kept in place (`racilyClean`).
    static let defaultRacyWindow: Double = 2
    let racyWindow: Double

    init(copyLimit: UInt64 = InPlaceFiles.defaultCopyLimit, racyWindow: Double = InPlaceFiles.defaultRacyWindow) {
        self.copyLimit = copyLimit
        self.racyWindow = racyWindow
    }

    /// The file changed (its ctime) less than `racyWindow` ago: a write in the same timestamp
    /// tick as that change would leave its identity as it is (1 s on some parallel file
    /// systems), so what is read now is not trusted to be what the finish keeps.
    func racilyClean(_ identity: UnchangedFinal.Identity) -> Bool {
        guard racyWindow > 0 else { return false }
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        let now = Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        return now - (Double(identity.ctime) + Double(identity.ctimeNanoseconds) / 1e9) < racyWindow
    }

    private struct State {
        var files: [JobFile: File] = [:]
        /// Insertion order, for eviction: an entry whose generation is no longer its file's (the
        /// file was removed, or removed and allowed again) is skipped when it comes up.
        var order: Deque<(key: JobFile, generation: UInt64)> = []
        var generations: UInt64 = 0
    }

    private static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    private let state = NIOLockedValueBox(State())

    /// The file comes whole in a unit: its chunks may be found in place. What an earlier run of
    /// the same unit found is kept.
    func allow(_ key: JobFile) {
        let now = Self.now()
        state.withLockedValue { s in
            if s.files[key] != nil {
                s.files[key]!.touched = now
                return
            }
            // The order's entries of files gone are dropped once they are as many as the files
            // (amortised: one pass per `capacity` removals at most).
            if s.order.count >= 2 * Self.capacity {
                let files = s.files
                s.order = Deque(s.order.filter { files[$0.key]?.generation == $0.generation })
            }
            // Full: the oldest file goes if it is idle; never a file in use.
            while s.files.count >= Self.capacity, let oldest = s.order.first {
                guard let f = s.files[oldest.key], f.generation == oldest.generation else {
                    s.order.removeFirst()
                    continue
                }
                guard now - f.touched > Self.idleEviction else { break }
                s.order.removeFirst()
                s.files.removeValue(forKey: oldest.key)
            }
            guard s.files.count < Self.capacity else { return }
            s.generations += 1
            s.files[key] = File(generation: s.generations, touched: now)
            s.order.append((key, s.generations))
        }
    }

    /// The file is not (or no longer) one to keep in place; what was found of it is forgotten.
    func forbid(_ key: JobFile) { forbid([key]) }

    /// The same for several files (a finished batch), under one lock.
    func forbid(_ keys: [JobFile]) {
        state.withLockedValue { s in for key in keys { s.files.removeValue(forKey: key) } }
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
            f.touched = Self.now()
            if !f.covered.contains(chunk.offset, UInt64(chunk.length)) {
                f.covered.insert(chunk.offset, UInt64(chunk.length))
                if !f.overflowed { f.chunks.append(chunk) }
                if f.covered.total > copyLimit, !f.overflowed {
                    f.overflowed = true
                    f.chunks = []
                }
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
