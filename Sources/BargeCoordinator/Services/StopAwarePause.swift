import ServiceLifecycle

/// The coordinator's periodic work (agent expiry, retention, the audit mirror, evidence roots,
/// notifications) and the dashboard's event stream wait between rounds with this: a pause that
/// ends early when the coordinator begins to stop (SIGTERM, SIGINT) or the task is cancelled.
/// A plain `Task.sleep` ran to its end first: the services stopped one after another, each
/// finishing its own sleep (3.3 s for a coordinator with nothing to do), a `--retain`
/// coordinator slept out its hour, and an open event stream kept the HTTP server from ever
/// stopping.
enum StopAwarePause {
    static func pause(for duration: Duration) async {
        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
    }

    static func pause(until deadline: ContinuousClock.Instant) async {
        try? await cancelWhenGracefulShutdown { try await Task.sleep(until: deadline) }
    }

    /// Whether the periodic work should stop: the coordinator is stopping or the task cancelled.
    static var stopping: Bool { Task.isShuttingDownGracefully || Task.isCancelled }
}
