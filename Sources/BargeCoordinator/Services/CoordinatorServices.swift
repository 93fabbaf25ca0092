import BargeWire
import Foundation
import Logging
import ServiceLifecycle

/// The agent listener as a service: it serves until graceful shutdown, then closes its socket.
extension AgentListener: Service {
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await serve()
        } onGracefulShutdown: {
            Task { await self.close() }
        }
    }
}

/// Every `interval`, marks silent agents down and returns their units to pending, and updates the
/// scheduler's gauges.
public struct AgentExpiryService: Service {
    public let directory: AgentDirectory
    public let scheduler: Scheduler
    /// `AgentRegistry.defaultLookInterval`: the registry counts a much longer gap as the
    /// coordinator's own stall (`AgentRegistry.woke`), so the interval is not a parameter.
    public let interval = AgentRegistry.defaultLookInterval
    public let onExpired: @Sendable ([String], Int) -> Void

    public init(directory: AgentDirectory, scheduler: Scheduler, onExpired: @escaping @Sendable ([String], Int) -> Void = { _, _ in }) {
        self.directory = directory
        self.scheduler = scheduler
        self.onExpired = onExpired
    }

    public func run() async throws {
        while !StopAwarePause.stopping {
            let expired = await directory.expire()
            if !expired.isEmpty {
                onExpired(expired, try await scheduler.agentsDown(expired))
            }
            await scheduler.tick()
            await StopAwarePause.pause(for: interval)
        }
    }
}

/// `coordinator --retain AGE`: jobs that ended longer ago than `retention` are pruned (with their
/// units and verification), at start and then every `interval`. Running and queued jobs never are.
public struct RetentionService: Service {
    public let scheduler: Scheduler
    public let retention: Duration
    public let interval: Duration

    public init(scheduler: Scheduler, retention: Duration, interval: Duration = .seconds(3600)) {
        self.scheduler = scheduler
        self.retention = retention
        self.interval = interval
    }

    public func run() async throws {
        while !StopAwarePause.stopping {
            // A control action of the coordinator's own, recorded as such.
            var draft = AuditRecord(kind: "action", actor: .init(name: "coordinator"))
            draft.action = "retain"
            draft.args = ["older_than_seconds": "\(Int(retention.seconds))"]
            _ = try? await AuditContext.$current.withValue(AuditContext(draft)) {
                try await scheduler.prune(endedBefore: Date().timeIntervalSince1970 - retention.seconds)
            }
            await StopAwarePause.pause(for: interval)
        }
    }
}

/// Copies audit records journaled outside requests (job outcomes) to `audit.jsonl` every
/// second, and syncs the file when the coordinator stops.
struct AuditMirrorService: Service {
    let trail: AuditTrail
    let logger: Logger

    func run() async throws {
        while !StopAwarePause.stopping {
            await StopAwarePause.pause(for: .seconds(1))
            do { try trail.mirror() } catch { logger.error("audit: \(error)") }
        }
        do { try trail.mirror(sync: true) } catch { logger.error("audit: \(error)") }
    }
}

/// Records the Merkle root of what each ended job moved (`Journal.evidence`), with a `merkle`
/// audit record, shortly after it ends and, for jobs the coordinator stopped before recording,
/// at the next start. The reading runs on a Dispatch queue, off the cooperative pool.
struct EvidenceRootService: Service {
    let journal: Journal
    let logger: Logger

    func run() async throws {
        // Jobs whose root could not be made (a manifest cut short, say): tried again after 4 s,
        // 8 s, … up to an hour, not every 2 s for ever, each time reading all their manifests.
        var retries = RetryTimes<String>(first: 4, longest: 3_600)
        let clock = ContinuousClock(), start = clock.now
        func now() -> Double { (clock.now - start) / .seconds(1) }
        while !StopAwarePause.stopping {
            let ids = (try? journal.unrootedJobs()) ?? []
            retries.keep(only: Set(ids))
            for id in ids {
                if StopAwarePause.stopping { break }
                if !retries.isDue(id, now: now()) { continue }
                let journal = self.journal
                let outcome: Result<(files: Int64, root: String), any Error> = await withCheckedContinuation { done in
                    DispatchQueue.global(qos: .utility).async {
                        done.resume(returning: Result(catching: {
                            let e = try journal.evidence(job: id) { _ in }
                            try journal.recordRoot(job: id, files: e.files, root: e.root)
                            return (e.files, e.root.description)
                        }))
                    }
                }
                switch outcome {
                case .success(let r):
                    retries.succeeded(id)
                    logger.info("job \(id): \(r.files) files, Merkle root \(r.root)")
                case .failure(let error):
                    let (count, wait) = retries.failed(id, now: now())
                    logger.error("job \(id): cannot record the root of what it moved (tried \(count) times; again in \(Int(wait)) s): \(error)")
                }
            }
            await StopAwarePause.pause(for: .seconds(2))
        }
    }
}
