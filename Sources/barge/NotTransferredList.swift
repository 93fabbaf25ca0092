import BargeCoordinator
import Foundation

/// `barge status JOB --not-transferred`: every entry the job did not transfer, one a line, in the
/// order they were found, read a page at a time (`GET /v1/jobs/{id}/untransferable`). Before,
/// `status` named only the first; rsync names every file it could not send.
struct NotTransferredList {
    let api: CoordinatorAPI
    let job: String
    let json: Bool

    func print() async throws {
        var after: String?
        var last: UntransferableList?
        repeat {
            let query = after.map { "&after=\($0)" } ?? ""
            let page = try JSONDecoder().decode(UntransferableList.self,
                                                from: try await api.get("/v1/jobs/\(try pathComponent(job))/untransferable?limit=1000\(query)"))
            for entry in page.entries {
                Swift.print(json ? try JSONOutput.encode(entry) : TerminalText.field(entry))
            }
            after = page.next
            last = page
        } while after != nil
        guard let last, !json else { return }
        // On stderr: stdout stays one entry a line, for a script.
        if last.total == 0 {
            FileHandle.standardError.write(Data("\(job): no entry was left out\n".utf8))
        } else if last.total > last.named {
            FileHandle.standardError.write(Data("\(job): \(last.total) entries not transferred; the first \(last.named) are named above\n".utf8))
        }
    }
}
