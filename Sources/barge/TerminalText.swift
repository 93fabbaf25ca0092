import BargeWire

/// Text from the cluster made safe to print on an operator's terminal: control characters other
/// than newline and tab are escaped (`ControlCharacters`). JSON output is left exact (JSON
/// escapes them itself).
enum TerminalText {
    static func safe(_ text: String) -> String { ControlCharacters.escaped(text, keepingLines: true) }
}
