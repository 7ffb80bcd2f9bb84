import CZstd

/// A reusable zstd compression context (one per appender; not thread-safe).
final class Compressor {
    private let context: OpaquePointer
    let level: Int32

    init(level: Int32) throws(LogError) {
        guard let ctx = ZSTD_createCCtx() else { throw LogError(.compression, "zstd: cannot allocate a compression context") }
        context = ctx
        self.level = level
        // > ZSTD_c_checksumFlag: A 32-bits checksum of content is written at end of frame.
        // Readers (and `zstd -t`) then verify the decompressed bytes.
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 1)
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_contentSizeFlag, 1)
    }

    deinit { ZSTD_freeCCtx(context) }

    /// Compresses `input` as one complete zstd frame appended to `out`.
    func compress(_ input: [UInt8], appendingTo out: inout [UInt8]) throws(LogError) {
        let bound = ZSTD_compressBound(input.count)
        let start = out.count
        out.reserveCapacity(start + bound)
        var written = 0
        var failure: String?
        out.append(contentsOf: repeatElement(0, count: bound))
        out.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in
                let n = ZSTD_compress2(context, dst.baseAddress! + start, bound, src.baseAddress, src.count)
                if ZSTD_isError(n) != 0 {
                    failure = String(cString: ZSTD_getErrorName(n))
                } else {
                    written = n
                }
            }
        }
        if let failure { throw LogError(.compression, "zstd compression failed: \(failure)") }
        out.removeLast(bound - written)
    }
}

/// A reusable zstd decompression context (one per reader; not thread-safe).
final class Decompressor {
    private let context: OpaquePointer

    init() throws(LogError) {
        guard let ctx = ZSTD_createDCtx() else { throw LogError(.compression, "zstd: cannot allocate a decompression context") }
        context = ctx
    }

    deinit { ZSTD_freeDCtx(context) }

    /// Decompresses one frame into `out` (resized to exactly `expectedSize`).
    /// Returns nil on success or zstd's error name (bad data, checksum mismatch).
    func decompress(_ frame: UnsafeRawBufferPointer, expectedSize: Int, into out: inout [UInt8]) -> String? {
        if out.count != expectedSize {
            if out.count < expectedSize {
                out.append(contentsOf: repeatElement(0, count: expectedSize - out.count))
            } else {
                out.removeLast(out.count - expectedSize)
            }
        }
        var failure: String?
        out.withUnsafeMutableBytes { dst in
            // Capacity exactly expectedSize: a frame that decodes to more fails
            // with "Destination buffer is too small" instead of overrunning.
            let n = ZSTD_decompressDCtx(context, dst.baseAddress, dst.count, frame.baseAddress, frame.count)
            if ZSTD_isError(n) != 0 {
                failure = String(cString: ZSTD_getErrorName(n))
            } else if n != expectedSize {
                failure = "decompressed to \(n) bytes, metadata says \(expectedSize)"
            }
        }
        return failure
    }
}
