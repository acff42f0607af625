/// KCIDB test status semantics.
public enum CellStatus: String, Sendable, Codable, CaseIterable, Comparable {
    /// A check failed or the kernel printed a splat.
    case fail = "FAIL"
    /// The harness failed: boot timeout, no result, a tool error.
    case error = "ERROR"
    /// Never ran.
    case miss = "MISS"
    case pass = "PASS"
    /// A measurement without a verdict.
    case done = "DONE"
    /// Cannot run here, with the reason.
    case skip = "SKIP"

    /// KCIDB's summarising priority: FAIL > ERROR > MISS > PASS > DONE > SKIP.
    public var priority: Int { CellStatus.allCases.count - CellStatus.allCases.firstIndex(of: self)! }

    public static func < (lhs: CellStatus, rhs: CellStatus) -> Bool { lhs.priority < rhs.priority }
}
