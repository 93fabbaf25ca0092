#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The client's side of the handshake: hello → (challenge) → auth → (welcome). Pure: it is fed
/// messages and returns actions; the channel handler carries them out. On a sealed version (8 and
/// up) the session starts as the auth goes out, and the welcome is read by the frame cipher.
public struct ClientHandshake: Sendable {
    public enum State: Hashable, Sendable {
        case idle
        case awaitingChallenge
        case awaitingWelcome(version: UInt8, maxPayloadLength: Int)
        case established(Session)
        case failed(ErrorMessage)

        /// The state in words, for errors sent to the peer.
        public var name: String {
            switch self {
            case .idle: "not started"
            case .awaitingChallenge: "waiting for challenge"
            case .awaitingWelcome: "waiting for welcome"
            case .established: "established"
            case .failed: "failed"
            }
        }
    }

    public private(set) var state = State.idle
    private let token: [UInt8]
    private let hello: Hello

    /// `nonce` must be 32 fresh random bytes.
    public init(token: [UInt8], name: String, role: PeerRole, versions: ClosedRange<UInt8> = WireVersion.supported, nonce: [UInt8]) {
        precondition(nonce.count == Hello.nonceLength, "a handshake nonce is 32 bytes")
        self.token = token
        hello = Hello(minVersion: versions.lowerBound, maxVersion: versions.upperBound, role: role, name: name, nonce: nonce)
    }

    public mutating func start() -> HandshakeAction {
        guard state == .idle else { return fail(.unexpected(.hello, state: "already started"), notify: false) }
        state = .awaitingChallenge
        return .send(.hello(hello))
    }

    public mutating func receive(_ message: Message) -> HandshakeAction {
        switch (state, message) {
        case (_, .error(let e)):
            state = .failed(e)
            return .fail(e, notifyPeer: false)

        case (.awaitingChallenge, .challenge(let c)):
            guard (hello.minVersion...hello.maxVersion).contains(c.version) else {
                return fail(ErrorMessage(code: .noCommonVersion, reason: "server chose version \(c.version), outside \(hello.minVersion)...\(hello.maxVersion)"))
            }
            do {
                let expected = try HandshakeProof.server(token: token, clientNonce: hello.nonce, serverNonce: c.nonce, version: c.version, clientName: hello.name)
                guard HandshakeProof.matches(c.proof, expected) else {
                    // Both ends hold a token; which one is wrong cannot be told from here. The
                    // words go to both logs (the server's names the client).
                    return fail(ErrorMessage(code: .authenticationFailed, reason: "the server did not prove the cluster token: most likely '\(hello.name)' and the server it connected to were given different token files (give every coordinator and agent the same --token-file, BARGE_TOKEN_FILE); or something between them answered in its place (a replayed or forged handshake)"))
                }
                let proof = try HandshakeProof.client(token: token, clientNonce: hello.nonce, serverNonce: c.nonce, version: c.version, clientName: hello.name)
                // Sealed versions: the session starts with the auth, so that the client's first
                // request goes right behind it rather than a round trip later. The server's
                // proof already showed that it holds the token, so only it can open what follows;
                // its welcome (or its error, should it refuse the proof) comes in clear as the
                // first frame the cipher reads (`Session.welcomeAhead`).
                if c.version >= WireVersion.sealed {
                    guard let keys = try? SessionKeys.derive(token: token, clientNonce: hello.nonce, serverNonce: c.nonce, version: c.version, clientName: hello.name) else {
                        return fail(ErrorMessage(code: .authenticationFailed, reason: "cannot derive the session keys"))
                    }
                    let session = Session(version: c.version, peerName: "", role: hello.role, maxPayloadLength: Int(c.maxPayloadLength),
                                          keys: keys, isClient: true, welcomeAhead: true)
                    state = .established(session)
                    return .sendAndEstablish(.auth(Auth(proof: proof)), session)
                }
                state = .awaitingWelcome(version: c.version, maxPayloadLength: Int(c.maxPayloadLength))
                return .send(.auth(Auth(proof: proof)))
            } catch {
                return fail(ErrorMessage(code: .authenticationFailed, reason: "\(error)"))
            }

        case (.awaitingWelcome(let version, let max), .welcome(let w)):
            // Versions 1 to 7, in clear: the session starts with the welcome.
            let session = Session(version: version, peerName: w.serverName, role: hello.role, maxPayloadLength: max, keys: nil, isClient: true)
            state = .established(session)
            return .establish(session)

        default:
            return fail(.unexpected(message.type, state: "in the handshake, \(state.name)"))
        }
    }

    private mutating func fail(_ error: WireError, notify: Bool = true) -> HandshakeAction {
        fail(ErrorMessage(error), notify: notify)
    }

    private mutating func fail(_ error: ErrorMessage, notify: Bool = true) -> HandshakeAction {
        state = .failed(error)
        return .fail(error, notifyPeer: notify)
    }
}

/// Protocol versions this build speaks: minor versions of protocol 1 (the frame format stays 1).
/// Version 2 adds dedup (`have query`, `have list`, `chunk ref`, nack `need`, `task done`'s dedup
/// bytes) and `drain`; version 3 adds `job settings` (per-job caps and congestion mode) and the
/// lane figures at the end of `task progress`; version 4 adds the assignment number that `task
/// assign` carries and `task done` and `task failed` echo; version 5 acknowledged reports, `holding`,
/// `task drop` and `compare`; version 6 `files done` (a batch of files finished together); version 7 `file batch` (small files whole in one message). A peer of an older version still joins, and
/// neither side sends it what it does not know.
public enum WireVersion {
    /// What features need.
    public static let dedup: UInt8 = 2
    public static let drain: UInt8 = 2
    public static let flow: UInt8 = 3
    public static let assignments: UInt8 = 4
    /// Acknowledged reports, `holding` and `task drop`.
    public static let acks: UInt8 = 5
    /// `files done` and its reply.
    public static let batches: UInt8 = 6
    /// `file batch` and its reply: small files whole in one message.
    public static let fileBatches: UInt8 = 7
    /// Every frame after the handshake sealed (AES-256-GCM under keys from the handshake).
    public static let sealed: UInt8 = 8
    /// `tier request` and `tier reply`: hot and cold tiers at a destination site.
    public static let tiers: UInt8 = 9
    /// Placement at transfer time: `task assign` files may carry the job policy's tier, and
    /// `have query` carries each file's tier, size and mtime, so a destination places a file cold
    /// (straight into packs) before its first chunk arrives.
    public static let placement: UInt8 = 10
    /// `register` ends with the agent's build version.
    public static let agentBuild: UInt8 = 11
    /// `warm lanes`: a source agent opens its data-plane connections as a job starts.
    public static let warmLanes: UInt8 = 12
    /// `task done` lists the files the unit left out, gone from the source or changed since the
    /// scan when it came to read them; the unit is done without them rather than failing the job.
    public static let leftOut: UInt8 = 13
    /// `register` ends with the id of the agent's root (`RootIdentity`), after the build.
    public static let rootIdentity: UInt8 = 14
    /// `repair done`: after a repair unit's chunks (`verify --repair`), each repaired file gets
    /// its mode and mtime from the job's scan, as a finished file does.
    public static let repairDone: UInt8 = 15
    /// `file left out`: a file the source left out of a job (gone, changed or unreadable when it
    /// came to read it) has its partial copy removed at the destination, as rsync removes its
    /// temporary file.
    public static let fileLeftOut: UInt8 = 16
    /// `have query` marks the files a unit brings whole (`HaveQuery.wholeBit`): the destination
    /// keeps such a file in place when its final copy already holds every chunk.
    public static let wholeFiles: UInt8 = 17
    /// `task failed` says when the unit failed on its data plane (the destination agent's
    /// connection refused, closed or stalled): not counted as one of the unit's attempts.
    public static let laneFailures: UInt8 = 18
    /// A listing's page (`tier request` list) ends at a cursor, `h:PATH` or `c:PATH`, rather than
    /// a count of the entries before it: a page with such a cursor goes to an agent of 18 or
    /// later (an older one would start the listing again).
    public static let listCursor: UInt8 = 18
    /// `scan request` may ask for, and `scan reply` and `task assign` carry, each regular file's
    /// identity as the scan saw it (`FileIdentity`): a source reads a file's ranges only from
    /// that file, and leaves out one replaced or written since.
    public static let sourceIdentity: UInt8 = 19
    /// `verify request` says whether the verification repairs (only then does an agent change
    /// its cold catalog for a damaged chunk), and `drain` comes again, `finished`, once the
    /// agent holds no unit as a source or a destination.
    public static let verifyRepair: UInt8 = 20
    public static let drained: UInt8 = 20
    /// `register` ends with a flag (u8 1) from an agent that was told to drain and registers
    /// again without having restarted (a coordinator restart, a connection lost): it stays
    /// draining. Before, every registration made it `up`, the drain was forgotten, and the
    /// `drained` the operator waits for never came.
    public static let drainKept: UInt8 = 21
    /// `verify request` ends with the mode and mtime of each file its units finished, and the
    /// agent checks them once the bytes match (`VerifyRequest.attributes`).
    public static let verifyAttributes: UInt8 = 22
    /// `task done` ends with why each file after the first was left out (`TaskDone.laterLeftOut`):
    /// before, only the first had its reason, and `status` sent the others to a log that did not
    /// name them either.
    public static let leftOutReasons: UInt8 = 23

    /// This build speaks 8 to 23, all sealed: every connection is encrypted and authenticated,
    /// so an older peer (1 to 7, clear text) is refused with `noCommonVersion`, and a peer cannot
    /// be talked down to clear text. A peer at 8 works, without tiers; one at 9 without placement at transfer time. `BARGE_INSECURE_PLAINTEXT=1`
    /// (`--insecure-plaintext`, for benchmarks and rolling updates from 7) speaks 1 to 7 instead,
    /// in clear, and so has no tiers. `BARGE_WIRE_MAX_VERSION=N` runs this build as an older one
    /// (for testing mixed clusters, and for measuring what a version changed): 1 to N in clear
    /// for N up to 7, 8 to N sealed from 8 on.
    public static let supported: ClosedRange<UInt8> = {
        if let raw = getenv("BARGE_WIRE_MAX_VERSION"), let v = UInt8(String(cString: raw)), (1..<sealed).contains(v) {
            return 1...v
        }
        if let raw = getenv("BARGE_WIRE_MAX_VERSION"), let v = UInt8(String(cString: raw)), (sealed...leftOutReasons).contains(v) { return sealed...v }
        if let raw = getenv("BARGE_INSECURE_PLAINTEXT"), String(cString: raw) == "1" { return 1...(sealed - 1) }
        return sealed...leftOutReasons
    }()
}
