import BargeWire
import Foundation

/// A done unit's chunks as one blob in its journal row, instead of a row per chunk: 48 bytes a
/// chunk (file index u32, offset u64, length u32, SHA-256 id), big-endian, in the order the source
/// reported them. A petabyte of 1 MiB chunks is 16.8 M unit rows, not 10^9 chunk rows.
public enum UnitManifest {
    static let entrySize = 48

    public static func encode(_ chunks: [ChunkReport]) -> Data {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(chunks.count * entrySize)
        for c in chunks where c.id.count == 32 {
            append(&bytes, c.file)
            append(&bytes, c.offset)
            append(&bytes, c.length)
            bytes += c.id
        }
        return Data(bytes)
    }

    /// The chunks of a blob; a truncated tail (never written so) is ignored.
    public static func decode(_ data: Data) -> [ChunkReport] {
        var out: [ChunkReport] = []
        out.reserveCapacity(data.count / entrySize)
        data.withUnsafeBytes { raw in
            var at = 0
            while at + entrySize <= raw.count {
                let file = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self))
                let offset = UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: at + 4, as: UInt64.self))
                let length = UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: at + 12, as: UInt32.self))
                let id = [UInt8](raw[(at + 16)..<(at + 48)])
                out.append(ChunkReport(file: file, offset: offset, length: length, id: id))
                at += entrySize
            }
        }
        return out
    }

    private static func append<T: FixedWidthInteger>(_ bytes: inout [UInt8], _ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes += $0 }
    }
}
