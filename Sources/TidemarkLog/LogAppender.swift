#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// When an append is durable.
public enum Durability: Sendable, Equatable, CustomStringConvertible {
    /// `fdatasync` before `append` returns; concurrent appenders share one
    /// sync (group commit).
    case commit
    /// Written before `append` returns; synced by a background thread at
    /// least every `milliseconds`.
    case interval(milliseconds: Int)
    /// Never synced (tests, benchmarks, scratch logs). The OS flushes eventually.
    case none

    public var description: String {
        switch self {
        case .commit: "commit"
        case .interval(let ms): "interval(\(ms)ms)"
        case .none: "none"
        }
    }

    /// Parses `commit`, `none`, `interval:50` or `50ms`.
    public init?(parsing text: String) {
        switch text {
        case "commit": self = .commit
        case "none": self = .none
        default:
            var t = Substring(text)
            if t.hasPrefix("interval:") { t = t.dropFirst("interval:".count) }
            if t.hasSuffix("ms") { t = t.dropLast(2) }
            guard let ms = Int(t), ms > 0 else { return nil }
            self = .interval(milliseconds: ms)
        }
    }
}

/// Tunables of an appender.
public struct LogOptions: Sendable {
    public var durability: Durability = .commit
    /// A segment is closed and a new one started once it reaches this size.
    public var segmentSizeLimitBytes: Int = 64 << 20
    /// Records are cut into frames of at most about this many uncompressed
    /// bytes; a reader decompresses one frame to reach any LSN inside it.
    public var frameSizeLimitBytes: Int = 1 << 20
    /// zstd level (1...19); 3 is zstd's default.
    public var compressionLevel: Int32 = 3

    public init(durability: Durability = .commit, segmentSizeLimitBytes: Int = 64 << 20,
                frameSizeLimitBytes: Int = 1 << 20, compressionLevel: Int32 = 3) {
        self.durability = durability
        self.segmentSizeLimitBytes = segmentSizeLimitBytes
        self.frameSizeLimitBytes = frameSizeLimitBytes
        self.compressionLevel = compressionLevel
    }
}

/// What open-for-append found and repaired at the tail of the log.
public struct RecoveryReport: Sendable, CustomStringConvertible {
    public var segment: String
    /// Offset the segment was truncated to.
    public var offset: Int
    public var bytesCut: Int
    public var reason: String
    /// The last LSN kept.
    public var lastLSN: LSN

    public var description: String {
        "recovered log: cut \(bytesCut) bytes of a torn frame (\(reason)) at offset \(offset) of \(segment); the log ends at LSN \(lastLSN)"
    }
}

/// Counters of an appender, for tests, status and benchmarks.
public struct AppenderStatistics: Sendable {
    public var records = 0
    public var frames = 0
    public var bytesWritten = 0
    public var uncompressedBytes = 0
    public var syncs = 0
    public var segmentsCreated = 0
}

/// The one writer of a log directory.
///
/// Appends are synchronous and may be called from any number of threads.
/// Group commit: callers hand their records to a shared pending batch under a
/// lock; the first caller that finds no flush in progress becomes the leader,
/// takes the whole batch, encodes, compresses, writes and (for `.commit`)
/// syncs it outside the lock, then publishes the new durable LSN and wakes the
/// others. Callers that arrived meanwhile are covered by the next leader's
/// single sync, so n concurrent appenders cost far fewer than n fsyncs.
///
/// Invariant: `durableLSN <= writtenLSN <= assignedLSN`; records are written
/// in the order their LSNs were assigned; a record is visible to readers only
/// as part of a complete, checksummed frame.
public final class LogAppender: @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `lock`, except the segment
    // file, encoder buffers and compressor, which only the current leader
    // (flushing == true, set under the lock) touches.
    public let directory: LogDirectory
    public let sourceID: SourceID
    public let options: LogOptions
    /// What recovery did when the log was opened, if anything.
    public let recovery: RecoveryReport?

    private let lock = ConditionLock()
    private let appendLock: AppendLock
    // Guarded by `lock`:
    private var pending: [ChangeRecord] = []
    private var assignedLSN: LSN
    private var writtenLSN: LSN
    private var durableLSN: LSN
    private var flushing = false
    private var failure: LogError?
    private var closed = false
    private var stats = AppenderStatistics()
    private var storedMeta: LogMeta
    /// The current segment (the leader's `segment`, mirrored for syncers),
    /// the bytes written to it, and the bytes of it known durable. Every
    /// frame records `syncedSize` (its metadata's synced length), which is
    /// what lets recovery tell a torn unsynced burst from damaged durable data.
    private var liveFile: SystemFile?
    private var writtenSize = 0
    private var syncedSize = 0
    // Leader-only:
    private var segment: SystemFile?
    private var segmentSize = 0
    private var chain: UInt64
    private let compressor: Compressor
    private var content: [UInt8] = []
    private var frameBytes: [UInt8] = []
    // Interval syncer:

    /// Opens (creating if needed) the log in `path` for appending.
    ///
    /// - Parameters:
    ///   - sourceID: the source this log belongs to. A new log takes it (or a
    ///     random id when nil); an existing log with another id is refused.
    /// - Throws: `.locked` if another appender holds the log, `.foreignSource`,
    ///   `.corruptFrame` when damage is found before the tail, `.io`.
    /// - Recovery: a torn or corrupt *last* frame is cut off (reported in
    ///   ``recovery``); everything before it is kept.
    public init(directory path: String, sourceID: SourceID? = nil, options: LogOptions = LogOptions()) throws(LogError) {
        let dir = LogDirectory(path)
        self.directory = dir
        self.options = options
        if dir.exists {
            let existing = try dir.sourceID()
            if let sourceID, sourceID != existing {
                throw LogError(.foreignSource, "the log \(dir.path) belongs to source \(existing), not \(sourceID); use that source or a new log directory")
            }
            self.sourceID = existing
        } else {
            let id = sourceID ?? SourceID.random()
            try dir.create(source: id)
            self.sourceID = id
        }
        appendLock = try AppendLock(directory: dir)
        // Read under the append lock: claims change it only under the lock.
        storedMeta = try dir.meta()
        compressor = try Compressor(level: options.compressionLevel)

        let recovered = try Self.recover(dir, source: self.sourceID)
        recovery = recovered.report
        chain = recovered.chain
        // LSNs in a gap recorded by repair are never used again.
        let end = max(recovered.lastLSN, storedMeta.gaps.map(\.upperBound).max() ?? .zero)
        assignedLSN = end
        writtenLSN = end
        durableLSN = end
        if let last = recovered.segment, recovered.segmentVersion == SegmentHeader.formatVersion {
            let file = try SystemFile.openForWriting(last.path, create: false)
            segment = file
            segmentSize = recovered.segmentSize
            liveFile = file
            writtenSize = recovered.segmentSize
            // Recovery synced what it kept.
            syncedSize = recovered.segmentSize
        }
        // An older-format (1 or 2) last segment is left as it is: the first
        // append starts a new segment in the current format, so no segment
        // mixes frame formats (readers take each segment's format from its
        // header; old segments read, just without frame skipping). Rewriting
        // the old segment instead would put sealed, durable bytes at risk for
        // no gain. One without frames would share the new one's name: it goes.
        if let last = recovered.segment, recovered.segmentVersion != SegmentHeader.formatVersion,
           recovered.segmentSize <= SegmentHeader.encodedSize {
            try FileSystem.remove(last.path)
            try FileSystem.syncDirectory(dir.path)
        }
        if case .interval(let ms) = options.durability {
            startSyncThread(milliseconds: ms)
        }
    }

    deinit {
        try? close()
    }

    /// The log's metadata (writer kind, owner, gaps) as of open and the
    /// claims made through this appender since.
    public var meta: LogMeta { lock.withLock { storedMeta } }

    /// Makes `writer` the log's writer kind (and `installation` its owner,
    /// for capture), durably, before anything is appended by that writer.
    ///
    /// Invariant: a log has one writer kind for its whole life. A
    /// capture log's LSNs are its source's outbox `seq`s, so another kind of
    /// writer would take LSNs the outbox hands out next, and capture would
    /// then drop or wedge on those changes. Which capture installation may
    /// take over a capture log is the shipper's rule (it knows the
    /// installation's first `seq`); this records its decision.
    ///
    /// - Throws: `.wrongWriter` when the log has the other kind; `.io`.
    public func claim(_ writer: LogMeta.Writer, installation: String? = nil) throws(LogError) {
        try lock.withLock { () throws(LogError) in
            var meta = storedMeta
            if let existing = meta.writer, existing != writer {
                switch existing {
                case .capture:
                    throw LogError(.wrongWriter, "the log \(directory.path) is written by capture of source \(sourceID): its LSNs are the source's change sequence, and appended records would take LSNs capture hands out next; append into a log of your own (a new directory)")
                case .append:
                    throw LogError(.wrongWriter, "the log \(directory.path) was made by `tidemark log append`; capture cannot ship into it (its LSNs would collide with the appended ones); ship capture into a new log directory")
                }
            }
            meta.writer = writer
            if writer == .capture, let installation { meta.installationID = installation }
            guard meta != storedMeta || storedMeta.format != LogMeta.currentFormat else { return }
            meta.format = LogMeta.currentFormat
            try directory.writeMeta(meta)
            storedMeta = meta
        }
    }

    /// Records `range` as lost (its frames were quarantined by repair), durably.
    func recordGap(_ range: ClosedRange<LSN>) throws(LogError) {
        try lock.withLock { () throws(LogError) in
            var meta = storedMeta
            guard !meta.gaps.contains(range) else { return }
            meta.gaps.append(range)
            meta.gaps.sort { $0.lowerBound < $1.lowerBound }
            meta.format = LogMeta.currentFormat
            try directory.writeMeta(meta)
            storedMeta = meta
        }
    }

    /// LSN of the last record handed to the appender.
    public var lastLSN: LSN { lock.withLock { assignedLSN } }
    /// LSN up to which records are durable under the durability policy.
    public var durableLSNValue: LSN { lock.withLock { durableLSN } }
    public var statistics: AppenderStatistics { lock.withLock { stats } }

    /// Appends records whose LSNs the caller chose (e.g. a source's commit
    /// sequence). LSNs must be at least 1, strictly increasing, and above
    /// ``lastLSN``.
    ///
    /// Returns once the records are written and, for `.commit`, synced.
    /// Either every record of the call is appended or (on a thrown error) the
    /// appender stops accepting appends; reopen to recover.
    @discardableResult
    public func append(_ records: [ChangeRecord]) throws(LogError) -> LSN {
        guard !records.isEmpty else { return lastLSN }
        for r in records { try r.validate() }
        lock.lock()
        var previous = assignedLSN
        for r in records {
            guard r.lsn > previous else {
                lock.unlock()
                throw LogError(.lsnOrder, "LSN \(r.lsn) is not above the log's last LSN \(previous); LSNs must strictly increase", lsnRange: r.lsn...r.lsn)
            }
            previous = r.lsn
        }
        return try enqueueAndWait(records, last: previous)
    }

    /// Appends records, assigning consecutive LSNs after ``lastLSN`` (the
    /// records' own `lsn` is ignored). Returns the assigned range.
    ///
    /// - Throws: `.lsnOrder` when fewer than `records.count` LSNs are left
    ///   below 2^64.
    @discardableResult
    public func append(assigningLSNs records: [ChangeRecord]) throws(LogError) -> ClosedRange<LSN> {
        guard !records.isEmpty else { return lastLSN...lastLSN }
        for r in records { try r.validate() }
        lock.lock()
        guard UInt64.max - assignedLSN.rawValue >= UInt64(records.count) else {
            let last = assignedLSN
            lock.unlock()
            throw LogError(.lsnOrder, "cannot assign \(records.count) LSNs after LSN \(last): LSNs end at \(UInt64.max)")
        }
        var batch = records
        let first = assignedLSN.next
        for i in batch.indices { batch[i].lsn = LSN(first.rawValue + UInt64(i)) }
        let last = batch[batch.count - 1].lsn
        _ = try enqueueAndWait(batch, last: last)
        return first...last
    }

    /// Called with `lock` held; returns with it released.
    private func enqueueAndWait(_ records: [ChangeRecord], last: LSN) throws(LogError) -> LSN {
        if let failure { lock.unlock(); throw failure }
        if closed { lock.unlock(); throw LogError(.io, "the appender for \(directory.path) is closed") }
        if pending.isEmpty {
            // The common case, no other appender waiting: the caller's array
            // becomes the batch as is, instead of a copy of every record.
            pending = records
        } else {
            pending.append(contentsOf: records)
        }
        assignedLSN = last
        let mustSync = options.durability == .commit
        while (mustSync ? durableLSN : writtenLSN) < last {
            if let failure { lock.unlock(); throw failure }
            if flushing {
                lock.wait()
                continue
            }
            // Become the leader for everything pending.
            flushing = true
            // Hand the batch over without copying it or allocating a new
            // buffer for `pending`.
            var batch: [ChangeRecord] = []
            swap(&batch, &pending)
            lock.unlock()
            var outcome: Result<(frames: Int, bytes: Int, raw: Int, rotated: Int), LogError>
            do {
                let r = try writeFrames(batch)
                if mustSync { try segment?.sync() }
                outcome = .success(r)
            } catch {
                outcome = .failure(error)
            }
            let sizeAfter = segmentSize
            lock.lock()
            flushing = false
            switch outcome {
            case .success(let r):
                writtenSize = sizeAfter
                if mustSync { syncedSize = sizeAfter }
                writtenLSN = batch.last!.lsn
                if mustSync || options.durability == .none { durableLSN = writtenLSN }
                stats.records += batch.count
                stats.frames += r.frames
                stats.bytesWritten += r.bytes
                stats.uncompressedBytes += r.raw
                stats.segmentsCreated += r.rotated
                if mustSync { stats.syncs += 1 }
            case .failure(let e):
                // Nothing after writtenLSN is trusted any more; the next open
                // recovers the tail.
                failure = LogError(e.code, "log append failed and the appender stopped: \(e.message); reopen the log to recover")
            }
            lock.broadcast()
        }
        lock.unlock()
        return last
    }

    /// Leader only: encodes `batch` into frames and writes them.
    private func writeFrames(_ batch: [ChangeRecord]) throws(LogError) -> (frames: Int, bytes: Int, raw: Int, rotated: Int) {
        var frames = 0, bytes = 0, raw = 0, rotated = 0
        var start = 0
        while start < batch.count {
            // `content` and `frameBytes` are reused and only ever grow; the
            // bytes in use are content[0..<used] and frameBytes[0..<frameSize].
            var used = 0
            var end = start
            var minTS = Int64.max, maxTS = Int64.min
            while end < batch.count && (end == start || used < options.frameSizeLimitBytes) {
                let r = batch[end]
                used = RecordEncoding.encode(r, into: &content, at: used)
                minTS = min(minTS, r.timestampMicros)
                maxTS = max(maxTS, r.timestampMicros)
                end += 1
            }
            guard used <= Int(UInt32.max) else {
                throw LogError(.invalidRecord, "a record at LSN \(batch[start].lsn) is larger than 4 GiB")
            }
            let firstLSN = batch[start].lsn
            if segment == nil || segmentSize >= options.segmentSizeLimitBytes {
                try rotate(to: firstLSN)
                rotated += 1
            }
            // The frame's tables and key filter (format 3 metadata); its
            // size fixes where the data frame starts.
            let summary = FrameSummary.of(batch[start..<end])
            let metaSize = FrameMetadata.encodedSize + summary.encodedSize
            if frameBytes.count < metaSize {
                frameBytes.growZeroed(to: metaSize)
            }
            let dataSize = try compressor.compress(content, count: used, into: &frameBytes, at: metaSize)
            let frameSize = metaSize + dataSize
            let dataCRC = frameBytes.withUnsafeBytes {
                CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[metaSize..<frameSize]))
            }
            var m = FrameMetadata(
                firstLSN: firstLSN, lastLSN: batch[end - 1].lsn,
                firstTimestampMicros: minTS, lastTimestampMicros: maxTS,
                recordCount: UInt32(end - start), contentSize: UInt32(used),
                dataSize: UInt32(dataSize), dataChecksum: dataCRC, previousChain: chain,
                syncedLength: UInt64(lock.withLock { syncedSize }), summary: summary)
            var meta = [UInt8]()
            meta.reserveCapacity(metaSize)
            m.encode(into: &meta)
            assert(meta.count == metaSize && m.metadataSize == metaSize)
            frameBytes.replaceSubrange(0..<metaSize, with: meta)
            // One write per frame: a crash leaves at most one torn frame at
            // the tail, which the next open cuts off.
            do {
                try segment!.write(frameBytes, count: frameSize, at: segmentSize)
            } catch {
                // Best effort: drop a partial frame so readers never see it.
                try? segment!.truncate(to: segmentSize)
                throw error
            }
            segmentSize += frameSize
            chain = m.chain
            frames += 1
            bytes += frameSize
            raw += used
            start = end
        }
        return (frames, bytes, raw, rotated)
    }

    /// Leader only: seals the current segment and starts one named `lsn`.
    private func rotate(to lsn: LSN) throws(LogError) {
        if let current = segment {
            // The sealed segment must be durable before a later one exists:
            // recovery only repairs the last segment.
            try current.sync()
        }
        let file = SegmentFile(baseLSN: lsn, path: directory.path + "/" + SegmentFile.name(for: lsn))
        let new = try SystemFile.openForWriting(file.path, create: true, exclusive: true)
        var header = [UInt8]()
        SegmentHeader(baseLSN: lsn, previousChain: chain, sourceID: sourceID).encode(into: &header)
        try new.write(header, at: 0)
        try new.sync()
        try FileSystem.syncDirectory(directory.path)
        segment = new
        segmentSize = header.count
        lock.withLock {
            liveFile = new
            writtenSize = header.count
            syncedSize = header.count
        }
    }

    /// Syncs everything written so far.
    public func sync() throws(LogError) {
        lock.lock()
        let target = writtenLSN
        let file = liveFile
        let size = writtenSize
        lock.unlock()
        try file?.sync()
        lock.withLock {
            if durableLSN < target { durableLSN = target }
            if file != nil && file === liveFile && syncedSize < size { syncedSize = size }
            stats.syncs += 1
        }
    }

    /// Syncs and releases the log (and its lock). Idempotent.
    public func close() throws(LogError) {
        let wasClosed = lock.withLock { () -> Bool in
            let was = closed
            closed = true
            // Let an in-flight leader finish before the file goes away.
            while flushing { lock.wait() }
            lock.broadcast()
            return was
        }
        if wasClosed { return }
        defer {
            segment = nil
            lock.withLock { liveFile = nil }
            appendLock.release()
        }
        if failure == nil && options.durability != .none { try sync() }
    }

    private func startSyncThread(milliseconds: Int) {
        spawnThread { [weak self] in
            while true {
                Clock.sleep(milliseconds: milliseconds)
                guard let self else { return }
                let (stop, target, file, size) = self.lock.withLock { (self.closed, self.writtenLSN, self.liveFile, self.writtenSize) }
                if stop { return }
                guard target > self.lock.withLock({ self.durableLSN }) else { continue }
                // A rotation syncs the sealed segment itself, so syncing the
                // current one covers everything up to `target`.
                do {
                    try file?.sync()
                    self.lock.withLock {
                        if self.durableLSN < target { self.durableLSN = target }
                        if file != nil && file === self.liveFile && self.syncedSize < size { self.syncedSize = size }
                        self.stats.syncs += 1
                    }
                } catch {
                    self.lock.withLock {
                        self.failure = error as? LogError ?? LogError(.io, "\(error)")
                        self.lock.broadcast()
                    }
                    return
                }
            }
        }
    }

    // MARK: Recovery

    struct Recovered {
        var lastLSN: LSN
        var chain: UInt64
        var segment: SegmentFile?
        var segmentSize: Int
        var segmentVersion: UInt16 = SegmentHeader.formatVersion
        var report: RecoveryReport?
    }

    /// Finds the end of the log and cuts a torn tail.
    ///
    /// What can be torn: a frame is one write, but a batch is several frames
    /// written one after the other and synced once; a crash stops the writes
    /// anywhere, and a power cut may keep any subset of the pages written
    /// since the last sync (a later frame's pages, not an earlier one's).
    /// Sealed segments were synced before the next segment existed, so only
    /// the last segment can be torn.
    ///
    /// A frame of the last segment is kept if and only if:
    /// 1. its metadata is valid and links to the frame before it (chain,
    ///    LSN order, format of its segment);
    /// 2. its data frame is complete and its CRC matches; and
    /// 3. every frame before it in the segment is kept.
    ///
    /// The first frame that fails (at offset X) is cut with everything after
    /// it if and only if no valid frame metadata after X proves X durable:
    /// each format 2 frame records the segment's synced length when it was
    /// written, so a later frame with a synced length > X means the bytes at X
    /// had been fsynced, and damage there is corruption of durable data — it
    /// is reported (`.corruptFrame`, naming segment and LSN), never cut; a
    /// format 1 frame after the damage cannot say, and is taken as proof.
    /// Frames after X that do not prove it were written after the last sync
    /// they knew of: the torn write burst, whose changes were never reported
    /// durable, so cutting them loses nothing acknowledged.
    ///
    /// Known limit: damage inside the last burst *after* its sync completed
    /// (no later frame records that sync) looks the same as a torn burst and
    /// is cut; the cut is reported in ``RecoveryReport``.
    ///
    /// Whatever is kept is fsynced (file and directory) before the appender
    /// reports it durable.
    static func recover(_ dir: LogDirectory, source: SourceID) throws(LogError) -> Recovered {
        var segments = try dir.segments()
        var report: RecoveryReport?
        while let last = segments.last {
            let file = try SystemFile.openForWriting(last.path, create: false)
            switch try SegmentScanner.open(last, file: file) {
            case .incompleteHeader:
                // Crashed while creating this segment: no frame was in it.
                try FileSystem.remove(last.path)
                try FileSystem.syncDirectory(dir.path)
                report = RecoveryReport(segment: last.name, offset: 0, bytesCut: (try? file.size()) ?? 0,
                                        reason: "incomplete segment header", lastLSN: LSN(last.baseLSN.rawValue - 1))
                segments.removeLast()
                continue
            case .badHeader(let why):
                throw LogError(.corruptFrame, "segment \(last.name) in \(dir.path) has a bad header (\(why)); it cannot be repaired automatically", segment: last.name)
            case .ok(var scanner):
                guard scanner.header.sourceID == source else {
                    throw LogError(.foreignSource, "segment \(last.name) belongs to source \(scanner.header.sourceID), not \(source); remove it from \(dir.path)", segment: last.name)
                }
                let size = try file.size()
                var data = [UInt8]()
                scan: while true {
                    let step = try scanner.peek(fileSize: size)
                    var damage: String
                    switch step {
                    case .end:
                        break scan
                    case .frame(let m):
                        if let why = try scanner.loadData(m, into: &data) {
                            damage = why
                        } else {
                            scanner.advance(past: m)
                            continue scan
                        }
                    case .incomplete:
                        damage = "incomplete frame"
                    case .corrupt(let why):
                        damage = why
                    }
                    let later = try scanner.framesAfter(damageAt: scanner.offset, fileSize: size)
                    if later.proveDamageDurable {
                        throw LogError(
                            .corruptFrame,
                            "corrupt frame in \(last.name) at offset \(scanner.offset) after LSN \(scanner.lastLSN) (\(damage)), in data that was durable; quarantine it with `tidemark log repair --log \(dir.path)`",
                            segment: last.name, lsnRange: scanner.lastLSN.next...scanner.lastLSN.next)
                    }
                    if later.exist { damage += "; later frames of the same unsynced write burst cut too" }
                    try file.truncate(to: scanner.offset)
                    try file.sync()
                    report = RecoveryReport(segment: last.name, offset: scanner.offset, bytesCut: size - scanner.offset,
                                            reason: damage, lastLSN: scanner.lastLSN)
                    break scan
                }
                if scanner.offset == SegmentHeader.encodedSize && segments.count > 1 {
                    // A segment with no frames: drop it and continue from the previous one.
                    try FileSystem.remove(last.path)
                    try FileSystem.syncDirectory(dir.path)
                    segments.removeLast()
                    continue
                }
                // What recovery keeps becomes durable before it is reported:
                // the tail may sit only in the page cache (the previous
                // process crashed before its sync), and callers act on the
                // durable LSN (the shipper deletes outbox rows up to it).
                // Sealed segments were synced before a later one existed.
                try file.sync()
                try FileSystem.syncDirectory(dir.path)
                return Recovered(lastLSN: scanner.lastLSN, chain: scanner.chain, segment: last,
                                 segmentSize: scanner.offset, segmentVersion: scanner.header.version, report: report)
            }
        }
        return Recovered(lastLSN: .zero, chain: SegmentHeader.seedChain(for: source), segment: nil, segmentSize: 0, report: report)
    }
}
