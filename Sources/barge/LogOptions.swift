import ArgumentParser
import Foundation
import Logging

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `--log-level` and `--log-format` for the coordinator and agents: the least severe level
/// logged, and plain text lines or one JSON object per line (for log shippers). Logs go to
/// standard error.
struct LogOptions: ParsableArguments {
    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Option(help: ArgumentHelp("Least severe level logged: trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: Logger.Level = .info
    @Option(help: ArgumentHelp("text (one line per event) or json (one JSON object per line: time, level, label, message, metadata).", valueName: "format"))
    var logFormat: Format = .text

    /// Sets up swift-log for the process; call before any logger is made.
    func bootstrap() {
        let level = logLevel, format = logFormat
        LoggingSystem.bootstrap { label in
            var handler: LogHandler = switch format {
            case .text: StreamLogHandler.standardError(label: label)
            case .json: JSONLogHandler(label: label)
            }
            handler.logLevel = level
            return handler
        }
    }
}

/// One JSON object per log event on standard error: `{"time":…,"level":…,"label":…,"message":…,
/// "source":…,"metadata":{…}}`.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    private static let lock = NSLock()

    init(label: String) { self.label = label }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        write(level: event.level, message: event.message, metadata: event.metadata, source: event.source)
    }

    func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        write(level: level, message: message, metadata: explicit, source: source)
    }

    private func write(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String) {
        let merged = metadata.merging(explicit ?? [:]) { $1 }
        var object: [String: Any] = [
            "time": ISO8601DateFormatter.string(from: Date(), timeZone: TimeZone(identifier: "UTC")!,
                                                formatOptions: [.withInternetDateTime, .withFractionalSeconds]),
            "level": level.rawValue, "label": label, "message": message.description, "source": source,
        ]
        if !merged.isEmpty { object["metadata"] = merged.mapValues { $0.description } }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        Self.lock.withLock { FileHandle.standardError.write(data + Data("\n".utf8)) }
    }
}
