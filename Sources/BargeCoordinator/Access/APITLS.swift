import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOCore
import NIOSSL

/// `--tls-cert` and `--tls-key`: the HTTP API served over TLS (1.2 or 1.3), so that tokens and job
/// details do not cross the network in clear. Both files are PEM: the certificate file holds the
/// server's certificate first and then any intermediates; the key file an unencrypted private key.
/// Everything is loaded and checked at start, so a bad file stops the coordinator with its reason
/// before it listens, never at the first client's handshake.
public struct APITLS: Sendable {
    public let certificatePath: String
    public let keyPath: String
    let configuration: TLSConfiguration

    public init(certificate certificatePath: String, key keyPath: String) throws(APITLSError) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        let chain: [NIOSSLCertificate]
        do { chain = try NIOSSLCertificate.fromPEMFile(certificatePath) } catch {
            throw APITLSError("--tls-cert \(certificatePath): cannot read a PEM certificate (\(error))")
        }
        guard !chain.isEmpty else { throw APITLSError("--tls-cert \(certificatePath): no PEM certificate in the file") }
        let key: NIOSSLPrivateKey
        do { key = try NIOSSLPrivateKey(file: keyPath, format: .pem) } catch {
            throw APITLSError("--tls-key \(keyPath): cannot read an unencrypted PEM private key (\(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        // BoringSSL refuses a key that does not belong to the leaf certificate here.
        do { _ = try NIOSSLContext(configuration: configuration) } catch {
            throw APITLSError("--tls-key \(keyPath) does not go with the certificate in --tls-cert \(certificatePath) (\(error))")
        }
        self.configuration = configuration
    }

    /// The server builder for Hummingbird: HTTP/1.1 inside TLS.
    func server() throws -> HTTPServerBuilder { try .tls(.http1(configuration: APIServer.http1), tlsConfiguration: configuration) }
}

public struct APITLSError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The API's HTTP/1 settings: a connection that has not sent a whole request head within
/// `headerTimeout` is closed (a request in progress, a long poll included, is not cut).
enum APIServer {
    static let headerTimeout: TimeAmount = .seconds(15)
    static var http1: HTTP1Channel.Configuration { .init(idleTimeout: headerTimeout) }
}
