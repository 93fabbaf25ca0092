extension FixedWidthInteger {
    /// `self + x`, held at the largest (or smallest) value rather than trapping: sums of what
    /// agents report (bytes scanned, bytes done) come from peers, and one holding the token once
    /// took the coordinator down with numbers whose sum overflowed.
    func addingSaturated(_ x: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(x)
        return overflow ? (x > 0 ? .max : .min) : sum
    }
}
