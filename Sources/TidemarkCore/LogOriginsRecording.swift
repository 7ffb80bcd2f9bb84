import TidemarkLog

extension LogOrigins {
    /// After a cutover's or rollback's commit point: from `from` on (nil:
    /// after the log's head), the log is written by the target or by the
    /// source again. Best effort: the switch has happened whatever this
    /// does; a failure only leaves those records unmarked in audit output.
    static func recordSwitch(plan: Plan, from: LSN?, toTarget: Bool) {
        let d = LogDirectory(plan.log)
        guard d.exists else { return }
        let first: LSN
        if let from {
            first = from
        } else {
            guard let head = try? LogReader(directory: plan.log).headLSN() else { return }
            first = head.next
        }
        let store = toTarget ? "target \(plan.displayTarget)" : "source \(plan.source)"
        try? LogOrigins.append(d, fromLSN: first, store: store)
    }
}
