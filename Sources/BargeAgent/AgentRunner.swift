import Foundation
import BargeFlow
import BargeWire
import Logging

/// Keeps an agent registered: runs `CoordinatorClient` and, when the connection drops or the
/// coordinator is not there yet, tries again with exponential backoff and jitter. Errors that
/// retrying cannot fix (a wrong token, a refused registration) end the run.
public struct AgentRunner: Sendable {
    public let client: CoordinatorClient
    public let work: AgentWork?
    public let logger: Logger

    public init(client: CoordinatorClient, work: AgentWork? = nil, logger: Logger = Logger(label: "barge.agent")) {
        self.client = client
        self.work = work
        self.logger = logger
    }

    /// Whether retrying could help.
    public static func isFatal(_ error: Error) -> Bool {
        switch error {
        case let failure as HandshakeFailure:
            return failure.error.code == .authenticationFailed || failure.error.code == .noCommonVersion
        case CoordinatorConnectionError.refused(let e) where e.code == .busy:
            // The coordinator's listener gave this connection's handshake slot to a newer one
            // (`HandshakeSlots`) just after this agent sent its `auth`, or was full: the next
            // connection may get in.
            return false
        case CoordinatorConnectionError.refused(let e) where e.code == .nameInUse:
            // Maybe this agent's own previous run, not yet seen gone: worth another try.
            return false
        case CoordinatorConnectionError.refused(let e) where e.code == .timedOut || Self.isLegacyHandshakeTimeout(e):
            // The coordinator closed a connection whose handshake a slow path held past its
            // limit (10 s): the path's, and the next connection may be quicker. Taken for a
            // refusal of the registration, it stopped the agent for good (h1 of session 49).
            return false
        case CoordinatorConnectionError.refused(let e) where e.code.isDamageOnTheWire:
            // The registration was damaged on its way (a bit flipped on the network): the next
            // connection sends it again. Before, one flipped bit in it stopped the agent for good.
            return false
        case CoordinatorConnectionError.refused, CoordinatorConnectionError.protocolViolation:
            return true
        default:
            return false
        }
    }

    /// A coordinator before 0.12.0 says a handshake took too long with `unexpectedMessage`.
    static func isLegacyHandshakeTimeout(_ e: ErrorMessage) -> Bool {
        e.code == .unexpectedMessage && e.reason.hasPrefix("handshake not finished within")
    }

    public func run() async throws {
        // Capped at 4 s: a restarted coordinator gets its agents back (and its jobs moving) within
        // seconds, while a coordinator that is down for long sees one connect per agent every 2–4 s.
        var backoff = ExponentialBackoff(initial: .milliseconds(250), maximum: .seconds(4))
        let coordinatorAddress = "\(client.host):\(client.port)"
        while !Task.isCancelled {
            let registered = RegisteredFlag()
            do {
                try await client.run(work: work, onRegistered: { [logger, identity = client.identity] r in
                    await registered.set()
                    logger.notice("registered with the coordinator at \(coordinatorAddress) as \(identity.name) (site \(identity.site)); heartbeat every \(r.heartbeatIntervalMillis) ms")
                })
                return  // cancelled
            } catch where Self.isFatal(error) {
                throw error
            } catch {
                if Task.isCancelled { return }
                // A connection that got as far as registering starts the backoff afresh.
                if await registered.value { backoff.reset() }
                let delay = backoff.next(fraction: Double.random(in: 0...1))
                logger.warning("coordinator at \(coordinatorAddress) unreachable (\(error)); retrying in \(String(format: "%.1f", delay.seconds)) s")
                try? await Task.sleep(for: delay)
            }
        }
    }
}

/// Whether the current connection got as far as registering.
actor RegisteredFlag {
    var value = false
    func set() { value = true }
}
