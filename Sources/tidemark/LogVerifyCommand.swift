import ArgumentParser
import TidemarkCore
import TidemarkLog
import TidemarkSQLite
#if canImport(Glibc)
import Glibc
#endif

struct LogVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every frame of a log; exit 1 naming the bad segment and LSN range."
    )

    @OptionGroup var log: LogLocation

    @OptionGroup var jsonOption: JSONOption
    var json: Bool { jsonOption.json }

    func run() throws {
        var clean = false
        try reportingErrors {
            let v = try LogVerifier.verify(LogDirectory(log.directory))
            clean = v.isClean
            if json {
                var o = JSONObject()
                o.set("ok", v.isClean)
                o.set("segments", v.segments)
                o.set("frames", v.frames)
                o.set("records", v.records)
                o.set("first_lsn", v.firstLSN?.rawValue)
                o.set("last_lsn", v.lastLSN?.rawValue)
                o.set("problems", array: v.problems.map { p in
                    var j = JSONObject()
                    j.set("code", p.code.rawValue)
                    j.set("segment", p.segment)
                    j.set("first_lsn", p.lsnRange?.lowerBound.rawValue)
                    j.set("last_lsn", p.lsnRange.flatMap { $0.upperBound.rawValue == UInt64.max ? nil : $0.upperBound.rawValue })
                    j.set("message", p.message)
                    return j.text
                })
                print(o.text)
            } else if v.isClean {
                print("ok: \(v.segments) segments, \(v.frames) frames, \(v.records) records, LSN \(v.firstLSN.map { "\($0)" } ?? "-") … \(v.lastLSN.map { "\($0)" } ?? "-")")
            } else {
                for p in v.problems { printError(p.message) }
                print("damaged: \(v.problems.count) problem(s); \(v.records) records readable")
            }
        }
        if !clean { throw ExitCode(1) }
    }
}

