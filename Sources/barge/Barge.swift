import ArgumentParser

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
            """,
        subcommands: [DemoCommand.self, CoordinatorCommand.self, AgentCommand.self, SubmitCommand.self, StatusCommand.self, JobsCommand.self,
                      AgentsCommand.self, CancelCommand.self, ResumeCommand.self, SetCommand.self, VerifyCommand.self, DrainCommand.self, TierCommand.self, ListCommand.self, TokenCommand.self, AuditCommand.self, Bench.self]
    )
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark compression and hashing on this machine and your data.",
        subcommands: [BenchCompress.self, BenchHash.self, BenchGenerate.self, BenchScale.self, BenchAudit.self]
    )
}
