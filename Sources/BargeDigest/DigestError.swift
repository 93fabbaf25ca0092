import CBargeCrypto

/// A libcrypto call failed. `code` is OpenSSL's packed error code (0 if it left none).
public struct DigestError: Error, CustomStringConvertible, Sendable {
    public let function: String
    public let code: UInt

    init(_ function: String) {
        self.function = function
        self.code = UInt(barge_crypto_last_error())
    }

    public var description: String { "libcrypto \(function) failed (error \(code))" }
}
