import Foundation
import GRDB
import GRDBSQLite

/// A value bound straight through SQLite's C API.
enum BoundValue {
    case int(Int64)
    case text(String)
    case blob(Data)
    case null
}

extension Statement {
    /// Runs a cached statement that returns no rows, its values bound through SQLite's C API.
    /// Only for the journal's hottest statements (a range made, a unit done): GRDB's
    /// `StatementArguments` boxes every value, which was a third of their cost.
    func run(_ values: BoundValue..., in db: Database) throws {
        let s = sqliteStatement
        sqlite3_reset(s)
        for (i, value) in values.enumerated() {
            let at = Int32(i + 1)
            let rc: Int32 = switch value {
            case .int(let v): sqlite3_bind_int64(s, at, v)
            case .text(let v): sqlite3_bind_text(s, at, v, -1, Self.transient)
            case .blob(let v): v.withUnsafeBytes { sqlite3_bind_blob(s, at, $0.baseAddress, Int32($0.count), Self.transient) }
            case .null: sqlite3_bind_null(s, at)
            }
            guard rc == SQLITE_OK else { throw error(rc, db) }
        }
        let rc = sqlite3_step(s)
        sqlite3_reset(s)
        guard rc == SQLITE_DONE else { throw error(rc, db) }
    }

    private func error(_ rc: Int32, _ db: Database) -> DatabaseError {
        DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: sql)
    }

    /// SQLite copies the bytes (`SQLITE_TRANSIENT`).
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}
