import Foundation
import Testing

/// `--tls-cert` and `--tls-key` serve the HTTP API over HTTPS, and the CLI checks the server's
/// certificate against the system's roots or `--ca`: a transfer runs end to end over HTTPS, and
/// every way of getting the certificate wrong fails with its reason.
@Suite(.serialized)
struct APITLSProcessTests {
    static let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let hasOpenSSL: Bool = {
        if openssl == nil { print("APITLSProcessTests: skipped, no openssl command to make test certificates (cluster/install-deps.sh installs it)") }
        return openssl != nil
    }()

    /// A test CA and a certificate it signed for localhost and 127.0.0.1, plus a self-signed
    /// certificate and key that nothing trusts, in `dir`.
    struct PKI {
        let ca: String, cert: String, key: String, strangerCert: String, strangerKey: String

        init(in dir: URL) throws {
            let d = dir.path
            func openssl(_ arguments: [String]) throws {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: APITLSProcessTests.openssl!)
                p.arguments = arguments
                p.currentDirectoryURL = dir
                p.standardOutput = FileHandle.nullDevice
                p.standardError = FileHandle.nullDevice
                try p.run()
                p.waitUntilExit()
                try #require(p.terminationStatus == 0, "openssl \(arguments.joined(separator: " ")) failed")
            }
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
            try openssl(["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=barge test CA"])
            try openssl(["req"] + ec + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"])
            try Data("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n".utf8)
                .write(to: dir.appendingPathComponent("server.ext"))
            try openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                         "-out", "server.pem", "-days", "2", "-extfile", "server.ext"])
            try openssl(["req", "-x509"] + ec + ["-keyout", "stranger.key", "-out", "stranger.pem", "-days", "2", "-subj", "/CN=stranger"])
            (ca, cert, key, strangerCert, strangerKey) = (d + "/ca.pem", d + "/server.pem", d + "/server.key", d + "/stranger.pem", d + "/stranger.key")
        }
    }

    @Test(.enabled(if: hasOpenSSL))
    func aTransferRunsOverHTTPSAndTheCLIChecksTheCertificate() async throws {
        let keys = try TemporaryDirectory()
        let pki = try PKI(in: keys.url)
        let cluster = try TestCluster(environment: ["BARGE_CA_FILE": pki.ca])
        defer { withExtendedLifetime(keys) {} }
        let source = cluster.dir.url.appendingPathComponent("root-a/ds")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        let payload = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try payload.write(to: source.appendingPathComponent("f.bin"))

        // Bound to every address, with TLS: no warning about clear text.
        let (coordinator, agents, listed) = try await cluster.startCoordinator(
            extra: ["--tls-cert", pki.cert, "--tls-key", pki.key], http: "0.0.0.0:0")
        defer { withExtendedLifetime(coordinator) {} }
        #expect(listed.hasPrefix("https://"), "\(coordinator.output)")
        #expect(!coordinator.output.contains("without TLS"), "\(coordinator.output)")
        let port = try #require(listed.split(separator: ":").last)
        let http = "https://127.0.0.1:\(port)"
        let a1 = try cluster.startAgent("a1", site: "a", root: "root-a", coordinator: agents)
        let b1 = try cluster.startAgent("b1", site: "b", root: "root-b", coordinator: agents)
        defer { withExtendedLifetime((a1, b1)) {} }
        try #require(try await cluster.agentsRegister(2, http), "\(a1.output)\(b1.output)")

        // BARGE_CA_FILE trusts the test CA: a job runs end to end, and its evidence bundle
        // (streamed to stdout) verifies offline.
        let submitted = try cluster.cli(["submit", "a:ds", "b:copy", "--wait", "--json"], http: http)
        #expect(submitted.status == 0, "\(submitted.stderr)")
        #expect(try Data(contentsOf: cluster.dir.url.appendingPathComponent("root-b/copy/f.bin")) == payload)
        let job = try #require(try JSONSerialization.jsonObject(with: Data(submitted.stdout.utf8)) as? [String: Any])["id"] as? String
        let bundle = cluster.dir.url.appendingPathComponent("evidence.json")
        let exported = try cluster.cli(["audit", "export", try #require(job)], http: http)
        #expect(exported.status == 0, "\(exported.stderr)")
        try Data(exported.stdout.utf8).write(to: bundle)
        let checked = try BargeProcess.run(["audit", "verify", "--bundle", bundle.path])
        #expect(checked.status == 0, "\(checked.stdout)\(checked.stderr)")

        // The dashboard's sign-in cookie is marked Secure over TLS: a browser never sends it in clear.
        let token = try String(contentsOfFile: cluster.dir.path + "/state/admin.token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let signIn = try BargeProcess.run(["-s", "-o", "/dev/null", "-D", "-", "--cacert", pki.ca, "\(http)/?token=\(token)"],
                                          executable: URL(fileURLWithPath: "/usr/bin/curl")).stdout
        let cookie = signIn.split(separator: "\r\n").first { $0.lowercased().hasPrefix("set-cookie:") }
        #expect(cookie?.contains("HttpOnly; SameSite=Strict; Secure") == true, "\(signIn)")

        // --ca on the command line does the same, with the token still required.
        var noCA = cluster.environment
        noCA["BARGE_CA_FILE"] = ""
        let withFlag = try BargeProcess.run(["jobs", "--coordinator-url", http, "--ca", pki.ca], environment: noCA)
        #expect(withFlag.status == 0 && withFlag.stdout.contains(job!), "\(withFlag.stderr)")
        var noToken = noCA
        noToken["BARGE_API_TOKEN_FILE"] = ""
        let anonymous = try BargeProcess.run(["jobs", "--coordinator-url", http, "--ca", pki.ca], environment: noToken, directory: cluster.dir.url)
        #expect(anonymous.status == 1 && anonymous.stderr.contains("requires an API token"), "\(anonymous.stderr)")

        // Every way of getting it wrong fails with a reason that says what to do.
        let untrusted = try BargeProcess.run(["jobs", "--coordinator-url", http], environment: noCA)
        #expect(untrusted.status == 1 && untrusted.stderr.contains("is not trusted") && untrusted.stderr.contains("--ca FILE"), "\(untrusted.stderr)")
        let stranger = try BargeProcess.run(["jobs", "--coordinator-url", http, "--ca", pki.strangerCert], environment: noCA)
        #expect(stranger.status == 1 && stranger.stderr.contains("not signed by a CA in \(pki.strangerCert)"), "\(stranger.stderr)")
        let wrongName = try BargeProcess.run(["jobs", "--coordinator-url", "https://127.0.0.2:\(port)"], environment: cluster.environment)
        #expect(wrongName.status == 1 && wrongName.stderr.contains("does not name the host"), "\(wrongName.stderr)")
        let clear = try BargeProcess.run(["jobs", "--coordinator-url", "http://127.0.0.1:\(port)"], environment: noCA)
        #expect(clear.status == 1 && clear.stderr.contains("use https://"), "\(clear.stderr)")
        let caOnHTTP = try BargeProcess.run(["jobs", "--coordinator-url", "http://127.0.0.1:\(port)", "--ca", pki.ca], environment: noCA)
        #expect(caOnHTTP.status == 1 && caOnHTTP.stderr.contains("--ca checks an https:// coordinator"), "\(caOnHTTP.stderr)")
        let unreadable = try BargeProcess.run(["jobs", "--coordinator-url", http, "--ca", cluster.dir.path + "/nope.pem"], environment: noCA)
        #expect(unreadable.status == 1 && unreadable.stderr.contains("--ca \(cluster.dir.path)/nope.pem: cannot read"), "\(unreadable.stderr)")
    }

    @Test(.enabled(if: hasOpenSSL))
    func badCertificateFilesStopTheCoordinatorBeforeItListens() async throws {
        let cluster = try TestCluster()
        let pki = try PKI(in: cluster.dir.url)
        func coordinator(_ extra: [String]) throws -> BargeProcess.Result {
            try BargeProcess.run(["coordinator", "--state", cluster.dir.path + "/state", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"] + extra,
                                 environment: cluster.environment)
        }
        let mismatched = try coordinator(["--tls-cert", pki.cert, "--tls-key", pki.strangerKey])
        #expect(mismatched.status == 1 && mismatched.stderr.contains("does not go with the certificate"), "\(mismatched.stderr)")
        let missing = try coordinator(["--tls-cert", cluster.dir.path + "/none.pem", "--tls-key", pki.key])
        #expect(missing.status == 1 && missing.stderr.contains("cannot read a PEM certificate"), "\(missing.stderr)")
        let keyAsCert = try coordinator(["--tls-cert", pki.key, "--tls-key", pki.key])
        #expect(keyAsCert.status == 1 && keyAsCert.stderr.contains("--tls-cert"), "\(keyAsCert.stderr)")
        let alone = try coordinator(["--tls-cert", pki.cert])
        #expect(alone.status != 0 && alone.stderr.contains("--tls-cert and --tls-key go together"), "\(alone.stderr)")

        // Plain HTTP beyond loopback still starts, with a warning.
        let (plain, _, _) = try await cluster.startCoordinator(http: "0.0.0.0:0")
        defer { withExtendedLifetime(plain) {} }
        #expect(plain.output.contains("without TLS"), "\(plain.output)")
    }
}
