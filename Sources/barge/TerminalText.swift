import BargeWire

/// Text from the cluster made safe to print on an operator's terminal: control characters other
/// than newline and tab are escaped (`ControlCharacters`). JSON output is left exact (JSON
/// escapes them itself).
enum TerminalText {
    static func safe(_ text: String) -> String { ControlCharacters.escaped(text, keepingLines: true) }

    /// One field of a line (a path, a table cell): newlines and tabs escaped too, so that a file
    /// named with a newline stays on its own line of `barge ls` and of a job's summary. Before,
    /// one such name printed as two entries (a black-box review).
    static func field(_ text: String) -> String { ControlCharacters.escaped(text) }
}
