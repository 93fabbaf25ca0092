import CBargeNet
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// What the kernel knows of one TCP connection, from `TCP_INFO`.
public struct TCPSample: Sendable, Equatable {
    /// Smoothed RTT (`tcpi_rtt`), nanoseconds.
    public var rtt: UInt64
    /// The least RTT the connection has seen (`tcpi_min_rtt`), nanoseconds; nil when the kernel
    /// does not say.
    public var minRTT: UInt64?
    /// The congestion window in bytes (`tcpi_snd_cwnd` × `tcpi_snd_mss`).
    public var window: Double
    /// Segments retransmitted since the connection opened (`tcpi_total_retrans`).
    public var retransmits: UInt32
    /// Bytes written to the socket and not yet sent (`tcpi_notsent_bytes`): TCP, not the writer,
    /// is holding them back.
    public var notSent: UInt32
    /// BBR's model of the path (`TCP_CC_INFO`); nil for other algorithms.
    public var bbr: BBRModel?
    /// Bytes the peer's TCP has acknowledged since the connection opened (`tcpi_bytes_acked`):
    /// it grows while the peer reads, however slowly this side sends.
    public var bytesAcked: UInt64

    /// What BBR believes of the path: the bottleneck's rate (the most it delivered over the last
    /// ten round trips or so) and the least RTT of the last ten seconds.
    public struct BBRModel: Sendable, Equatable {
        /// Bytes per second, and nanoseconds.
        public var rate: Double, minRTT: UInt64

        public init(rate: Double, minRTT: UInt64) { (self.rate, self.minRTT) = (rate, minRTT) }
    }

    public init(rtt: UInt64, minRTT: UInt64?, window: Double, retransmits: UInt32, notSent: UInt32 = 0, bbr: BBRModel? = nil, bytesAcked: UInt64 = 0) {
        self.rtt = rtt
        self.minRTT = minRTT
        self.window = window
        self.retransmits = retransmits
        self.notSent = notSent
        self.bbr = bbr
        self.bytesAcked = bytesAcked
    }

    /// The bytes the socket's TCP would keep in flight on its own. A loss-based algorithm (cubic,
    /// reno) fills its congestion window. BBR paces at its bottleneck estimate and aims at that
    /// rate times its least RTT; its congestion window is two to three times that, a cap for
    /// bursts of acks and for its startup, not what it sends. On a socket its writer keeps short
    /// of data (a lane's window), BBR never leaves its startup: its samples are all
    /// application-limited, which its test for a full pipe skips. Its window then stays at
    /// nearly three times its estimate, and its estimates, taken in bursts, add up to more than
    /// the path carries: through the delay test bed at 1 Gbit/s and 100 ms, four such sockets
    /// held 64 MB of window on a path that queues 25 MB, and retransmitted a sixth of what they
    /// sent.
    public var inFlightAim: Double {
        guard let bbr else { return window }
        return min(window, bbr.rate * Double(bbr.minRTT) / 1e9)
    }
}

/// Reads `TCP_INFO` from a connection's socket (Linux; elsewhere there is no sample).
public struct TCPProbe: Sendable {
    let channel: any Channel
    /// Whether the socket runs BBR, once a sample has asked (`TCP_CC_INFO`): its algorithm is
    /// set before it connects, so the later samples of a socket that does not run it skip the
    /// question.
    private let runsBBR = NIOLockedValueBox<Bool?>(nil)

    /// What this side sent as it closed the connection (`ProtocolErrorHandler.sent`).
    private let sentError: NIOLockedValueBox<ErrorMessage?>?

    public init(channel: any Channel, sentError: NIOLockedValueBox<ErrorMessage?>? = nil) {
        self.channel = channel
        self.sentError = sentError
    }

    /// Why this side closed the connection, when it did (a frame that did not open, nothing
    /// received for its idle timeout); nil when the peer closed it, or it is open.
    public var closedHere: ErrorMessage? { sentError?.withLockedValue { $0 } }

    /// Closes the connection from any task: its reader then ends, as if the peer had closed it.
    public func close() {
        channel.close(promise: nil)
    }

    /// Replaces the connection's idle timeout, set when it was made (`addBargeHandlers`): from
    /// now on, receiving nothing for `timeout` closes it, after an error frame to the peer. For
    /// a session whose traffic becomes known only once it is under way (the heartbeat interval
    /// a coordinator gives at registration).
    public func setIdleTimeout(_ timeout: TimeAmount) async throws {
        let channel = channel
        try await channel.eventLoop.submit {
            let operations = channel.pipeline.syncOperations
            let old = try operations.context(handlerType: IdleStateHandler.self)
            try operations.addHandler(IdleStateHandler(readTimeout: timeout), position: .after(old.handler))
            operations.removeHandler(context: old, promise: nil)
        }.get()
    }

    /// Writes the frame `make` returns every `interval`, from the connection's event loop rather
    /// than from a task: a heartbeat must not wait for a thread of the cooperative pool, which
    /// CPU-heavy work (a chunk's zstd-19) can hold for seconds. `make` runs on the event loop and
    /// must be quick; nil writes nothing that time. Cancel the task when the session ends.
    public func writeRepeatedly(every interval: TimeAmount, _ make: @escaping @Sendable () -> Frame?) -> RepeatedTask {
        let channel = channel
        return channel.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            if let frame = make() { channel.writeAndFlush(frame, promise: nil) }
        }
    }

    /// Writes `frame` and waits until it is written, the write fails, or `limit` passes, on the
    /// connection's event loop: for a last word from a task that is being cancelled (an agent
    /// stopping), whose own writer has stopped, and whose sleeps would end at once. A peer that
    /// reads nothing (its socket full) does not hold the stop.
    public func writeLast(_ frame: Frame, within limit: TimeAmount) async {
        let loop = channel.eventLoop
        let ended = loop.makePromise(of: Void.self)
        let once = NIOLockedValueBox(false)
        let end: @Sendable () -> Void = { if once.withLockedValue({ let first = !$0; $0 = true; return first }) { ended.succeed(()) } }
        let timer = loop.scheduleTask(in: limit) { end() }
        channel.writeAndFlush(frame).whenComplete { _ in
            timer.cancel()
            end()
        }
        try? await ended.futureResult.get()
    }

    /// The TCP congestion control the connection runs (`TCP_CONGESTION`); nil off Linux.
    public func congestionControl() async -> String? {
        await TCPCongestionControl.current(of: channel)
    }

    public func sample() async -> TCPSample? {
        #if os(Linux)
        guard let provider = channel as? SocketOptionProvider,
              let info: barge_tcp_info = try? await provider.unsafeGetSocketOption(
                level: SocketOptionLevel(IPPROTO_TCP), name: SocketOptionName(TCP_INFO)).get(),
              info.tcpi_rtt > 0 else { return nil }
        var bbr: TCPSample.BBRModel?
        // Only BBR's answer fills `bbr_cwnd_gain` (see `barge_tcp_bbr_info`).
        if runsBBR.withLockedValue({ $0 }) != false,
           let model: barge_tcp_bbr_info = try? await provider.unsafeGetSocketOption(
               level: SocketOptionLevel(IPPROTO_TCP), name: SocketOptionName(TCP_CC_INFO)).get() {
            runsBBR.withLockedValue { $0 = model.bbr_cwnd_gain > 0 }
            if model.bbr_cwnd_gain > 0, model.bbr_min_rtt > 0, model.bbr_min_rtt != UInt32.max {
                bbr = TCPSample.BBRModel(rate: Double(UInt64(model.bbr_bw_hi) << 32 | UInt64(model.bbr_bw_lo)), minRTT: UInt64(model.bbr_min_rtt) * 1000)
            }
        }
        return TCPSample(rtt: UInt64(info.tcpi_rtt) * 1000, minRTT: info.tcpi_min_rtt > 0 ? UInt64(info.tcpi_min_rtt) * 1000 : nil,
                         window: Double(info.tcpi_snd_cwnd) * Double(info.tcpi_snd_mss), retransmits: info.tcpi_total_retrans,
                         notSent: info.tcpi_notsent_bytes, bbr: bbr, bytesAcked: info.tcpi_bytes_acked)
        #else
        return nil
        #endif
    }

    /// Caps the rate the socket's TCP paces its sends at (`SO_MAX_PACING_RATE`, bytes per second;
    /// nil lifts the cap). Best effort: where the kernel refuses, the socket keeps its own pacing.
    public func setMaximumPacingRate(_ rate: UInt64?) async {
        #if os(Linux)
        guard let provider = channel as? SocketOptionProvider else { return }
        // A 64-bit value is read whole, and all ones means no cap.
        try? await provider.unsafeSetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_MAX_PACING_RATE),
                                                  value: rate ?? UInt64.max).get()
        #endif
    }

    /// The socket's pacing cap (`SO_MAX_PACING_RATE`): nil when it has none, or off Linux.
    public func maximumPacingRate() async -> UInt64? {
        #if os(Linux)
        guard let provider = channel as? SocketOptionProvider,
              let rate: UInt64 = try? await provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_MAX_PACING_RATE)).get(),
              rate != UInt64.max else { return nil }
        return rate
        #else
        return nil
        #endif
    }

    static var notSentLowatOption: ChannelOptions.Types.SocketOption {
        #if os(Linux)
        ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: CInt(TCP_NOTSENT_LOWAT)))
        #else
        ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: 0x201))
        #endif
    }
}
