/// A `HOST:PORT` as people write it on the command line: `127.0.0.1:7470`, `dtn01:7470`,
/// `[::1]:7470`.
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws(HostPortError) {
        var host: Substring, portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { throw HostPortError(text) }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { throw HostPortError(text) }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { throw HostPortError(text) }
        self.init(host: String(host), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct HostPortError: Error, Hashable, Sendable, CustomStringConvertible {
    public let text: String
    init(_ text: String) { self.text = text }
    public var description: String { "'\(text)' is not HOST:PORT (for example 127.0.0.1:7470 or [::1]:7470)" }
}
