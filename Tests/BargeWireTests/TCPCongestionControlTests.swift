import BargeWire
import Foundation
import Testing

/// `--tcp-congestion`: names, and what the kernel grants.
struct TCPCongestionControlTests {
    @Test func namesAreKernelNames() throws {
        for name in ["cubic", "bbr", "reno", "htcp", "dctcp", "bbr2", "a_b", String(repeating: "x", count: 15)] {
            #expect(try TCPCongestionControl(named: name).name == name)
        }
        for name in ["", "Cubic", "cu bic", "../bbr", "bbr\0", "cubic\n", String(repeating: "x", count: 16), "é"] {
            #expect(throws: TCPCongestionError.self, "\(name.debugDescription)") { try TCPCongestionControl(named: name) }
        }
    }

    /// Reno is built into every Linux kernel and always allowed; a name no kernel has is refused
    /// with where to look.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/proc/sys/net/ipv4/tcp_congestion_control"), "not Linux"))
    func theKernelIsAsked() throws {
        try TCPCongestionControl(named: "reno").check()
        do {
            try TCPCongestionControl(named: "nosuchcc").check()
            Issue.record("a congestion control no kernel has was accepted")
        } catch let error as TCPCongestionError {
            #expect(error.description.contains("no TCP congestion control 'nosuchcc'") && error.description.contains("tcp_available_congestion_control"),
                    "\(error)")
        }
        let host = try #require(TCPCongestionControl.hostDefault())
        #expect(try String(contentsOfFile: "/proc/sys/net/ipv4/tcp_congestion_control", encoding: .utf8).hasPrefix(host))
    }
}
