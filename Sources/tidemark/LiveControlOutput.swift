import TidemarkCore
import TidemarkLog
#if canImport(Glibc)
import Glibc
#endif

// How live control (pause, throttle, postponed cutover) shows in `status`
// and in `migrate`'s output: kept here, apart from the rest of status.

/// `72 s` → `1m12s`; under a minute `12s`; over an hour `2h05m`.
func durationText(micros: Int64) -> String {
    let s = max(0, micros / 1_000_000)
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m\(String(format2Digits: s % 60))s" }
    return "\(s / 3600)h\(String(format2Digits: (s % 3600) / 60))m"
}

extension String {
    init(format2Digits n: Int64) { self = n < 10 ? "0\(n)" : "\(n)" }
}

/// The `status` lines for live control (none when nothing is paused or waiting).
func liveStatusLines(_ live: LiveControlState, planArgument: String, nowMicros: Int64 = Clock.wallMicros()) -> [String] {
    var lines: [String] = []
    let running = live.migrationWait.map { $0.isCurrent(nowMicros: nowMicros) } ?? false
    if let at = live.pausedAtMicros {
        let confirmed = running && live.migrationWait?.what == "paused"
        lines.append("paused for \(durationText(micros: nowMicros - at)) (since \(Timestamp(microsSinceEpoch: at))): "
                     + (confirmed ? "the running migration neither copies nor replays" : "no migration is running; the next `tidemark migrate` starts paused")
                     + " — `tidemark resume \(planArgument)` goes on")
    } else if let w = live.migrationWait, running {
        lines.append("waiting for \(durationText(micros: nowMicros - w.sinceMicros)): \(w.detail ?? w.what)")
    }
    if let w = live.cutoverWait {
        if w.isCurrent(nowMicros: nowMicros) {
            lines.append("cutover postponed for \(durationText(micros: nowMicros - w.sinceMicros)): waiting for \(w.what) to be removed (keeping the target caught up); it cuts over once the file is gone")
        } else {
            lines.append("a cutover postponed on \(w.what) since \(Timestamp(microsSinceEpoch: w.sinceMicros)) stopped waiting at \(Timestamp(microsSinceEpoch: w.seenAtMicros)) without cutting over (its process is gone)")
        }
    }
    return lines
}

/// The `status --json` object `live`.
func liveStatusJSON(_ live: LiveControlState, nowMicros: Int64 = Clock.wallMicros()) -> JSONObject {
    var o = JSONObject()
    o.set("paused", live.isPaused)
    o.set("paused_at", live.pausedAtMicros.map { Timestamp(microsSinceEpoch: $0).description })
    o.set("paused_seconds", live.pausedAtMicros.map { Int((nowMicros - $0) / 1_000_000) })
    func wait(_ w: LiveWait?, key: String) {
        guard let w, w.isCurrent(nowMicros: nowMicros) else { return o.set(key, raw: "null") }
        var j = JSONObject()
        j.set(key == "cutover_waiting" ? "flag" : "reason", w.what)
        if let d = w.detail { j.set("detail", d) }
        j.set("since", Timestamp(microsSinceEpoch: w.sinceMicros).description)
        j.set("seconds", Int((nowMicros - w.sinceMicros) / 1_000_000))
        o.set(key, j)
    }
    wait(live.migrationWait, key: "migration_waiting")
    wait(live.cutoverWait, key: "cutover_waiting")
    return o
}

/// `migrate`'s lines when it starts or stops waiting (paused, throttled):
/// one line on stderr each time that changes, with a terminal or without;
/// with `--json`, one JSON object per line (`{"live":{"waiting":"paused",…}}`,
/// `{"live":{"waiting":null}}`), so that a script is told too.
final class LiveProgressLines {
    let json: Bool
    let planArgument: String
    private var last: LiveWaitReason?

    init(json: Bool, planArgument: String) {
        self.json = json
        self.planArgument = planArgument
    }

    func show(_ p: MigrationProgress) {
        if last?.kind == p.waiting?.kind { return }
        defer { last = p.waiting }
        if json {
            var w = JSONObject()
            w.set("waiting", p.waiting?.kind)
            if case .paused(let at)? = p.waiting { w.set("paused_at", Timestamp(microsSinceEpoch: at).description) }
            if let reason = p.waiting { w.set("detail", reason.description) }
            var o = JSONObject()
            o.set("live", w)
            let line = Array((o.text + "\n").utf8)
            line.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
            return
        }
        switch (last, p.waiting) {
        case (_, .paused(let at)?):
            printError("paused since \(Timestamp(microsSinceEpoch: at)) (`tidemark pause`): neither copying nor replaying until `tidemark resume \(planArgument)`")
        case (_, let b?):
            printError(b.description)
        case (let a?, nil):
            printError(a.kind == "paused" ? "resumed" : "no longer throttled: copying again")
        case (nil, nil):
            break
        }
    }
}

/// `cutover --postpone-flag`: the one line (a JSON line with `--json`) on
/// stderr saying the cutover waits for `flag` to be removed.
func printPostponed(flag: String, json: Bool) {
    guard json else {
        return printError("cutover postponed: keeping the target caught up until \(flag) is removed (Ctrl-C stops waiting and changes nothing)")
    }
    var w = JSONObject()
    w.set("waiting", "postpone-flag")
    w.set("flag", flag)
    var o = JSONObject()
    o.set("live", w)
    let line = Array((o.text + "\n").utf8)
    line.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) }
}
