#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The shared secret of a cluster, read from `--token-file` (or `BARGE_TOKEN_FILE`). Surrounding
/// white space (a trailing newline from `echo`) is ignored. A token shorter than 16 bytes, an empty
/// file or an unreadable one is refused with a reason.
public struct ClusterToken: Sendable, Equatable {
    public static let minimumLength = 16
    public static let maximumFileSize = 4096

    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(TokenError) {
        var b = bytes[...]
        while let f = b.first, Self.isSpace(f) { b = b.dropFirst() }
        while let l = b.last, Self.isSpace(l) { b = b.dropLast() }
        guard b.count >= Self.minimumLength else { throw .tooShort(b.count) }
        self.bytes = Array(b)
    }

    public init(contentsOf path: String) throws(TokenError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .unreadable(path, String(cString: strerror(errno))) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: Self.maximumFileSize + 1)
        var filled = 0
        while filled < buffer.count {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(path, String(cString: strerror(errno)))
            }
            if n == 0 { break }
            filled += n
        }
        guard filled <= Self.maximumFileSize else { throw .tooLarge(path) }
        do {
            try self.init(bytes: Array(buffer[0..<filled]))
        } catch {
            throw .invalid(path, error)
        }
    }

    private static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }
}

public indirect enum TokenError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooShort(Int)
    case tooLarge(String)
    case unreadable(String, String)
    case invalid(String, TokenError)

    public var description: String {
        switch self {
        case .tooShort(let n):
            "cluster token is \(n) bytes; use at least \(ClusterToken.minimumLength) (for example: head -c 32 /dev/urandom | base64 > token)"
        case .tooLarge(let path): "\(path) is over \(ClusterToken.maximumFileSize) bytes: is it really a token file?"
        case .unreadable(let path, let why): "cannot read token file \(path): \(why)"
        case .invalid(let path, let error): "\(path): \(error)"
        }
    }
}
