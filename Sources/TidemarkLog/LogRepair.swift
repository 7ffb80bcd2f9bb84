/// What `tidemark log repair` did (or, with a dry run, would do).
public struct RepairReport: Sendable {
    public struct Action: Sendable {
        /// The damaged segment file.
        public var segment: String
        /// Where the damaged file was moved (inside DIR/quarantine).
        public var quarantinedAs: String
        /// Bytes of valid frames kept in place (0: the whole segment moved).
        public var keptBytes: Int
        /// The LSNs lost with it, recorded as a gap in log.meta.
        public var gap: ClosedRange<LSN>
        public var reason: String
    }

    public var actions: [Action] = []
    public var dryRun: Bool
    /// Every gap the log records after the repair.
    public var gaps: [ClosedRange<LSN>] = []
}

/// Quarantines damaged segments and frames, so readers and the shipper go
/// on past them, and records the LSNs lost as a gap.
///
/// Never deletes: a damaged segment is moved into DIR/quarantine; when
/// frames before the damage are valid, a copy of them takes the segment's
/// place. The order keeps a crash at any step safe: (1) the gap is recorded
/// in log.meta (atomically), (2) the valid prefix is written to a temp file
/// and synced, (3) the damaged file is renamed into quarantine, (4) the
/// prefix is renamed into place, then the directories are synced. Readers
/// accept the chain break at a recorded gap; an appender continues after
/// the gap's end, so no LSN in it is ever used again; a migrator refuses to
/// replay across it unless told to.
///
/// Holds the append lock: refuses while an appender runs.
public enum LogRepair {
    public static func repair(_ directory: LogDirectory, dryRun: Bool) throws(LogError) -> RepairReport {
        _ = try directory.meta()
        let lock = try AppendLock(directory: directory)
        defer { lock.release() }
        var report = RepairReport(dryRun: dryRun)
        let segments = try directory.segments()
        var meta = try directory.meta()
        for (i, segment) in segments.enumerated() {
            let next = i + 1 < segments.count ? segments[i + 1] : nil
            guard let damage = try findDamage(segment, isLast: next == nil) else { continue }
            let lostFrom = damage.lastGood.map { $0.next } ?? segment.baseLSN
            let lostTo: LSN
            if let next {
                lostTo = LSN(next.baseLSN.rawValue - 1)
            } else {
                lostTo = max(lostFrom, damage.laterLast ?? lostFrom)
            }
            guard lostFrom <= lostTo else { continue }
            let gap = lostFrom...lostTo
            let quarantine = directory.path + "/quarantine"
            let moved = quarantine + "/" + segment.name + ".damaged-\(Clock.wallMicros())"
            report.actions.append(RepairReport.Action(
                segment: segment.name, quarantinedAs: String(moved.dropFirst(directory.path.count + 1)),
                keptBytes: damage.keptBytes, gap: gap, reason: damage.reason))
            if !meta.gaps.contains(gap) { meta.gaps.append(gap) }
            if dryRun { continue }
            meta.gaps.sort { $0.lowerBound < $1.lowerBound }
            try directory.writeMeta(meta)
            try FileSystem.makeDirectory(quarantine)
            let temp = segment.path + ".repair"
            if damage.keptBytes > SegmentHeader.encodedSize {
                let source = try SystemFile.openForReading(segment.path)
                var bytes = [UInt8]()
                let n = try source.read(at: 0, count: damage.keptBytes, into: &bytes)
                let out = try SystemFile.openForWriting(temp, create: true)
                try out.truncate(to: 0)
                try out.write(bytes, count: n, at: 0)
                try out.sync()
            }
            try FileSystem.rename(segment.path, to: moved)
            try FileSystem.syncDirectory(quarantine)
            if damage.keptBytes > SegmentHeader.encodedSize {
                try FileSystem.rename(temp, to: segment.path)
            }
            try FileSystem.syncDirectory(directory.path)
        }
        report.gaps = meta.gaps
        return report
    }

    struct Damage {
        var keptBytes: Int
        var lastGood: LSN?
        var laterLast: LSN?
        var reason: String
    }

    /// The first damaged frame of `segment` (metadata, data CRC, zstd and
    /// record decoding checked), or nil when it is intact. An incomplete
    /// last frame of the last segment with nothing proven durable after it is
    /// a torn tail, not damage: the next appender cuts it.
    static func findDamage(_ segment: SegmentFile, isLast: Bool) throws(LogError) -> Damage? {
        switch try SegmentScanner.open(segment) {
        case .incompleteHeader:
            return isLast ? nil : Damage(keptBytes: 0, lastGood: nil, laterLast: nil, reason: "incomplete segment header")
        case .badHeader(let why):
            return Damage(keptBytes: 0, lastGood: nil, laterLast: nil, reason: why)
        case .ok(var scanner):
            let size = try scanner.file.size()
            var decoder = try FrameDecoder()
            var data = [UInt8]()
            var lastGood: LSN? = nil
            while true {
                var why: String
                switch try scanner.peek(fileSize: size) {
                case .end:
                    return nil
                case .frame(let m):
                    if let bad = try scanner.loadData(m, into: &data) {
                        why = bad
                    } else if let bad = decoder.decompress(data, metadata: m) {
                        why = "zstd: \(bad)"
                    } else {
                        scanner.advance(past: m)
                        lastGood = m.lastLSN
                        continue
                    }
                case .incomplete:
                    why = "incomplete frame"
                case .corrupt(let w):
                    why = w
                }
                let later = try scanner.framesAfter(damageAt: scanner.offset, fileSize: size)
                if isLast && !later.proveDamageDurable { return nil }  // a torn tail
                return Damage(keptBytes: scanner.offset > SegmentHeader.encodedSize ? scanner.offset : 0,
                              lastGood: lastGood, laterLast: try lastMetadataLSN(scanner, after: scanner.offset, size: size),
                              reason: why)
            }
        }
    }

    /// The highest last-LSN of any valid frame metadata after `start`.
    static func lastMetadataLSN(_ scanner: SegmentScanner, after start: Int, size: Int) throws(LogError) -> LSN? {
        var best: LSN? = nil
        try scanner.forEachMetadata(after: start, fileSize: size) { m in
            best = max(best ?? m.lastLSN, m.lastLSN)
            return true
        }
        return best
    }
}
