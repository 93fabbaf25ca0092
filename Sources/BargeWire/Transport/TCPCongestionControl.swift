import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The TCP congestion control algorithm a data-plane connection asks the kernel for
/// (`TCP_CONGESTION`, Linux). Only the sending side's choice shapes the data, so the agent sets it
/// on the connections it opens to send.
public struct TCPCongestionControl: Sendable, Equatable, CustomStringConvertible {
    /// The kernel's name for it, like `cubic` or `bbr` (at most 15 bytes, as `TCP_CA_NAME_MAX`).
    public let name: String

    public var description: String { name }

    public init(named name: String) throws {
        guard (1...15).contains(name.utf8.count),
              name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }) else {
            throw TCPCongestionError("'\(name)' is not a congestion control name (1 to 15 of a-z, 0-9 and _, like cubic or bbr)")
        }
        self.name = name
    }

    /// The name as the kernel reads it: NUL-padded to `TCP_CA_NAME_MAX` (16) bytes.
    typealias KernelName = (CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar,
                            CChar, CChar, CChar, CChar, CChar, CChar, CChar, CChar)

    var kernelName: KernelName {
        var value: KernelName = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &value) { buffer in
            for (i, byte) in name.utf8.enumerated() { buffer[i] = byte }
        }
        return value
    }

    /// Whether the kernel grants this algorithm to this process: it sets it on a socket of its
    /// own. Throws with the reason (not built into or loaded in the kernel; not in
    /// `net.ipv4.tcp_allowed_congestion_control` for a process without `CAP_NET_ADMIN`).
    public func check() throws {
        #if os(Linux)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TCPCongestionError("cannot open a socket to try \(name): errno \(errno)") }
        defer { close(fd) }
        var value = kernelName
        if setsockopt(fd, Int32(IPPROTO_TCP), TCP_CONGESTION, &value, socklen_t(MemoryLayout<KernelName>.size)) != 0 {
            let code = errno
            switch code {
            case ENOENT:
                throw TCPCongestionError("the kernel has no TCP congestion control '\(name)' (see net.ipv4.tcp_available_congestion_control; modprobe tcp_\(name))")
            case EPERM:
                throw TCPCongestionError("the kernel lets only privileged processes use '\(name)' (it is not in net.ipv4.tcp_allowed_congestion_control)")
            default:
                throw TCPCongestionError("the kernel refused TCP congestion control '\(name)': errno \(code)")
            }
        }
        #else
        throw TCPCongestionError("choosing the TCP congestion control needs Linux")
        #endif
    }

    /// Sets it on a connection's socket.
    func apply(to channel: any Channel) -> EventLoopFuture<Void> {
        #if os(Linux)
        guard let provider = channel as? SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(TCPCongestionError("not a socket: cannot set \(name)"))
        }
        return provider.unsafeSetSocketOption(level: SocketOptionLevel(IPPROTO_TCP), name: SocketOptionName(TCP_CONGESTION), value: kernelName)
        #else
        return channel.eventLoop.makeFailedFuture(TCPCongestionError("choosing the TCP congestion control needs Linux"))
        #endif
    }

    /// What a `scavenger` job's connections run when the agent was given no algorithm
    /// (`--tcp-congestion`): cubic, else reno, whichever the kernel grants first; nil when the
    /// host's default is already one of them, or the kernel grants neither. Through the delay
    /// test bed at 400 Mbit/s and 50 ms, a scavenger job on BBR connections left a cubic flow
    /// 3.2% of the link (twice), and on cubic connections 31–90% (four runs): BBR keeps its rate
    /// through the queue and the losses by which the scavenger's window is meant to give way.
    public static func forScavenger(hostDefault: String?) -> TCPCongestionControl? {
        guard hostDefault != "cubic", hostDefault != "reno" else { return nil }
        for name in ["cubic", "reno"] {
            if let choice = try? TCPCongestionControl(named: name), (try? choice.check()) != nil { return choice }
        }
        return nil
    }

    /// The host's default for new connections (`net.ipv4.tcp_congestion_control` of this
    /// network namespace); nil where it cannot be read.
    public static func hostDefault() -> String? {
        guard let fd = fopen("/proc/sys/net/ipv4/tcp_congestion_control", "r") else { return nil }
        defer { fclose(fd) }
        var line = [CChar](repeating: 0, count: 64)
        guard fgets(&line, Int32(line.count), fd) != nil else { return nil }
        let name = String(decoding: line.prefix(while: { $0 != 0 && $0 != 0x0A && $0 != 0x20 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? nil : name
    }

    /// The algorithm a connected socket runs, as the kernel reports it.
    static func current(of channel: any Channel) async -> String? {
        #if os(Linux)
        guard let provider = channel as? SocketOptionProvider,
              let value: KernelName = try? await provider.unsafeGetSocketOption(
                level: SocketOptionLevel(IPPROTO_TCP), name: SocketOptionName(TCP_CONGESTION)).get() else { return nil }
        return withUnsafeBytes(of: value) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        #else
        return nil
        #endif
    }
}

public struct TCPCongestionError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
