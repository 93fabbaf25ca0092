import ArgumentParser
import BargeWire
import Foundation
import Logging

/// `--token-file`, falling back to `BARGE_TOKEN_FILE`.
struct TokenOptions: ParsableArguments {
    @Option(help: ArgumentHelp("File holding the cluster's shared token (or set BARGE_TOKEN_FILE).", valueName: "file"))
    var tokenFile: String?

    /// The token file's path, from the flag or the environment.
    var path: String? {
        guard let path = tokenFile ?? ProcessInfo.processInfo.environment["BARGE_TOKEN_FILE"], !path.isEmpty else { return nil }
        return path
    }

    func token() throws -> ClusterToken {
        guard let path else {
            throw Failure("a cluster token is required: pass --token-file FILE or set BARGE_TOKEN_FILE (make one with: (umask 077; head -c 32 /dev/urandom | base64 > token))")
        }
        let token: ClusterToken
        do { token = try ClusterToken(contentsOf: path) } catch { throw Failure("--token-file: \(error)") }
        // Through the log (bootstrapped before the token is read), so JSON logs stay JSON; a
        // notice, as the file may be private some other way (a directory no one else can enter).
        if let exposure = Self.exposure(of: path) { Logger(label: "barge").notice("\(exposure)") }
        return token
    }

    /// A warning when other users may read the token file: whoever holds the token can join the
    /// cluster as an agent and write files anywhere under every agent's root, as that agent's user.
    static func exposure(of path: String) -> String? {
        exposure(of: path, "the cluster token file",
                 "whoever reads it can join the cluster and write files under every agent's root as that agent's user; chmod 600 \(path) on every node")
    }

    /// A warning when other users may read the secret at `path` (`what`), with what that allows.
    static func exposure(of path: String, _ what: String, _ consequence: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & 0o077 != 0 else { return nil }
        return "\(what) \(path) may be read by other users (mode \(String(st.st_mode & 0o777, radix: 8))): \(consequence)"
    }
}

/// `--insecure-plaintext`: protocol versions 1 to 7, in clear, instead of 8 (every frame sealed).
struct PlaintextOption: ParsableArguments {
    @Flag(help: "Send every connection in clear instead of encrypted (AES-256-GCM): for benchmarks only. Every node must agree.")
    var insecurePlaintext = false

    /// Applies the choice before any connection is made (WireVersion reads it once).
    func apply() {
        if insecurePlaintext { setenv("BARGE_INSECURE_PLAINTEXT", "1", 1) }
    }
}

/// `--coordinator-url`, falling back to `BARGE_COORDINATOR`, then http://127.0.0.1:7480; and
/// the API token from `--api-token-file`, `BARGE_API_TOKEN_FILE`, or the admin token a
/// coordinator with the default `--state` wrote in this directory.
struct CoordinatorURLOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The coordinator's HTTP API (or set BARGE_COORDINATOR; default http://127.0.0.1:7480).", valueName: "url"))
    var coordinatorURL: String?

    @Option(help: ArgumentHelp("File holding an API token (or set BARGE_API_TOKEN_FILE; default ./barge-state/admin.token when it exists).", valueName: "file"))
    var apiTokenFile: String?

    @Option(help: ArgumentHelp("PEM file of the CA that signed an https:// coordinator's certificate (or set BARGE_CA_FILE; default: the system's roots).", valueName: "file"))
    var ca: String?

    @Option(help: ArgumentHelp("Seconds each request to the coordinator may take, its whole answer included (above 0, at most a week; default 30; longer for the few that do long work: tier gc, prune, the evidence bundle). A coordinator that stops answering midway fails the request after this long.", valueName: "seconds"))
    var timeout: Double?

    static let defaultTokenFile = "./barge-state/admin.token"

    mutating func validate() throws {
        if let timeout, !(timeout > 0 && timeout <= 604_800) { throw ValidationError("--timeout must be a number of seconds above 0, at most 604800 (a week)") }
    }

    /// A client for the coordinator, with the token read from its file.
    func api() throws -> CoordinatorAPI {
        CoordinatorAPI(base: url, token: try token(), ca: try caFile(), timeout: timeout)
    }

    /// `--ca`, or `BARGE_CA_FILE`; only for https:// URLs.
    func caFile() throws -> String? {
        if let ca {
            guard url.hasPrefix("https://") else {
                throw Failure("--ca checks an https:// coordinator, and \(url) is plain HTTP")
            }
            return ca
        }
        guard url.hasPrefix("https://") else { return nil }
        return ProcessInfo.processInfo.environment["BARGE_CA_FILE"].flatMap { $0.isEmpty ? nil : $0 }
    }

    func token() throws -> String? {
        let environment = ProcessInfo.processInfo.environment["BARGE_API_TOKEN_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        guard let path = apiTokenFile ?? environment else {
            return FileManager.default.fileExists(atPath: Self.defaultTokenFile) ? try Self.read(Self.defaultTokenFile, from: "the default") : nil
        }
        return try Self.read(path, from: apiTokenFile != nil ? "--api-token-file" : "BARGE_API_TOKEN_FILE")
    }

    private static func read(_ path: String, from source: String) throws -> String {
        // Said in the system's words: Foundation's were "The operation could not be completed"
        // (NSCocoaErrorDomain error 256) for a directory (a black-box review).
        var st = stat()
        guard stat(path, &st) == 0 else { throw Failure("cannot read the API token file \(path) (\(source)): \(String(cString: strerror(errno)))") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw Failure("the API token file \(path) (\(source)) is not a file (a directory?): give the file the token is in") }
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            let why = access(path, R_OK) != 0 ? String(cString: strerror(errno)) : "it is not UTF-8 text"
            throw Failure("cannot read the API token file \(path) (\(source)): \(why)")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty, !token.contains(where: \.isWhitespace) else { throw Failure("the API token file \(path) (\(source)) holds no token") }
        // As for the cluster token: a notice, since the file may be private some other way.
        if let exposure = TokenOptions.exposure(of: path, "the API token file", "whoever reads it acts on the coordinator with its role; chmod 600 \(path)") {
            FileHandle.standardError.write(Data("warning: \(exposure)\n".utf8))
        }
        return token
    }

    var url: String {
        let raw = coordinatorURL ?? ProcessInfo.processInfo.environment["BARGE_COORDINATOR"] ?? "http://127.0.0.1:7480"
        let withScheme = raw.contains("://") ? raw : "http://" + raw
        return withScheme.hasSuffix("/") ? String(withScheme.dropLast()) : withScheme
    }
}

func parseHostPort(_ text: String, option: String) throws -> HostPort {
    do { return try HostPort(parsing: text) } catch { throw ValidationError("\(option): \(error)") }
}

/// A one-line reason on stderr and exit status 1, for failures that are not usage errors.
struct Failure: Error, CustomStringConvertible {
    let description: String
    /// The coordinator gave no answer (not listening, connection closed, timed out, or cut off
    /// mid-answer), as opposed to an answer that refuses: worth asking again later.
    let noAnswer: Bool
    init(_ description: String, noAnswer: Bool = false) {
        self.description = description
        self.noAnswer = noAnswer
    }
}
