/// One problem found by ``LogVerifier``.
public struct LogProblem: Sendable, CustomStringConvertible {
    public var code: LogError.Code
    public var segment: String?
    public var lsnRange: ClosedRange<LSN>?
    public var message: String
    public var description: String { message }
}

/// The result of checking every frame of a log.
public struct LogVerification: Sendable {
    public var segments = 0
    public var frames = 0
    public var records = 0
    public var firstLSN: LSN?
    public var lastLSN: LSN?
    public var problems: [LogProblem] = []
    public var isClean: Bool { problems.isEmpty }
}

/// Checks a whole log: every segment header, every frame's metadata, chain,
/// data checksum, zstd content checksum and record encoding (and, format 3,
/// that the metadata's tables and key filter are its records'), and the links
/// between segments. A damaged segment is reported and the check goes on
/// with the next one, so one run lists every damaged range.
public enum LogVerifier {
    public static func verify(_ directory: LogDirectory) throws(LogError) -> LogVerification {
        let reader = try LogReader(directory: directory.path)
        let segments = try directory.segments()
        var result = LogVerification()
        result.segments = segments.count
        var start = LSN.zero
        while true {
            let cursor = try LogCursor(directory: directory, source: reader.sourceID, from: start, follow: false, tables: nil, pollMillis: 10)
            var frames = 0
            cursor.onFrame = { _, _ in frames += 1 }
            cursor.checkSummaries = true
            do {
                while let r = try cursor.next() {
                    result.records += 1
                    if result.firstLSN == nil { result.firstLSN = r.lsn }
                    result.lastLSN = r.lsn
                }
                result.frames += frames
                if cursor.endedInsideFrame {
                    let name = segments.last?.name
                    let after = result.lastLSN ?? .zero
                    result.problems.append(LogProblem(
                        code: .tornTail, segment: name, lsnRange: after.next...after.next,
                        message: "the log ends with an incomplete frame after LSN \(after) in segment \(name ?? "?") (a torn write; the next appender cuts it off)"))
                }
                return result
            } catch {
                result.frames += frames
                result.problems.append(LogProblem(code: error.code, segment: error.segment, lsnRange: error.lsnRange, message: error.message))
                // Go on with the segment after the damaged one.
                guard let name = error.segment,
                      let i = segments.firstIndex(where: { $0.name == name }),
                      i + 1 < segments.count
                else { return result }
                start = segments[i + 1].baseLSN
            }
        }
    }
}

/// Size and content figures of a log, for `tidemark log stats`.
public struct LogStatistics: Sendable {
    public var segments = 0
    public var frames = 0
    public var records = 0
    public var firstLSN: LSN?
    public var lastLSN: LSN?
    public var firstTimestampMicros: Int64?
    public var lastTimestampMicros: Int64?
    /// Per table, per operation counts.
    public var counts: [String: [ChangeOperation: Int]] = [:]
    public var bytesOnDisk = 0
    public var compressedBytes = 0
    public var uncompressedBytes = 0
    public var consumers: [String: LSN] = [:]
    /// Damage that ended the reading (the figures cover what came before it).
    public var damage: LogError?
    /// Damage read past with `skipDamaged`.
    public var skipped: [LogError] = []
    /// LSN ranges recorded as lost by `log repair`.
    public var gaps: [ClosedRange<LSN>] = []

    /// Uncompressed record bytes per byte of compressed frame data.
    public var compressionRatio: Double {
        compressedBytes == 0 ? 0 : Double(uncompressedBytes) / Double(compressedBytes)
    }

    /// Reads the whole log (every frame is checked on the way). Damage stops
    /// the reading (``damage``) unless `skipDamaged`, which reads past it
    /// (``skipped``); the figures cover what was read either way.
    public static func compute(_ directory: LogDirectory, skipDamaged: Bool = false) throws(LogError) -> LogStatistics {
        let reader = try LogReader(directory: directory.path)
        var s = LogStatistics()
        let segments = try directory.segments()
        s.segments = segments.count
        for seg in segments {
            s.bytesOnDisk += (try? SystemFile.openForReading(seg.path).size()) ?? 0
        }
        s.consumers = try Consumers(directory).all()
        s.gaps = try directory.meta().gaps
        let cursor = try reader.cursor()
        cursor.skipDamaged = skipDamaged
        var frames = 0, compressed = 0, raw = 0
        cursor.onFrame = { m, _ in
            frames += 1
            compressed += Int(m.dataSize)
            raw += Int(m.contentSize)
        }
        while true {
            let next: ChangeRecord?
            do {
                next = try cursor.next()
            } catch where error.code == .corruptFrame || error.code == .tornTail {
                s.damage = error
                break
            }
            guard let r = next else { break }
            s.records += 1
            if s.firstLSN == nil { s.firstLSN = r.lsn }
            s.lastLSN = r.lsn
            s.firstTimestampMicros = min(s.firstTimestampMicros ?? r.timestampMicros, r.timestampMicros)
            s.lastTimestampMicros = max(s.lastTimestampMicros ?? r.timestampMicros, r.timestampMicros)
            s.counts[r.table, default: [:]][r.operation, default: 0] += 1
        }
        s.skipped = cursor.skipped
        s.frames = frames
        s.compressedBytes = compressed
        s.uncompressedBytes = raw
        return s
    }
}

extension LogReader {
    /// Every change of one row, oldest first: records of `table` whose key
    /// (or, for a key change, whose before or after image) matches `key`.
    ///
    /// - Parameter key: fields that must all match the row's key columns.
    public func history(table: String, key: [Field]) throws(LogError) -> [ChangeRecord] {
        let cursor = try cursor(tables: [table])
        var out: [ChangeRecord] = []
        while let r = try cursor.next() {
            if r.matches(key: key) { out.append(r) }
        }
        return out
    }
}

extension ChangeRecord {
    /// Whether every field of `key` equals the record's key column of that
    /// name. A text field also matches an integer or real whose literal form
    /// is that text (keys typed on a command line arrive as text).
    public func matches(key wanted: [Field]) -> Bool {
        guard !wanted.isEmpty else { return false }
        for w in wanted {
            // An unnamed field stands for the only key column, whatever its name.
            let have: Field
            if w.name.isEmpty {
                guard wanted.count == 1, self.key.count == 1 else { return false }
                have = self.key[0]
            } else {
                guard let named = self.key.first(where: { $0.name == w.name }) else { return false }
                have = named
            }
            if have.value == w.value { continue }
            if case .text(let t) = w.value {
                switch have.value {
                case .integer(let i) where String(i) == t: continue
                case .real(let d) where d.description == t || Double(t).map({ $0.bitPattern == d.bitPattern }) == true: continue
                default: return false
                }
            }
            return false
        }
        return true
    }
}
