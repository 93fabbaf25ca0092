import ArgumentParser
import BargeWire
import Foundation

/// `--token-file`, falling back to `BARGE_TOKEN_FILE`.
struct TokenOptions: ParsableArguments {
    @Option(help: ArgumentHelp("File holding the cluster's shared token (or set BARGE_TOKEN_FILE).", valueName: "file"))
    var tokenFile: String?

    func token() throws -> ClusterToken {
        guard let path = tokenFile ?? ProcessInfo.processInfo.environment["BARGE_TOKEN_FILE"], !path.isEmpty else {
            throw ValidationError("a cluster token is required: pass --token-file FILE or set BARGE_TOKEN_FILE (make one with: head -c 32 /dev/urandom | base64 > token)")
        }
        do { return try ClusterToken(contentsOf: path) } catch { throw ValidationError("\(error)") }
    }
}

/// `--coordinator-url`, falling back to `BARGE_COORDINATOR`, then http://127.0.0.1:7480.
struct CoordinatorURLOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The coordinator's HTTP API (or set BARGE_COORDINATOR; default http://127.0.0.1:7480).", valueName: "url"))
    var coordinatorURL: String?

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
    init(_ description: String) { self.description = description }
}
