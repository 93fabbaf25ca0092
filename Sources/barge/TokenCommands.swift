import ArgumentParser
import BargeCoordinator
import Foundation

/// `barge token create|list|revoke`: the coordinator's API tokens (admin only).
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Create, list and revoke the coordinator's API tokens (needs an admin token).",
        discussion: """
            Every API request carries a bearer token, and each token has a role:
              viewer    reads jobs, agents, verifications and metrics
              operator  also submits, cancels, resumes, sets limits, verifies and prunes
              admin     also drains agents and manages tokens
            On its first start the coordinator writes an admin token to STATE/admin.token \
            (mode 0600). The coordinator keeps only each token's SHA-256: a secret is shown once, \
            when it is created.
            """,
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a token and print its secret (shown this once).",
            discussion: "Example: barge token create --role operator --name ci > ci.token && chmod 600 ci.token")

        @Option(help: ArgumentHelp("viewer, operator or admin.", valueName: "role")) var role: String
        @Option(help: ArgumentHelp("A name for logs and for revoking it: letters, digits, '.', '_', '-'.", valueName: "name")) var name: String
        @Flag(help: "Print JSON: name, role and token.") var json = false
        @OptionGroup var coordinator: CoordinatorURLOptions

        func validate() throws {
            guard APIRole(rawValue: role) != nil else { throw ValidationError("--role must be viewer, operator or admin, not '\(role)'") }
        }

        func run() async throws {
            let body = try JSONEncoder().encode(CreateTokenRequest(name: name, role: APIRole(rawValue: role)!))
            let created = try JSONDecoder().decode(CreatedToken.self, from: try await coordinator.api().post("/v1/tokens", body: body))
            if json {
                print(try JSONOutput.encode(created))
            } else {
                // The secret alone on stdout, so that it can go straight to a file.
                print(created.token)
                FileHandle.standardError.write(Data("token '\(created.name)' (\(created.role.rawValue)) created; its secret is shown only now\n".utf8))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens: name, role and creation time (never secrets).")

        @Flag(help: "Print JSON: a list of objects with name, role and created_at.") var json = false
        @OptionGroup var coordinator: CoordinatorURLOptions

        func run() async throws {
            let list = try JSONDecoder().decode(TokenList.self, from: try await coordinator.api().get("/v1/tokens"))
            if json {
                print(try JSONOutput.encode(list.tokens))
                return
            }
            let time = ISO8601DateFormatter()
            let rows = [["NAME", "ROLE", "CREATED"]] + list.tokens.map { [$0.name, $0.role.rawValue, time.string(from: Date(timeIntervalSince1970: $0.createdAt))] }
            print(Table.render(rows))
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a token by name: requests with it are refused from now on.",
            discussion: "The last admin token cannot be revoked; create another admin token first.")

        @Argument(help: ArgumentHelp("The token's name.", valueName: "name")) var name: String
        @Flag(help: "Print the revoked token's name, role and created_at as JSON.") var json = false
        @OptionGroup var coordinator: CoordinatorURLOptions

        func run() async throws {
            let data = try await coordinator.api().delete("/v1/tokens/\(pathComponent(name))")
            let revoked = try JSONDecoder().decode(TokenInfo.self, from: data)
            print(json ? String(decoding: data, as: UTF8.self) : "token '\(revoked.name)' (\(revoked.role.rawValue)) revoked")
        }
    }
}
