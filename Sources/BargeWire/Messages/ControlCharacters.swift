/// Control characters in text that came from a peer or from a file name, shown as `\xNN` (C0 and
/// DEL) or `\u{NN}` (C1), as names that are not UTF-8 are shown. A reason sent by a peer (a
/// nack's detail, a failure, an error frame before the handshake) goes into logs, the journal and
/// operators' terminals: a newline in it forged a log line, and an escape sequence in a file
/// name set the terminal's title and cleared its screen through `barge status`.
public enum ControlCharacters {
    /// `text` with its control characters escaped; newlines and tabs too unless `keepingLines`.
    public static func escaped(_ text: String, keepingLines: Bool = false) -> String {
        func isControl(_ s: Unicode.Scalar) -> Bool {
            (s.value < 0x20 && !(keepingLines && (s == "\n" || s == "\t"))) || (0x7F...0x9F).contains(s.value)
        }
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if !isControl(scalar) {
                out.unicodeScalars.append(scalar)
            } else if scalar.value < 0x80 {
                out += "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
            } else {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            }
        }
        return out
    }
}
