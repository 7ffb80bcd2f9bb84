import Foundation
import Testing
@testable import TidemarkCore
import TidemarkTestSupport

/// `--max-rows-per-second`'s token bucket on a simulated clock: whatever the
/// chunk sizes and the delays between chunks, the copy never runs ahead of
/// N rows per second from its start, and no second holds more than N plus
/// one bucket (a tenth of a second's rows).
@Suite struct RowRateLimiterTests {
    @Test(arguments: [(1_000, 400), (50, 10_000), (7, 3), (250_000, 10_000)])
    func theCopyNeverRunsAheadOfTheRate(rate: Int, planChunkRows: Int) {
        let seed = UInt64.random(in: 0...UInt64.max)
        var random = SplitMix64(seed: seed)
        var limiter = RowRateLimiter(rowsPerSecond: rate, planChunkRows: planChunkRows, nowNanos: 0)
        let chunk = limiter.chunkRows
        #expect(chunk >= 1 && chunk <= planChunkRows && chunk <= max(1, rate / 10), "chunk \(chunk), seed \(seed)")
        var now: UInt64 = 0
        var chunks: [(at: UInt64, rows: Int)] = []
        while chunks.count < 2_000 {
            let wait = limiter.waitNanos(nowNanos: now)
            if wait > 0 {
                // The run loop sleeps at most 50 ms at a time, sometimes less than asked.
                now += UInt64.random(in: 1...min(wait, 50_000_000), using: &random)
                continue
            }
            let n = Int.random(in: 0...chunk, using: &random)
            limiter.spend(n)
            chunks.append((now, n))
            // The chunk's own time, and now and then an idle stretch.
            now += UInt64.random(in: 0...2_000_000, using: &random) + (Int.random(in: 0..<20, using: &random) == 0 ? 3_000_000_000 : 0)
        }
        var total = 0
        for (i, c) in chunks.enumerated() {
            total += c.rows
            let allowed = Double(rate) * Double(c.at) / 1e9
            #expect(Double(total) <= allowed + 1e-6, "\(total) rows by \(Double(c.at) / 1e9) s, above \(rate)/s; seed \(seed)")
            let window = chunks[i...].prefix { $0.at < c.at + 1_000_000_000 }.reduce(0) { $0 + $1.rows }
            #expect(window <= rate + chunk, "\(window) rows in the second from \(Double(c.at) / 1e9) s, above \(rate) + \(chunk); seed \(seed)")
            if Double(total) > allowed + 1e-6 || window > rate + chunk { return }
        }
    }
}
