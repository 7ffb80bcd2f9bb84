/// The last records of a log that pass a reader's checks, as `tail -n`
/// prints them, found without reading the whole log.
public struct LastRecords: Sendable {
    /// At most the count asked for, in LSN order.
    public var records: [ChangeRecord] = []
    /// Damage read past (with `skipDamaged`), each naming its segment and
    /// the LSN range that could not be read.
    public var skipped: [LogError] = []
    /// Frames whose data was read to find them (the cost, for tests).
    public var framesRead = 0
}

extension LogReader {
    /// The last `count` records with LSN in `from...through` that pass
    /// `matches`, in LSN order.
    ///
    /// Frames are read from the end backward in runs that double in length
    /// (1, 2, 4 … frames, their starts found from frame metadata alone), so
    /// a tail whose records lie near the end reads only the last frames.
    /// Each run is read forward by an ordinary cursor with every check a
    /// cursor makes; runs never overlap, so no record is counted twice.
    ///
    /// - Parameters:
    ///   - skip: frames its metadata rules out are not read (its
    ///     `throughLSN` is replaced by each run's end).
    ///   - tables: only records of these tables are decoded.
    ///   - skipDamaged: read past damaged frames as ``LogCursor/skipDamaged``.
    public func lastRecords(_ count: Int, from: LSN, through: LSN, skip: FrameSkip? = nil, tables: Set<String>? = nil,
                            skipDamaged: Bool = false, matches: (ChangeRecord) -> Bool) throws(LogError) -> LastRecords {
        var result = LastRecords()
        guard count > 0, from <= through else { return result }
        let segments = try directory.segments().filter { $0.baseLSN <= through }
        var segmentIndex = segments.count
        // First LSNs of frames not yet read, ascending; all at or below `upper`.
        var starts: [LSN] = []
        // Invariant: every record with LSN above `upper` (up to `through`)
        // has been read, and the matches among them are in `runs`.
        var upper = through
        var runs: [[ChangeRecord]] = []
        var needed = count
        var framesPerRun = 1
        while needed > 0 {
            while starts.count < framesPerRun && segmentIndex > 0 {
                segmentIndex -= 1
                starts = try frameStarts(of: segments[segmentIndex]).filter { $0 <= upper } + starts
            }
            guard !starts.isEmpty else { break }
            let taken = min(framesPerRun, starts.count)
            let runStart = max(from, starts[starts.count - taken])
            starts.removeLast(taken)
            let cursor = try self.cursor(from: runStart, tables: tables)
            cursor.skipDamaged = skipDamaged
            var frameSkip = skip ?? FrameSkip()
            frameSkip.throughLSN = upper
            cursor.skip = frameSkip
            var last = LastRing(capacity: needed)
            while let r = try cursor.next() {
                if r.lsn > upper { break }
                if matches(r) { last.append(r) }
            }
            result.skipped.append(contentsOf: cursor.skipped)
            result.framesRead += cursor.framesRead
            let found = last.inOrder
            runs.append(found)
            needed -= found.count
            if runStart <= from || runStart == .zero { break }
            upper = LSN(runStart.rawValue - 1)
            starts.removeAll { $0 > upper }
            framesPerRun *= 2
        }
        result.records = runs.reversed().flatMap { $0 }
        return result
    }

    /// The first LSN of each frame of `segment` whose metadata is valid, in
    /// order (metadata only; the listing stops at damage or an incomplete
    /// frame, which the cursor reading from there reports). The segment's
    /// base LSN always comes first: its first frame starts there.
    func frameStarts(of segment: SegmentFile) throws(LogError) -> [LSN] {
        var starts = [segment.baseLSN]
        let opened: SegmentScanner.OpenResult
        do {
            opened = try SegmentScanner.open(segment)
        } catch where error.code == .io {
            return starts  // removed by retention since the listing: the cursor says so
        }
        guard case .ok(var scanner) = opened else { return starts }
        let size = try scanner.file.size()
        while case .frame(let m) = try scanner.peek(fileSize: size) {
            if m.firstLSN != segment.baseLSN { starts.append(m.firstLSN) }
            scanner.advance(past: m)
        }
        return starts
    }
}

/// The last `capacity` records appended (a ring: memory stays at `capacity`).
private struct LastRing {
    let capacity: Int
    private var items: [ChangeRecord] = []
    private var next = 0

    init(capacity: Int) { self.capacity = capacity }

    mutating func append(_ r: ChangeRecord) {
        if items.count < capacity {
            items.append(r)
        } else {
            items[next] = r
            next = (next + 1) % capacity
        }
    }

    var inOrder: [ChangeRecord] { Array(items[next...] + items[..<next]) }
}
