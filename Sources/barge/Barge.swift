import ArgumentParser
import BargeWire
import Foundation

@main
struct Barge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "barge",
        abstract: "Move very large datasets between clusters, in verified, adaptively compressed chunks.",
        discussion: """
            Barge cuts datasets into content-addressed chunks, picks a compressor for each chunk from \
            its entropy and the link's speed, and verifies every chunk with XXH3-128 and SHA-256.

            Start with `barge bench compress FILE...` to see how your own data compresses.
            A cluster is one `barge coordinator` and a `barge agent` on each data-transfer node.

            Exit codes:
              0   success: with --wait, the job succeeded; verify found no mismatch
              1   failure: a job ended failed or cancelled, verify found mismatches,
                  or the coordinator or an agent refused or could not be reached
              2   partial: the job succeeded, but source entries were not transferred:
                  its scan left them out (a name that is not UTF-8, a socket or device,
                  an entry it could not stat), or they vanished or changed at the source
                  during the transfer; or a promotion left files cold because their
                  cold copies are damaged; 'status' says why for the first
              64  usage: an unknown flag, a missing argument, a value that won't parse
            SIGINT and SIGTERM stop a coordinator or an agent cleanly (exit code 0).
            """,
        version: BargeBuild.version,
        subcommands: [DemoCommand.self, CoordinatorCommand.self, AgentCommand.self, SubmitCommand.self, StatusCommand.self, JobsCommand.self,
                      AgentsCommand.self, CancelCommand.self, ResumeCommand.self, SetCommand.self, VerifyCommand.self, DrainCommand.self, TierCommand.self, ListCommand.self, TokenCommand.self, AuditCommand.self, Bench.self]
    )

    /// As ArgumentParser's, except that a `ValidationError` thrown while a command runs shows that
    /// command's usage line (ArgumentParser would show the root's) and exits 64.
    static func main() async {
        if let why = RawArguments.notUTF8() {
            FileHandle.standardError.write(Data("Error: \(why)\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        let command: ParsableCommand
        let arguments = Array(CommandLine.arguments.dropFirst())
        do { command = try parseAsRoot(try ConfigFile.expand(arguments)) } catch {
            // A key of the config file that is no flag: say so in the file's terms.
            if let reason = ConfigFile.unknownKey(message: fullMessage(for: error), arguments: arguments) {
                FileHandle.standardError.write(Data("Error: \(reason)\n".utf8))
                Foundation.exit(ExitCode.validationFailure.rawValue)
            }
            // A bad value the config file gave: the file and key named (h4 of session 49).
            let full = fullMessage(for: error)
            let first = full.prefix { $0 != "\n" }
            if let line = ConfigFile.attributed(message: String(first), arguments: arguments) {
                FileHandle.standardError.write(Data((line + full.dropFirst(first.count) + "\n").utf8))
                Foundation.exit(exitCode(for: error).rawValue)
            }
            exit(withError: error)
        }
        do {
            if var asynchronous = command as? AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                var synchronous = command
                try synchronous.run()
            }
        } catch let error as ValidationError {
            let usage = usageString(for: type(of: command))
            let text = ConfigFile.attributed(message: error.message, arguments: arguments) ?? error.message
            FileHandle.standardError.write(Data("Error: \(text)\nUsage: \(usage)\n  See 'barge help \(type(of: command)._commandName)' for more information.\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        } catch {
            exit(withError: error)
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark compression and hashing on this machine and your data.",
        subcommands: [BenchCompress.self, BenchHash.self, BenchGenerate.self, BenchScale.self, BenchAudit.self]
    )
}
