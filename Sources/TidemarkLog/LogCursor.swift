import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Reads a log directory.
///
/// Any number of readers may run beside the one appender, in any process.
public struct LogReader: Sendable {
    public let directory: LogDirectory
    public let sourceID: SourceID

    /// - Throws: `.notALog` when `path` is not a Tidemark log.
    public init(directory path: String) throws(LogError) {
        directory = LogDirectory(path)
        sourceID = try directory.sourceID()
    }

    /// A cursor over the records with LSN >= `from`, in LSN order.
    ///
    /// - Parameters:
    ///   - follow: at the end of the log, wait for new records (polling every
    ///     `pollMillis`) instead of returning nil; ``LogCursor/stop()`` ends the wait.
    ///   - tables: only records of these tables (others are skipped undecoded).
    /// - Throws: `.truncated` when `from` lies below what retention kept.
    public func cursor(from: LSN = .zero, follow: Bool = false, tables: Set<String>? = nil, pollMillis: Int = 10) throws(LogError) -> LogCursor {
        let floor = try Retention.deletedBelow(directory)
        if from > .zero && from < floor {
            throw LogError(.truncated, "LSN \(from) is no longer in the log \(directory.path): retention removed everything below LSN \(floor)")
        }
        return try LogCursor(directory: directory, source: sourceID, from: from, follow: follow, tables: tables, pollMillis: pollMillis)
    }

    /// The LSN of the last complete frame's last record, or `.zero` for an
    /// empty log — or the end of a gap recorded after it (LSNs lost to
    /// `log repair`, which are never used again). Reads only frame metadata
    /// of the last segment.
    public func headLSN() throws(LogError) -> LSN {
        let gapEnd = try directory.meta().gaps.map(\.upperBound).max() ?? .zero
        return max(gapEnd, try lastFrameLSN())
    }

    private func lastFrameLSN() throws(LogError) -> LSN {
        let segments = try directory.segments()
        for segment in segments.reversed() {
            guard case .ok(var scanner) = try SegmentScanner.open(segment) else { continue }
            let size = try scanner.file.size()
            while case .frame(let m) = try scanner.peek(fileSize: size) { scanner.advance(past: m) }
            if scanner.offset > SegmentHeader.encodedSize { return scanner.lastLSN }
        }
        return .zero
    }
}

/// An iterator over log records; see ``LogReader/cursor(from:follow:tables:pollMillis:)``.
///
/// Every frame it returns records from has passed all checks listed in
/// FrameMetadata.swift; a damaged frame is an error naming the segment and
/// LSN range, never skipped. An incomplete frame at the very end of the log
/// is treated as not yet written (an appender may be mid-write).
public final class LogCursor: @unchecked Sendable {
    // @unchecked: a cursor is used by one thread at a time; only `stopped`
    // is touched from others, and it is atomic.
    public let directory: LogDirectory
    let source: SourceID
    let from: LSN
    let follow: Bool
    let tables: Set<String>?
    let pollMillis: Int
    private let stopped = Atomic<Bool>(false)

    private var segments: [SegmentFile] = []
    private var index = 0
    private var scanner: SegmentScanner?
    private var decoder: FrameDecoder
    private var names = NameCache()
    private var data: [UInt8] = []
    private var frame: FrameMetadata?
    private var contentOffset = 0
    private var recordsLeft = 0
    private var previousInFrame = LSN.zero
    /// Chain and last LSN of the previous segment, to link the next one.
    private var linkChain: UInt64?
    private var linkLSN = LSN.zero
    private var tornTailRetries = 0
    /// The frame before the current position, when it may match the skip.
    private var previousMatched: FrameMetadata?
    /// True when the last `next()` returned nil at an incomplete frame at the
    /// end of the log (a torn write, or one still in progress).
    public private(set) var endedInsideFrame = false

    /// Called for every frame the cursor enters (statistics).
    var onFrame: ((FrameMetadata, SegmentFile) -> Void)?

    /// Frames whose metadata rules out everything this asks for are passed
    /// over without reading their data (format 3 frames; older ones are
    /// always read). Records of frames that are read are returned as usual:
    /// the caller still applies its own per-record checks. Nil: read all.
    public var skip: FrameSkip?
    /// `log verify`: check each format 3 frame's tables and key filter
    /// against its records (readers only rely on them to skip).
    var checkSummaries = false
    private var frameRecords: [ChangeRecord] = []
    /// Frames passed over by ``skip`` so far (statistics and tests).
    public private(set) var framesSkipped = 0
    /// Frames whose data was read so far.
    public private(set) var framesRead = 0

    /// When true, a damaged frame or segment does not end reading: the rest
    /// of its segment is skipped (reported in ``skipped``) and reading goes
    /// on with the next segment. Off by default: damage is an error.
    public var skipDamaged = false
    /// The damage skipped so far (with ``skipDamaged``), each naming its
    /// segment and the LSN range that could not be read.
    public private(set) var skipped: [LogError] = []
    /// LSN ranges recorded as lost in log.meta (by `log repair`); segments
    /// may not link across them.
    public let recordedGaps: [ClosedRange<LSN>]

    init(directory: LogDirectory, source: SourceID, from: LSN, follow: Bool, tables: Set<String>?, pollMillis: Int) throws(LogError) {
        self.directory = directory
        self.source = source
        self.from = from
        self.follow = follow
        self.tables = tables
        self.pollMillis = max(1, pollMillis)
        decoder = try FrameDecoder()
        recordedGaps = try directory.meta().gaps
        segments = try directory.segments()
        // Start in the last segment whose base LSN is at or below `from`.
        if let i = segments.lastIndex(where: { $0.baseLSN <= from }) { index = i }
    }

    /// Makes a following cursor's `next()` return nil. Thread-safe.
    public func stop() { stopped.store(true, ordering: .relaxed) }
    public var isStopped: Bool { stopped.load(ordering: .relaxed) }

    /// The next record, or nil at the end (or, when following, once stopped).
    public func next() throws(LogError) -> ChangeRecord? {
        while true {
            do {
                return try nextUnchecked()
            } catch where skipDamaged && error.code == .corruptFrame {
                skipDamagedSegment(error)
            }
        }
    }

    private func skipDamagedSegment(_ error: LogError) {
        skipped.append(error)
        // Skip the rest of the damaged segment; the next one is not
        // linked to it (its predecessor's end is unknown).
        scanner = nil
        frame = nil
        recordsLeft = 0
        linkChain = nil
        linkLSN = error.lsnRange?.upperBound ?? linkLSN
        index += 1
        tornTailRetries = 0
    }

    /// The next record read in place, or nil as for ``next()``: the same
    /// records, checks and errors, without copying the record's fields out
    /// of the frame. The view is valid until the next call to `next()` or
    /// `nextView()` (see ``RecordView``). Records read this way are not
    /// checked against a frame's summary (`log verify` reads with `next()`).
    public func nextView() throws(LogError) -> RecordView? {
        while true {
            do {
                return try nextViewUnchecked()
            } catch where skipDamaged && error.code == .corruptFrame {
                skipDamagedSegment(error)
            }
        }
    }

    private func nextViewUnchecked() throws(LogError) -> RecordView? {
        while true {
            if recordsLeft > 0, let m = frame {
                do {
                    if let view = try viewNext(m) { return view }
                } catch {
                    throw corrupt(m.lsnRange, "record decoding failed: \(error.what)")
                }
                continue
            }
            if isStopped { return nil }
            guard try advanceFrame() else { return nil }
        }
    }

    private func nextUnchecked() throws(LogError) -> ChangeRecord? {
        while true {
            if recordsLeft > 0, let m = frame {
                let record: ChangeRecord?
                do {
                    record = try decodeNext(m)
                } catch {
                    throw corrupt(m.lsnRange, "record decoding failed: \(error.what)")
                }
                if checkSummaries {
                    if let record { frameRecords.append(record) }
                    if recordsLeft == 0, let summary = m.summary, frameRecords.count == Int(m.recordCount),
                       FrameSummary.of(frameRecords) != summary {
                        throw corrupt(m.lsnRange, "frame metadata's table list or key filter does not match its records")
                    }
                }
                if let record { return record }
                continue
            }
            if isStopped { return nil }
            guard try advanceFrame() else { return nil }
        }
    }

    /// Checks the header of the record at `contentOffset` against the frame
    /// and moves past the record; returns its header and a reader after the
    /// LSN and time, or nil when the record is below `from` or of a table
    /// not asked for.
    private func nextHeader(_ m: FrameMetadata, _ raw: UnsafeRawBufferPointer) throws(DecodeFailure) -> (RecordEncoding.Header, UInt8, ByteReader)? {
        var reader = ByteReader(raw, offset: contentOffset)
        let (header, flags) = try RecordEncoding.decodeHeader(&reader)
        recordsLeft -= 1
        guard header.lsn > previousInFrame, header.lsn >= m.firstLSN, header.lsn <= m.lastLSN,
              header.end <= raw.count
        else { throw DecodeFailure(what: "record LSN \(header.lsn) out of order or outside the frame") }
        if previousInFrame == .zero && header.lsn != m.firstLSN {
            throw DecodeFailure(what: "first record LSN \(header.lsn) differs from the frame's \(m.firstLSN)")
        }
        previousInFrame = header.lsn
        if recordsLeft == 0 {
            guard header.end == raw.count, header.lsn == m.lastLSN else {
                throw DecodeFailure(what: "frame content does not end with its last record")
            }
        }
        contentOffset = header.end
        if header.lsn < from { return nil }
        if let tables {
            // The name through the cache: no string is built per record.
            var r = reader
            let table = try names.name(&r)
            if !tables.contains(table) { return nil }
        }
        return (header, flags, reader)
    }

    private func decodeNext(_ m: FrameMetadata) throws(DecodeFailure) -> ChangeRecord? {
        let raw = decoder.content
        guard var (header, flags, reader) = try nextHeader(m, raw) else { return nil }
        return try RecordEncoding.decode(after: header, flags: flags, &reader, names: &names)
    }

    private func viewNext(_ m: FrameMetadata) throws(DecodeFailure) -> RecordView? {
        let raw = decoder.content
        guard var (header, flags, reader) = try nextHeader(m, raw) else { return nil }
        let table = try names.name(&reader)
        return try RecordView.make(header: header, flags: flags, table: table, &reader)
    }

    private func rangeAfter(_ lsn: LSN) -> ClosedRange<LSN> {
        let upper = index + 1 < segments.count ? LSN(segments[index + 1].baseLSN.rawValue - 1) : LSN(UInt64.max)
        return lsn.next...max(lsn.next, upper)
    }

    private func corrupt(_ range: ClosedRange<LSN>, _ why: String) -> LogError {
        let name = index < segments.count ? segments[index].name : "?"
        let upper = range.upperBound.rawValue == UInt64.max ? "end of log" : "LSN \(range.upperBound)"
        return LogError(.corruptFrame, "corrupt log: segment \(name) in \(directory.path), LSN \(range.lowerBound) to \(upper): \(why); quarantine it with `tidemark log repair --log \(directory.path)`, or read past it with --skip-damaged",
                        segment: name, lsnRange: range)
    }

    /// Positions the scanner at the next frame that may hold records >=
    /// `from` (metadata checked, not yet consumed). Returns nil at the end of
    /// the log (or when a follower is stopped).
    private func scanToNextFrame() throws(LogError) -> (FrameMetadata, isLast: Bool, size: Int)? {
        while true {
            if isStopped { return nil }
            if scanner == nil {
                guard try openSegment() else {
                    if follow { try waitForGrowth(); continue }
                    return nil
                }
            }
            let isLast = index == segments.count - 1
            let size = try scanner!.file.size()
            switch try scanner!.peek(fileSize: size) {
            case .frame(let m):
                if m.lastLSN < from {
                    scanner!.advance(past: m)
                    continue
                }
                if let skip {
                    // Nothing after the window is wanted: end here.
                    if !follow, let through = skip.throughLSN, m.firstLSN > through { return nil }
                    // Sound skipping: the metadata (CRC-checked, chained)
                    // proves no record in the frame passes the caller's checks.
                    let matches = skip.mayMatch(m)
                    let previous = previousMatched
                    previousMatched = matches ? m : nil
                    // A neighbor is read only for a pair that may straddle
                    // its edge with a matching frame (not a chain of them).
                    if !matches && !(skip.withNeighbors && (previous.map { FrameSkip.mayPair($0, m) } == true || nextFramePairs(after: m, skip, size))) {
                        // A skipped frame's data is not read at all: its
                        // metadata (checked: CRC, chain) proves no record in
                        // it can match, so damage there cannot change this
                        // answer. `log verify`, and any reader that needs the
                        // frame, reads and checks it.
                        framesSkipped += 1
                        scanner!.advance(past: m)
                        continue
                    }
                }
                return (m, isLast, size)
            case .end, .incomplete:
                if try moveToNextSegment() { continue }
                if case .incomplete = try scanner!.peek(fileSize: size), !isLast {
                    throw corrupt(rangeAfter(scanner!.lastLSN), "segment ends inside a frame but a later segment exists")
                }
                if follow { try waitForGrowth(); continue }
                if case .incomplete = try scanner!.peek(fileSize: size) { endedInsideFrame = true }
                return nil
            case .corrupt(let why):
                if try tornTail(isLast: isLast, size: size) { continue }
                throw corrupt(rangeAfter(scanner!.lastLSN), why)
            }
        }
    }

    /// With ``FrameSkip/withNeighbors``: whether the frame after `m` in
    /// this segment may match and may pair with `m` (metadata only). At the
    /// end of a segment it answers yes when `m` may end with a delete: the
    /// next segment's first frame is not looked at.
    private func nextFramePairs(after m: FrameMetadata, _ skip: FrameSkip, _ size: Int) -> Bool {
        guard m.summary?.endsWithDelete ?? true else { return false }
        guard var ahead = scanner else { return true }
        ahead.advance(past: m)
        guard case .frame(let next)? = try? ahead.peek(fileSize: size) else { return true }
        return skip.mayMatch(next) && FrameSkip.mayPair(m, next)
    }

    /// Loads the next frame that may hold records >= `from` (sequential
    /// mode). Returns false at the end of the log (or when stopped).
    private func advanceFrame() throws(LogError) -> Bool {
        while true {
            guard let (m, isLast, size) = try scanToNextFrame() else { return false }
            if let why = try scanner!.loadData(m, into: &data) {
                if try tornTail(isLast: isLast, size: size) { continue }
                throw corrupt(m.lsnRange, why)
            }
            if let why = decoder.decompress(data, metadata: m) {
                throw corrupt(m.lsnRange, "zstd: \(why)")
            }
            onFrame?(m, segments[index])
            framesRead += 1
            scanner!.advance(past: m)
            frame = m
            frameRecords.removeAll(keepingCapacity: true)
            contentOffset = 0
            recordsLeft = Int(m.recordCount)
            previousInFrame = .zero
            tornTailRetries = 0
            return true
        }
    }


    /// At damage in the last segment with nothing valid after it: a writer
    /// may be mid-write (retry briefly) or crashed (a torn tail the next
    /// appender cuts). Returns true to retry.
    private func tornTail(isLast: Bool, size: Int) throws(LogError) -> Bool {
        // The same rule as recovery: damage that no later frame proves
        // durable is a torn (or still being written) tail.
        guard isLast, try !scanner!.framesAfter(damageAt: scanner!.offset, fileSize: size).proveDamageDurable else { return false }
        if tornTailRetries < 5 {
            tornTailRetries += 1
            Clock.sleep(milliseconds: 10)
            return true
        }
        if follow {
            // A crashed appender's torn tail: wait for the next appender to cut it.
            try waitForGrowth()
            return true
        }
        let name = segments[index].name
        throw LogError(.tornTail, "the log \(directory.path) ends with a torn frame after LSN \(scanner!.lastLSN) in segment \(name); the next appender will cut it off",
                       segment: name, lsnRange: scanner!.lastLSN.next...scanner!.lastLSN.next)
    }

    private func openSegment() throws(LogError) -> Bool {
        guard index < segments.count else {
            segments = try directory.segments()
            if index >= segments.count { return false }
            return try openSegment()
        }
        let segment = segments[index]
        let result: SegmentScanner.OpenResult
        do {
            result = try SegmentScanner.open(segment)
        } catch where error.code == .io {
            // Removed by retention between listing and opening.
            throw LogError(.truncated, "segment \(segment.name) was removed from \(directory.path) while reading (retention); restart from a later LSN", segment: segment.name)
        }
        switch result {
        case .incompleteHeader:
            // Being created by the appender right now.
            if index == segments.count - 1 { return false }
            throw corrupt(rangeAfter(linkLSN), "segment header is incomplete")
        case .badHeader(let why):
            throw corrupt(rangeAfter(linkLSN), why)
        case .ok(let s):
            guard s.header.sourceID == source else {
                throw LogError(.foreignSource, "segment \(segment.name) belongs to source \(s.header.sourceID), not this log's \(source)", segment: segment.name)
            }
            // A gap recorded by repair explains a break in the chain.
            // (The gap starts after the previous segment's end and reaches
            // this segment's start.)
            let acrossGap = recordedGaps.contains {
                $0.lowerBound > linkLSN && $0.lowerBound <= segment.baseLSN && $0.upperBound.next >= segment.baseLSN
            }
            if let linkChain, !acrossGap {
                guard s.header.previousChain == linkChain, segment.baseLSN > linkLSN else {
                    let error = corrupt(linkLSN.next...max(linkLSN.next, LSN(segment.baseLSN.rawValue &- 1)),
                                        "segment does not follow the previous segment (a segment is missing, reordered or foreign)")
                    // Skipping: what is missing is between the two; read on.
                    guard skipDamaged, segment.baseLSN > linkLSN else { throw error }
                    skipped.append(error)
                    scanner = s
                    return true
                }
            }
            scanner = s
            return true
        }
    }

    /// At the clean end of the current segment: moves on if a later segment
    /// exists. A later segment exists only after this one was sealed, so the
    /// current one is re-checked once for frames written before sealing.
    private func moveToNextSegment() throws(LogError) -> Bool {
        if index + 1 >= segments.count {
            segments = try directory.segments()
            guard index < segments.count, index + 1 < segments.count else { return false }
            return true  // re-peek the current (now sealed) segment first
        }
        let size = try scanner!.file.size()
        if case .frame = try scanner!.peek(fileSize: size) { return true }
        if case .corrupt = try scanner!.peek(fileSize: size) { return true }
        linkChain = scanner!.chain
        linkLSN = scanner!.lastLSN
        scanner = nil
        index += 1
        return true
    }

    private func waitForGrowth() throws(LogError) {
        Clock.sleep(milliseconds: pollMillis)
    }
}
