/// The states of a transfer job, as `status --json` reports them.
public enum JobState: String, Codable, Hashable, Sendable, CaseIterable {
    case queued, running, succeeded, failed, cancelled

    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// What can happen to a job.
public enum JobEvent: Hashable, Sendable {
    /// Planning is done and the first unit is handed out.
    case start
    /// Every unit is done and verified.
    case succeed
    case fail(String)
    case cancel
    /// `barge resume`: a failed or cancelled job runs again, or is scanned again when it never got
    /// as far as a plan.
    case resume(planned: Bool)
}

/// The job lifecycle as a pure transition function:
///
/// ```
/// queued ──start──► running ──succeed──► succeeded
///   │                  │
///   ├─cancel─► cancelled ◄─cancel─┤
///   └─fail───► failed ◄──fail─────┘
///
/// failed, cancelled ──resume──► running (queued when the job was never planned)
/// ```
///
/// A late `succeed` after a `cancel` is an error, never a silent resurrection: only an explicit
/// `resume` takes a failed or cancelled job back. A succeeded job stays succeeded. Cancelling a job that is already cancelled is allowed and changes nothing, so the
/// CLI's `cancel` is idempotent.
public enum JobLifecycle {
    public static func next(_ state: JobState, _ event: JobEvent) throws(JobTransitionError) -> JobState {
        switch (state, event) {
        case (.queued, .start): return .running
        case (.running, .succeed): return .succeeded
        case (.queued, .fail), (.running, .fail): return .failed
        case (.queued, .cancel), (.running, .cancel), (.cancelled, .cancel): return .cancelled
        case (.failed, .resume(let planned)), (.cancelled, .resume(let planned)): return planned ? .running : .queued
        default: throw JobTransitionError(from: state, event: event)
        }
    }
}

public struct JobTransitionError: Error, Hashable, Sendable, CustomStringConvertible {
    public let from: JobState
    public let event: JobEvent

    public init(from: JobState, event: JobEvent) {
        self.from = from
        self.event = event
    }

    public var description: String {
        let what: String
        switch event {
        case .start: what = "start"
        case .succeed: what = "succeed"
        case .fail: what = "fail"
        case .cancel: what = "be cancelled"
        case .resume: what = "resume"
        }
        return "a \(from.rawValue) job cannot \(what)"
    }
}
