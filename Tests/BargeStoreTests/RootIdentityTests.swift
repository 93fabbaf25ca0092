import BargeStore
import Foundation
import Testing

/// The id that tells one root directory from another, whatever path each agent mounts it at.
struct RootIdentityTests {
    /// Made once and kept: the same id for a second agent, and through another path (a symbolic
    /// link stands in for another mount point); another directory has another.
    @Test func oneDirectoryHasOneIdWhateverPathReachesIt() throws {
        let sandbox = try Sandbox()
        let first = try RootIdentity.establish(root: sandbox.root)
        #expect(RootIdentity.isValid(first))
        #expect(try RootIdentity.establish(root: sandbox.root) == first)
        let mount = sandbox.url.appendingPathComponent("other-mount").path
        try FileManager.default.createSymbolicLink(atPath: mount, withDestinationPath: sandbox.root)
        #expect(try RootIdentity.establish(root: mount) == first)
        let elsewhere = sandbox.url.appendingPathComponent("elsewhere").path
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        #expect(try RootIdentity.establish(root: elsewhere) != first)
        // Nothing is left of the agents' temporary files.
        let names = try FileManager.default.contentsOfDirectory(atPath: sandbox.root + "/.barge")
        #expect(names == [RootIdentity.fileName], "\(names)")
    }

    /// Agents starting together on a new root all come away with one id.
    @Test func agentsStartingTogetherAgreeOnOneId() async throws {
        let sandbox = try Sandbox()
        let root = sandbox.root
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<16 { group.addTask { try RootIdentity.establish(root: root) } }
            return try await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(ids.count == 1, "\(ids)")
    }

    /// Something else under the id's name is an error, not an id to compare.
    @Test func aDamagedIdFileIsAnErrorThatSaysWhatToDo() throws {
        let sandbox = try Sandbox()
        try FileManager.default.createDirectory(atPath: sandbox.root + "/.barge", withIntermediateDirectories: true)
        try Data("not an id\n".utf8).write(to: URL(fileURLWithPath: sandbox.root + "/.barge/" + RootIdentity.fileName))
        #expect {
            try RootIdentity.establish(root: sandbox.root)
        } throws: { error in
            "\(error)".contains("32 hex digits") && "\(error)".contains("remove it")
        }
    }
}
