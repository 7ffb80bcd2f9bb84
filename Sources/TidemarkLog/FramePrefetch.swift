#if canImport(Glibc)
import Glibc
#endif

/// An owned copy of one decompressed frame's content. Views rebased onto it
/// (``HeldRecord``) stay valid for as long as it lives, whatever the cursor
/// reads next.
public final class FrameBytes: @unchecked Sendable {
    // @unchecked: written once by the thread that made it, before it is
    // handed over (under the prefetch's lock); read-only afterwards.
    let storage: UnsafeMutableRawBufferPointer

    init(copying content: UnsafeRawBufferPointer) {
        storage = .allocate(byteCount: max(1, content.count), alignment: 16)
        if let from = content.baseAddress, let to = storage.baseAddress, content.count > 0 {
            to.copyMemory(from: from, byteCount: content.count)
        }
        count = content.count
    }

    let count: Int
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(storage)[0..<count]) }

    deinit { storage.deallocate() }
}

/// A record read in place whose bytes are an owned frame copy: the view is
/// valid while `frame` is alive (not only until the cursor reads on).
public struct HeldRecord {
    public let view: RecordView
    public let frame: FrameBytes
}

/// Reads a cursor's records ahead of their consumer: the next frames are
/// decompressed and checked on another thread while the consumer applies
/// the current one.
///
/// Invariants:
/// - Order: records reach ``next()`` in exactly the cursor's order (one
///   producer appends whole frames to a FIFO queue, one consumer takes from
///   its head).
/// - Errors: a cursor error is queued after the records the cursor returned
///   before it, so ``next()`` throws it at the same record as the cursor
///   would, and again on every later call.
/// - The end is never stale: a non-following cursor returns nil at the log's
///   end, and a later call may find records shipped since. An end the
///   consumer takes from the queue may predate what it shipped since, so it
///   is discarded and the producer asked again; only an end read after this
///   call began is returned (nil).
/// - Bounded: at most `framesAhead` frames wait in the queue (plus the one
///   the producer is building and those the consumer still holds).
/// - No thread outlives ``suspend()`` or this object: the thread holds only
///   the shared ``Producer``, and both join it. The cursor and the queue are
///   kept, and the next call starts a new thread where the last one stopped.
public final class RecordPrefetch {
    /// False: no thread; each frame is read when the consumer needs it
    /// (what is already queued first). Turning it off joins the thread: a
    /// consumer that needs each answer at once (a drain under the source's
    /// write lock) reads without a handoff between threads.
    public var threaded: Bool {
        didSet { if !threaded { suspend() } }
    }
    private let producer: Producer
    private var thread: pthread_t?

    private var current: (frame: FrameBytes, views: [RecordView])?
    private var index = 0
    private var stickyError: LogError?

    public var cursor: LogCursor { producer.cursor }

    public init(_ cursor: LogCursor, threaded: Bool = true, framesAhead: Int = 2) {
        self.threaded = threaded
        producer = Producer(cursor, framesAhead: max(1, framesAhead))
    }

    deinit { suspend() }

    /// The next record, or nil at the end of the log (see the invariants).
    public func next() throws(LogError) -> HeldRecord? {
        if let stickyError { throw stickyError }
        while true {
            if let c = current, index < c.views.count {
                index += 1
                return HeldRecord(view: c.views[index - 1], frame: c.frame)
            }
            current = nil
            switch threaded ? take() : takeHere() {
            case .frame(let f, let views):
                current = (f, views)
                index = 0
            case .end:
                return nil
            case .failure(let e):
                stickyError = e
                throw e
            }
        }
    }

    /// Whether a producer thread runs (tests).
    public var isRunning: Bool { thread != nil }

    /// Stops and joins the producer thread, if one runs (idempotent).
    public func suspend() {
        guard let t = thread else { return }
        producer.lock.withLock {
            producer.closing = true
            producer.lock.broadcast()
        }
        pthread_join(t, nil)
        thread = nil
        producer.lock.withLock { producer.closing = false }
    }

    /// Without a thread: what a stopped thread queued, else read here (an
    /// end it queued may be stale, so it is read again).
    private func takeHere() -> Producer.Item {
        let p = producer
        if let queued = p.lock.withLock({ p.pop() }), !Producer.isEnd(queued) { return queued }
        p.lock.withLock { p.parked = false }
        return p.produce()
    }

    /// The next queued item (waiting for it); see the invariants.
    private func take() -> Producer.Item {
        let p = producer
        if thread == nil && !start() {
            // No thread could be started: read on this one.
            return takeHere()
        }
        p.lock.lock()
        defer { p.lock.unlock() }
        var fresh = false
        while true {
            if let item = p.pop() {
                p.lock.broadcast()
                if Producer.isEnd(item) && !fresh {
                    // Read before this call began: ask again.
                    fresh = true
                    p.parked = false
                    continue
                }
                return item
            }
            if p.parked {
                fresh = true
                p.parked = false
                p.lock.broadcast()
            }
            p.lock.wait()
        }
    }

    /// Starts the producer thread; false when none could be started.
    private func start() -> Bool {
        let box = Unmanaged.passRetained(producer).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            guard let arg else { return nil }
            Unmanaged<Producer>.fromOpaque(arg).takeRetainedValue().run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Producer>.fromOpaque(box).release()
            return false
        }
        thread = t
        return true
    }

    /// The producer's side: the cursor and the queue (shared with the
    /// consumer under `lock`).
    final class Producer: @unchecked Sendable {
        // @unchecked: the cursor and the producing state are used by one
        // thread at a time (the producer thread while one runs, which the
        // consumer starts and joins; the consumer otherwise); the queue and
        // flags only under `lock`.
        enum Item {
            case frame(FrameBytes, [RecordView])
            case end
            case failure(LogError)
        }

        let cursor: LogCursor
        let framesAhead: Int
        let lock = ConditionLock()
        var queue: [Item] = []
        var queueHead = 0
        /// The producer queued an end and waits to be asked again.
        var parked = false
        var closing = false

        /// Set by the cursor as it enters a frame.
        private final class Marks {
            var newFrame = false
            var frameLast = LSN.zero
        }
        private let marks = Marks()
        /// An error the cursor raised after records it returned first
        /// (those went out as a batch; this follows them).
        private var pendingError: LogError?
        /// The copy of the frame the cursor is in (a batch ends with its
        /// frame, or earlier at the log's end; its next records reuse it).
        private var producingFrame: FrameBytes?
        /// The first record of the next frame, rebased onto its copy.
        private var carry: HeldRecord?

        init(_ cursor: LogCursor, framesAhead: Int) {
            self.cursor = cursor
            self.framesAhead = framesAhead
            let marks = marks
            cursor.onFrame = { m, _ in
                marks.newFrame = true
                marks.frameLast = m.lastLSN
            }
        }

        static func isEnd(_ item: Item) -> Bool {
            if case .end = item { return true }
            return false
        }

        /// Lock held.
        func pop() -> Item? {
            guard queueHead < queue.count else { return nil }
            let item = queue[queueHead]
            queueHead += 1
            if queueHead == queue.count {
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
            }
            return item
        }

        /// The thread's loop: fill the queue up to `framesAhead`, park after
        /// an end, stop after an error or when closing.
        func run() {
            while true {
                lock.lock()
                while !closing && (parked || queue.count - queueHead >= framesAhead) { lock.wait() }
                if closing {
                    lock.unlock()
                    return
                }
                lock.unlock()
                let item = produce()
                lock.lock()
                queue.append(item)
                if case .end = item { parked = true }
                lock.broadcast()
                lock.unlock()
                if case .failure = item { return }
            }
        }

        /// Reads the rest of the current frame (or the next frame): its
        /// records with their frame copy, or the end, or the cursor's error
        /// (after the records before it, which are returned first).
        func produce() -> Item {
            if let e = pendingError {
                pendingError = nil
                return .failure(e)
            }
            var batchFrame: FrameBytes?
            var views: [RecordView] = []
            if let c = carry {
                carry = nil
                batchFrame = c.frame
                views.append(c.view)
                if c.view.lsn == marks.frameLast { return .frame(c.frame, views) }
            }
            while true {
                let v: RecordView?
                do {
                    v = try cursor.nextView()
                } catch {
                    if let batchFrame, !views.isEmpty {
                        pendingError = error
                        return .frame(batchFrame, views)
                    }
                    return .failure(error)
                }
                guard let v else {
                    if let batchFrame, !views.isEmpty { return .frame(batchFrame, views) }
                    return .end
                }
                let f: FrameBytes
                if !marks.newFrame, let p = producingFrame {
                    f = p
                } else {
                    // A frame begins: copy its content out of the cursor's
                    // reused buffer now, before the cursor reads on.
                    marks.newFrame = false
                    f = FrameBytes(copying: v.base)
                    producingFrame = f
                }
                let view = v.rebased(onto: f.bytes)
                if let b = batchFrame, b !== f {
                    // One batch per frame: this record starts the next one.
                    carry = HeldRecord(view: view, frame: f)
                    return .frame(b, views)
                }
                batchFrame = f
                views.append(view)
                if v.lsn == marks.frameLast { return .frame(f, views) }
            }
        }
    }
}

extension RecordView {
    /// The same record over another copy of its frame's content.
    func rebased(onto b: UnsafeRawBufferPointer) -> RecordView {
        RecordView(lsn: lsn, timestampMicros: timestampMicros, operation: operation, table: table,
                   base: b, keyAt: keyAt, beforeAt: beforeAt, afterAt: afterAt)
    }

    /// The key's fields as encoded (names and values), when their names
    /// are exactly `names` in order; nil otherwise. Two changes of one table
    /// whose key fields are named alike have the same key exactly when these
    /// bytes are equal (each value's encoding is unique).
    public func keyBytes(named names: [[UInt8]]) -> UnsafeRawBufferPointer? {
        let k = key
        guard k.count == names.count else { return nil }
        var i = 0
        var end = k.start
        for f in k {
            let same = names[i].withUnsafeBytes { f.name.elementsEqual($0) }
            guard same else { return nil }
            // Every value has at least its tag byte, so its start exists.
            if let at = f.valueBytes.baseAddress, let b = base.baseAddress { end = at - b + f.valueBytes.count }
            i += 1
        }
        return UnsafeRawBufferPointer(rebasing: base[k.start..<end])
    }
}
