import ArgumentParser
import Foundation
import TOMLKit

/// `--config FILE` for the coordinator and agents: a TOML file whose keys are the command's long
/// flags without their dashes, as in
///
///     # agent.toml
///     coordinator = "coord:7470"
///     name = "dtn01"
///     site = "site-a"
///     root = "/data"
///     bwlimit = "Mon-Fri 08:00-18:00 100MiB/s, 18:00 off"
///     insecure-plaintext = false
///
/// A string or number is the flag's value; `true` gives a flag, `false` leaves it off; an array
/// repeats an option. The file's flags go before the command line's own, so a flag given on the
/// command line wins (ArgumentParser keeps an option's last value).
enum ConfigFile {
    /// Commands that take `--config`.
    static let commands: Set<String> = ["coordinator", "agent"]

    /// `arguments` (without the program name) with the config file's flags put in.
    static func expand(_ arguments: [String]) throws -> [String] {
        guard let command = arguments.first, commands.contains(command), let path = configPath(arguments) else { return arguments }
        return [command] + (try flags(from: path)) + arguments.dropFirst()
    }

    /// When parsing failed on an unknown option that only the config file gave, the reason in
    /// the file's terms (ArgumentParser would name a flag the user never typed).
    static func unknownKey(message: String, arguments: [String]) -> String? {
        guard let start = message.range(of: "Unknown option '--")?.upperBound,
              let end = message[start...].firstIndex(of: "'") else { return nil }
        let key = String(message[start..<end])
        guard !arguments.contains(where: { $0 == "--" + key || $0.hasPrefix("--" + key + "=") }),
              let command = arguments.first, commands.contains(command),
              let path = configPath(arguments) else { return nil }
        return "--config \(path): unknown key '\(key)'; the keys are the long flags of 'barge \(command) --help', without their dashes"
    }

    /// An error message naming a flag (`--bwlimit: 'fast' is not a rate`) that only the config
    /// file gave, with the file and key named: the user never typed that flag. Nil when no
    /// config file is in play or the flags it names were typed too.
    static func attributed(message: String, arguments: [String]) -> String? {
        guard let command = arguments.first, commands.contains(command), let path = configPath(arguments),
              let fromFile = try? flags(from: path) else { return nil }
        let given = Set(fromFile.filter { $0.hasPrefix("--") }.map { String($0.dropFirst(2)) })
        let typed = Set(arguments.dropFirst().filter { $0.hasPrefix("--") }.map { String($0.dropFirst(2).prefix { $0 != "=" }) })
        // The flags the message names, in order: `--name` up to a character no flag has.
        var named: [String] = []
        var rest = message[...]
        while let dashes = rest.range(of: "--") {
            let name = rest[dashes.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "-" }
            if !name.isEmpty, !named.contains(String(name)) { named.append(String(name)) }
            rest = rest[dashes.upperBound...]
        }
        guard let key = named.first(where: { given.contains($0) && !typed.contains($0) }) else { return nil }
        return "\(message) (from --config \(path), key '\(key)')"
    }

    static func configPath(_ arguments: [String]) -> String? {
        var path: String?
        for (i, a) in arguments.enumerated() {
            if a == "--config" { path = i + 1 < arguments.count ? arguments[i + 1] : nil }
            if a.hasPrefix("--config=") { path = String(a.dropFirst("--config=".count)) }
        }
        return path
    }

    /// The flags a config file stands for.
    static func flags(from path: String) throws -> [String] {
        // A usage error (exit 64), as a bad flag is: the file stands for flags.
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            let why = access(path, R_OK) != 0 ? String(cString: strerror(errno)) : "it is not UTF-8 text (or not a file)"
            throw ValidationError("--config: cannot read \(path): \(why)")
        }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch { throw ValidationError("--config \(path): not valid TOML: \(error)") }
        var out: [String] = []
        for key in table.keys.sorted() {
            guard key != "config" else { throw ValidationError("--config \(path): a config file cannot name another (key 'config')") }
            guard let value = table[key] else { continue }
            func scalar(_ v: TOMLValueConvertible) throws -> String {
                if let s = v.string { return s }
                if let i = v.int { return String(i) }
                if let d = v.double { return String(d) }
                throw ValidationError("--config \(path): '\(key)' must be a string, a number, true or false, or an array of them")
            }
            if let flag = value.bool {
                if flag { out.append("--" + key) }
            } else if let array = value.array {
                for element in array { out += ["--" + key, try scalar(element)] }
            } else {
                out += ["--" + key, try scalar(value)]
            }
        }
        return out
    }
}

/// `--config FILE` as the coordinator and agent declare it (`ConfigFile` reads it before parsing).
struct ConfigOption: ParsableArguments {
    @Option(help: ArgumentHelp("A TOML file of flags for this command: keys named like the long flags (bwlimit = \"100MiB/s\", cold = \"/archive\"); flags on the command line override it.", valueName: "file"))
    var config: String?
}
