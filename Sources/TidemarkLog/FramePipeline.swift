/// One frame to decode: its validated metadata and where its data lies.
/// Produced in log order by the cursor's sequential scan (which checks the
/// metadata chain); decoded by any worker.
struct FrameTask: @unchecked Sendable {
    // @unchecked: `file` is only used for pread(2), which is thread-safe,
    // and the task is immutable.
    var metadata: FrameMetadata
    var file: SystemFile
    var dataOffset: Int
    var segment: SegmentFile
    /// The frame ends at the end of the last segment (damage there is a torn tail).
    var atTail: Bool
}

/// A decoded frame (or why it could not be).
struct DecodedFrame: @unchecked Sendable {
    // @unchecked: immutable after creation and handed over under a lock.
    var metadata: FrameMetadata?
    var segment: SegmentFile?
    var records: Result<[ChangeRecord], LogError>
}

/// Decodes frames ahead of a bulk reader on a second thread, in log order.
///
/// The cursor's thread scans metadata (cheap, sequential, chain-checked) and
/// submits tasks; a worker thread and the cursor's own thread both take tasks
/// from the queue — the cursor decodes the frame it needs itself when no
/// worker has started it — so two cores decompress and decode. Results are
/// handed out strictly in submission order. At most `windowMax` frames are in
/// flight, bounding memory.
final class FramePipeline: @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `lock`.
    static let windowMax = 4

    private let lock = ConditionLock()
    private var queue: [(Int, FrameTask)] = []
    private var results: [Int: DecodedFrame] = [:]
    private var closed = false
    private var nextSubmit = 0
    private var nextTake = 0
    let from: LSN
    let tables: Set<String>?
    private var consumerDecoder: FrameWorker

    init(from: LSN, tables: Set<String>?) throws(LogError) {
        self.from = from
        self.tables = tables
        consumerDecoder = try FrameWorker(from: from, tables: tables)
        let worker = try FrameWorker(from: from, tables: tables)
        spawnThread { [self] in self.work(worker) }
    }

    /// Frames submitted and not yet taken.
    var inFlight: Int { lock.withLock { nextSubmit - nextTake } }

    func submit(_ task: FrameTask) {
        lock.withLock {
            queue.append((nextSubmit, task))
            nextSubmit += 1
            lock.broadcast()
        }
    }

    /// Submits an error that must surface after the frames before it.
    func submit(failure: LogError) {
        lock.withLock {
            results[nextSubmit] = DecodedFrame(metadata: nil, segment: nil, records: .failure(failure))
            nextSubmit += 1
            lock.broadcast()
        }
    }

    /// The next frame in order. While it is not ready, the calling thread
    /// decodes whatever frame is queued (so both threads stay busy) and only
    /// waits when nothing is left to take.
    func take() -> DecodedFrame? {
        lock.lock()
        let seq = nextTake
        guard seq < nextSubmit else { lock.unlock(); return nil }
        while results[seq] == nil {
            if !queue.isEmpty {
                let (taken, task) = queue.removeFirst()
                lock.unlock()
                let decoded = consumerDecoder.decode(task)
                lock.lock()
                results[taken] = decoded
                lock.broadcast()
            } else {
                lock.wait()
            }
        }
        let r = results.removeValue(forKey: seq)!
        nextTake += 1
        lock.unlock()
        return r
    }

    func close() {
        lock.withLock {
            closed = true
            lock.broadcast()
        }
    }

    private func work(_ worker: FrameWorker) {
        var worker = worker
        while true {
            lock.lock()
            while queue.isEmpty && !closed { lock.wait() }
            if closed { lock.unlock(); return }
            let (seq, task) = queue.removeFirst()
            lock.unlock()
            let decoded = worker.decode(task)
            lock.withLock {
                results[seq] = decoded
                lock.broadcast()
            }
        }
    }
}

/// Per-thread decoding state: a zstd context, buffers and a name cache.
struct FrameWorker: @unchecked Sendable {
    // @unchecked: each worker is owned by exactly one thread (moved into the
    // worker thread, or kept by the consumer); its zstd context is never shared.
    let from: LSN
    let tables: Set<String>?
    var decoder: FrameDecoder
    var data: [UInt8] = []
    var names = NameCache()

    init(from: LSN, tables: Set<String>?) throws(LogError) {
        self.from = from
        self.tables = tables
        decoder = try FrameDecoder()
    }

    /// Reads, checks (CRC, zstd checksum, record LSNs) and decodes one frame,
    /// keeping the records at or above `from` of the wanted tables.
    mutating func decode(_ task: FrameTask) -> DecodedFrame {
        let m = task.metadata
        func fail(_ why: String) -> DecodedFrame {
            let error: LogError
            if task.atTail {
                error = LogError(.tornTail, "the log ends with a torn frame (LSN \(m.firstLSN)…\(m.lastLSN)) in segment \(task.segment.name): \(why); the next appender will cut it off",
                                 segment: task.segment.name, lsnRange: m.lsnRange)
            } else {
                error = LogError(.corruptFrame, "corrupt log: segment \(task.segment.name), LSN \(m.firstLSN) to LSN \(m.lastLSN): \(why)",
                                 segment: task.segment.name, lsnRange: m.lsnRange)
            }
            return DecodedFrame(metadata: m, segment: task.segment, records: .failure(error))
        }
        let count = Int(m.dataSize)
        do {
            let n = try task.file.read(at: task.dataOffset, count: count, into: &data)
            guard n == count else { return fail("data frame is incomplete") }
        } catch {
            return DecodedFrame(metadata: m, segment: task.segment, records: .failure(error))
        }
        let crc = data.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        guard crc == m.dataChecksum else { return fail("data checksum mismatch") }
        if let why = decoder.decompress(data, metadata: m) { return fail("zstd: \(why)") }
        let from = self.from, tables = self.tables
        var names = self.names
        defer { self.names = names }
        let result = decoder.content.withUnsafeBytes { raw -> Result<[ChangeRecord], DecodeFailure> in
            do throws(DecodeFailure) {
                var out: [ChangeRecord] = []
                out.reserveCapacity(Int(m.recordCount))
                var reader = ByteReader(raw)
                var previous = LSN.zero
                for i in 0..<Int(m.recordCount) {
                    let (header, flags) = try RecordEncoding.decodeHeader(&reader)
                    guard header.lsn > previous, header.lsn >= m.firstLSN, header.lsn <= m.lastLSN, header.end <= raw.count else {
                        throw DecodeFailure(what: "record LSN \(header.lsn) out of order or outside the frame")
                    }
                    if i == 0 && header.lsn != m.firstLSN {
                        throw DecodeFailure(what: "first record LSN \(header.lsn) differs from the frame's \(m.firstLSN)")
                    }
                    previous = header.lsn
                    var keep = header.lsn >= from
                    if keep, let tables {
                        var r = reader
                        keep = tables.contains(try RecordEncoding.decodeTable(&r))
                    }
                    if keep {
                        out.append(try RecordEncoding.decode(after: header, flags: flags, &reader, names: &names))
                    }
                    reader.offset = header.end
                }
                guard reader.offset == raw.count, previous == m.lastLSN else {
                    throw DecodeFailure(what: "frame content does not end with its last record")
                }
                return .success(out)
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(let records): return DecodedFrame(metadata: m, segment: task.segment, records: .success(records))
        case .failure(let f): return fail("record decoding failed: \(f.what)")
        }
    }
}
