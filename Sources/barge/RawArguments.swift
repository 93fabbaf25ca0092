import BargeStore
import Foundation

/// The command line's bytes, before Swift makes strings of them.
enum RawArguments {
    /// Why an argument cannot be taken, nil when all can: one whose bytes are not UTF-8.
    /// `CommandLine.arguments` repairs such bytes into U+FFFD, so that `a:/bad\xff` asked for a
    /// file named `bad\u{FFFD}`: "does not exist" for one that does, or another file sent, with
    /// exit 0, when one is so named (h2 of session 53, F4).
    static func notUTF8(_ argv: [[UInt8]] = fromArgv()) -> String? {
        for (n, bytes) in argv.enumerated().dropFirst() where String(validating: bytes, as: UTF8.self) == nil {
            return "argument \(n) ('\(TreeScanner.escape(bytes))') is not UTF-8: Barge takes names, sites and paths in UTF-8 only; a file whose "
                + "name is not UTF-8 cannot be named, nor transferred (convmv renames it)"
        }
        return nil
    }

    static func fromArgv() -> [[UInt8]] {
        (0..<Int(CommandLine.argc)).map { i in
            guard let p = CommandLine.unsafeArgv[i] else { return [] }
            return Array(UnsafeBufferPointer(start: p, count: strlen(p))).map { UInt8(bitPattern: $0) }
        }
    }

}
