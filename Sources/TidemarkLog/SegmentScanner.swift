/// Walks the frames of one segment file, validating each frame's metadata and
/// its link to the frame before it. Data frames are loaded and checked only
/// on request, so seeking and recovery skip what they do not need.
///
/// Used by the appender's recovery, the reader, `log verify` and `log stats`:
/// one definition of "valid frame" (see FrameMetadata.swift).
struct SegmentScanner {
    let segment: SegmentFile
    let file: SystemFile
    let header: SegmentHeader
    /// Offset of the next frame's metadata.
    private(set) var offset: Int
    /// Chain value the next frame must link to.
    private(set) var chain: UInt64
    /// LSN of the last record of the last accepted frame (or base - 1).
    private(set) var lastLSN: LSN
    private var metadataBuffer: [UInt8] = []

    enum Step {
        /// A frame whose metadata is valid and whose bytes are all present.
        case frame(FrameMetadata)
        /// Clean end of file at a frame boundary.
        case end
        /// The file ends inside a frame (a torn write, or one in progress).
        case incomplete
        /// Metadata is damaged or does not link to the previous frame.
        case corrupt(String)
    }

    enum OpenResult {
        case ok(SegmentScanner)
        /// The file is shorter than a header (a segment being created, or torn).
        case incompleteHeader
        case badHeader(String)
    }

    static func open(_ segment: SegmentFile) throws(LogError) -> OpenResult {
        let file = try SystemFile.openForReading(segment.path)
        return try open(segment, file: file)
    }

    static func open(_ segment: SegmentFile, file: SystemFile) throws(LogError) -> OpenResult {
        var buf = [UInt8]()
        let n = try file.read(at: 0, count: SegmentHeader.encodedSize, into: &buf)
        if n < SegmentHeader.encodedSize { return .incompleteHeader }
        let parsed = buf.withUnsafeBytes { SegmentHeader.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        switch parsed {
        case .failure(let f): return .badHeader(f.what)
        case .success(let header):
            guard header.baseLSN == segment.baseLSN else {
                return .badHeader("header says base LSN \(header.baseLSN) but the file is named for \(segment.baseLSN)")
            }
            return .ok(SegmentScanner(
                segment: segment, file: file, header: header, offset: SegmentHeader.encodedSize,
                chain: header.previousChain, lastLSN: LSN(header.baseLSN.rawValue &- 1)))
        }
    }

    /// Examines the frame at `offset` without consuming it.
    /// - Parameter fileSize: the size to trust (callers re-stat when following).
    mutating func peek(fileSize: Int) throws(LogError) -> Step {
        if offset >= fileSize { return .end }
        let available = min(FrameMetadata.maxEncodedSize, fileSize - offset)
        // Most metadata is small: read a little first, all of it only if needed.
        var n = try file.read(at: offset, count: min(available, 512), into: &metadataBuffer)
        var parsed = metadataBuffer.withUnsafeBytes { FrameMetadata.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n]), version: header.version) }
        if case .short = parsed, n < available {
            n = try file.read(at: offset, count: available, into: &metadataBuffer)
            parsed = metadataBuffer.withUnsafeBytes { FrameMetadata.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n]), version: header.version) }
        }
        switch parsed {
        case .short:
            return .incomplete
        case .invalid(let why):
            return .corrupt(why)
        case .ok(let m):
            guard m.previousChain == chain else {
                return .corrupt("frame does not follow the previous one (missing, reordered or foreign frame)")
            }
            guard m.firstLSN > lastLSN else {
                return .corrupt("frame LSNs \(m.firstLSN)...\(m.lastLSN) do not follow LSN \(lastLSN)")
            }
            if offset == SegmentHeader.encodedSize && m.firstLSN != header.baseLSN {
                return .corrupt("first frame starts at LSN \(m.firstLSN), segment is named for \(header.baseLSN)")
            }
            if offset + m.totalSize > fileSize { return .incomplete }
            return .frame(m)
        }
    }

    /// Reads the data frame of `m` (at the current offset) into `buffer` and
    /// checks its CRC. Returns nil if intact, else the reason.
    func loadData(_ m: FrameMetadata, into buffer: inout [UInt8]) throws(LogError) -> String? {
        let count = Int(m.dataSize)
        let n = try file.read(at: offset + m.metadataSize, count: count, into: &buffer)
        guard n == count else { return "data frame is incomplete" }
        let crc = buffer.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        return crc == m.dataChecksum ? nil : "data checksum mismatch"
    }

    /// Accepts the frame `m` and moves past it.
    mutating func advance(past m: FrameMetadata) {
        offset += m.totalSize
        chain = m.chain
        lastLSN = m.lastLSN
    }

    /// What the valid frame metadata found after damage says.
    struct LaterFrames {
        /// Some valid frame metadata starts after the damage.
        var exist = false
        /// Some later frame proves the damaged bytes were durable: it records
        /// a synced length past the damage, or is a format 1 frame (which
        /// cannot say, so it is taken as proof).
        var proveDamageDurable = false
    }

    /// Scans the bytes after `start` (damage) for valid frame metadata, to
    /// tell a torn, never-synced tail (which may be cut) from damage to
    /// durable data (which must be reported). See the rule above
    /// `LogAppender.recover`.
    func framesAfter(damageAt start: Int, fileSize: Int) throws(LogError) -> LaterFrames {
        var result = LaterFrames()
        try forEachMetadata(after: start, fileSize: fileSize) { m in
            result.exist = true
            if m.syncedLength.map({ $0 > UInt64(start) }) ?? true {
                result.proveDamageDurable = true
                return false
            }
            return true
        }
        return result
    }

    /// Calls `body` with each valid frame metadata that starts after `start`
    /// (a byte-by-byte search for the skippable-frame magic, since the bytes
    /// at `start` are damaged), until it returns false. Segments are bounded
    /// by the rotation size, so one read is fine; this runs only when damage
    /// is found.
    func forEachMetadata(after start: Int, fileSize: Int, _ body: (FrameMetadata) -> Bool) throws(LogError) {
        let total = fileSize - start
        guard total > FrameMetadata.v1PayloadSize + 8 else { return }
        var buf = [UInt8]()
        let n = try file.read(at: start, count: total, into: &buf)
        buf.withUnsafeBytes { raw in
            var i = 1
            while i + 8 + FrameMetadata.v1PayloadSize <= n {
                if raw[i] == 0x51 && raw[i + 1] == 0x2A && raw[i + 2] == 0x4D && raw[i + 3] == 0x18 {
                    let end = min(n, i + FrameMetadata.maxEncodedSize)
                    if case .ok(let m) = FrameMetadata.parse(UnsafeRawBufferPointer(rebasing: raw[i..<end]), version: header.version), !body(m) {
                        return
                    }
                }
                i += 1
            }
        }
    }

    /// Whether any valid frame metadata starts after `start`.
    func validMetadataExists(after start: Int, fileSize: Int) throws(LogError) -> Bool {
        try framesAfter(damageAt: start, fileSize: fileSize).exist
    }
}

/// Decompresses a frame's data and iterates its records.
struct FrameDecoder {
    let decompressor: Decompressor
    /// The current frame's content, in one buffer reused frame after frame.
    let buffer = FrameBuffer()

    init() throws(LogError) {
        decompressor = try Decompressor()
    }

    /// The current frame's decompressed content (valid until the next
    /// `decompress`).
    var content: UnsafeRawBufferPointer { buffer.content }

    /// Decompresses `data` (the frame's compressed bytes) into `content`.
    mutating func decompress(_ data: [UInt8], metadata m: FrameMetadata) -> String? {
        data.withUnsafeBytes { raw in
            decompressor.decompress(
                UnsafeRawBufferPointer(rebasing: raw[0..<Int(m.dataSize)]),
                expectedSize: Int(m.contentSize), into: buffer)
        }
    }
}

/// Memory for one frame's decompressed content, at a fixed address while
/// it is not regrown: ``RecordView``s point into it.
///
/// Invariant: `content` lies inside the allocation, and the allocation
/// changes only in ``prepare(_:)`` (a larger frame); a view taken before
/// that call is never read after it (see ``RecordView``'s lifetime).
final class FrameBuffer {
    private var storage: UnsafeMutableRawBufferPointer
    private(set) var count = 0

    init() {
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 0, alignment: 16)
    }

    deinit { storage.deallocate() }

    var content: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<count]) }

    /// Makes room for `size` bytes (growing at least twofold) and returns them.
    func prepare(_ size: Int) -> UnsafeMutableRawBufferPointer {
        if storage.count < size {
            storage.deallocate()
            storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 2 * storage.count), alignment: 16)
        }
        count = size
        return UnsafeMutableRawBufferPointer(rebasing: storage[0..<size])
    }

    /// Marks the buffer empty (after a failed decompression).
    func clear() { count = 0 }
}
