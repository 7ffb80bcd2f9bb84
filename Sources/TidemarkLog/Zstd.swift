import CZstd

/// The zstd library this build links (as `tidemark --version` shows it).
public enum ZstdLibrary {
    public static var version: String { String(cString: ZSTD_versionString()) }
}

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

    /// Compresses the first `count` bytes of `input` as one complete zstd
    /// frame written into `out` at `offset`; returns the frame's size.
    ///
    /// `out` grows (zero-filled) only when shorter than `offset` plus zstd's
    /// worst case, and never shrinks: a reused buffer is filled once instead
    /// of zero-filling and trimming a megabyte per frame. Bytes of `out` past
    /// the frame are left as they were.
    func compress(_ input: [UInt8], count: Int, into out: inout [UInt8], at offset: Int) throws(LogError) -> Int {
        precondition(count <= input.count && offset <= out.count)
        let bound = ZSTD_compressBound(count)
        if out.count < offset + bound {
            out.growZeroed(to: offset + bound)
        }
        var written = 0
        var failure: String?
        out.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in
                let n = ZSTD_compress2(context, dst.baseAddress! + offset, bound, src.baseAddress, count)
                if ZSTD_isError(n) != 0 {
                    failure = String(cString: ZSTD_getErrorName(n))
                } else {
                    written = n
                }
            }
        }
        if let failure { throw LogError(.compression, "zstd compression failed: \(failure)") }
        return written
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

    /// Decompresses one frame into `out`, sized to exactly `expectedSize`;
    /// the same checks as the array form. On failure `out` is left empty.
    func decompress(_ frame: UnsafeRawBufferPointer, expectedSize: Int, into out: FrameBuffer) -> String? {
        let dst = out.prepare(expectedSize)
        // Capacity exactly expectedSize: a frame that decodes to more fails
        // with "Destination buffer is too small" instead of overrunning.
        let n = ZSTD_decompressDCtx(context, dst.baseAddress, dst.count, frame.baseAddress, frame.count)
        if ZSTD_isError(n) != 0 {
            out.clear()
            return String(cString: ZSTD_getErrorName(n))
        }
        if n != expectedSize {
            out.clear()
            return "decompressed to \(n) bytes, metadata says \(expectedSize)"
        }
        return nil
    }

    /// Decompresses one frame into `out` (resized to exactly `expectedSize`).
    /// Returns nil on success or zstd's error name (bad data, checksum mismatch).
    func decompress(_ frame: UnsafeRawBufferPointer, expectedSize: Int, into out: inout [UInt8]) -> String? {
        if out.count != expectedSize {
            if out.count < expectedSize {
                out.growZeroed(to: expectedSize)
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
