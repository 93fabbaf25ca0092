@testable import BargeAgent
import BargeFlow
import Foundation
import Testing

/// A new lane starts from what its path is known to carry, kept across agent restarts.
final class PathMemoryTests {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("barge-paths-\(UUID().uuidString)").path

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    func scratch() throws -> String {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A lane measured under a queue is remembered and saved; an agent started again over the same
    /// state starts its lane to that destination at the bandwidth-delay product, and a lane to
    /// any other destination at the usual 1 MiB.
    @Test func aRestartedAgentStartsItsLaneAtTheKnownBandwidthDelayProduct() async throws {
        let file = try scratch() + "/" + PathMemory.fileName
        let clock = LaneFlowTests.Clock()
        let lanes = Lanes(memory: PathMemory(file: file), clock: { clock.now })
        let lane = lanes.lane(to: "b1", mode: .fair)
        #expect(lane.known == nil, "nothing measured yet")
        // 256 KiB every 10 ms (26 MB/s) with 9 ms of queue over a 1 ms base delay.
        await BottleneckEstimateTests().deliver(lane, clock, count: 40, bytes: 256 << 10, every: 10_000_000, rtt: 10_000_000, least: 1_000_000)
        let known = try #require(lane.known)
        #expect(known.baseDelay == 1_000_000)
        lanes.remember(now: 1_000)
        #expect(FileManager.default.fileExists(atPath: file))

        let again = Lanes(memory: PathMemory(file: file))
        #expect(again.memory.known("b1", now: 1_000) == PathMemory.Known(rate: known.rate, baseDelay: 1_000_000, measuredAt: 1_000))
        let parameters = CongestionController.Parameters()
        // 26 MB/s × 1 ms is below 1 MiB: the starting window never goes below the usual one.
        #expect(parameters.startingWindow(rate: known.rate, baseDelay: 1_000_000) == parameters.initialWindow)
        // A long fat path: 5 Gbit/s at 100 ms is 62.5 MB in flight (a fair lane's usual start is
        // 32 MiB); a scavenger lane starts at the product of a path with less too.
        again.memory.remember("b2", PathMemory.Known(rate: 625e6, baseDelay: 100_000_000, measuredAt: Date().timeIntervalSince1970))
        #expect(again.lane(to: "b2", mode: .fair).controller.window == 62_500_000)
        again.memory.remember("b4", PathMemory.Known(rate: 125e6, baseDelay: 100_000_000, measuredAt: Date().timeIntervalSince1970))
        #expect(again.lane(to: "b4", mode: .scavenger).controller.window == 12_500_000)
        #expect(again.lane(to: "b4", mode: .fair).controller.window == parameters.initialWindow(.fair))
        #expect(again.lane(to: "b3", mode: .fair).controller.window == parameters.initialWindow(.fair))
        #expect(again.lane(to: "b3", mode: .scavenger).controller.window == parameters.initialWindow)
        // A path faster than 64 MiB per round trip starts at 64 MiB, and grows from there.
        #expect(parameters.startingWindow(rate: 100e9, baseDelay: 100_000_000) == Double(64 << 20))
    }

    /// A record a week old is not used; a damaged file is ignored and replaced at the next save.
    @Test func staleRecordsAndDamagedFilesAreIgnored() throws {
        let file = try scratch() + "/" + PathMemory.fileName
        let memory = PathMemory(file: file)
        memory.remember("b1", PathMemory.Known(rate: 125e6, baseDelay: 50_000_000, measuredAt: 0))
        memory.save(now: 10, force: true)
        #expect(PathMemory(file: file).known("b1", now: 10)?.rate == 125e6)
        #expect(PathMemory(file: file).known("b1", now: PathMemory.maxAge + 1) == nil)

        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: file))
        let damaged = PathMemory(file: file)
        #expect(damaged.known("b1", now: 10) == nil)
        damaged.remember("b2", PathMemory.Known(rate: 1e6, baseDelay: 1_000_000, measuredAt: 10))
        damaged.save(now: 10)
        #expect(PathMemory(file: file).known("b2", now: 10)?.rate == 1e6)
    }

    /// Saves are spaced: a change within `saveInterval` of the last write waits for the next one.
    @Test func savesAreSpacedOut() throws {
        let file = try scratch() + "/" + PathMemory.fileName
        let memory = PathMemory(file: file)
        memory.remember("b1", PathMemory.Known(rate: 1e6, baseDelay: 1_000_000, measuredAt: 100))
        memory.save(now: 100)
        memory.remember("b1", PathMemory.Known(rate: 2e6, baseDelay: 1_000_000, measuredAt: 101))
        memory.save(now: 101)
        #expect(PathMemory(file: file).known("b1", now: 101)?.rate == 1e6)
        memory.save(now: 100 + PathMemory.saveInterval)
        #expect(PathMemory(file: file).known("b1", now: 101)?.rate == 2e6)
    }
}
