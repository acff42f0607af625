import Foundation

/// Hands out boots (batches of cell indices) to workers and keeps the run's progress.
/// A boot that ended before all its cells ran gives the rest back; they go next, in a
/// fresh boot. A worker that finds the queue empty waits while others still run boots,
/// since one of them may give cells back.
final class WorkBoard: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [[Int]]
    private var inFlight = 0
    private let total: Int
    private let alreadyDone: Int
    private var done: Int
    private var handedOut = 0
    private var failures = 0
    private var cellSeconds: [Double] = []
    private(set) var error: Error?

    init(batches: [[Int]], alreadyDone: Int, total: Int) {
        queue = batches
        done = alreadyDone
        self.alreadyDone = alreadyDone
        self.total = total
    }

    private func locked<T>(_ body: () -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body()
    }

    /// The next boot's cells, or nil when none are left (or the run aborted). The
    /// second value numbers its first cell among all cells handed out, for the log.
    func next() -> (cells: [Int], ordinal: Int)? {
        locked {
            while error == nil && queue.isEmpty && inFlight > 0 { condition.wait() }
            guard error == nil, !queue.isEmpty else { return nil }
            inFlight += 1
            let batch = queue.removeFirst()
            defer { handedOut += batch.count }
            return (batch, alreadyDone + handedOut + 1)
        }
    }

    /// A boot is over; `notRun` are its cells that need another one.
    func settle(notRun: [Int]) {
        locked {
            inFlight -= 1
            handedOut -= notRun.count
            if !notRun.isEmpty { queue.insert(notRun, at: 0) }
            condition.broadcast()
        }
    }

    func finish(_ result: CellResult, seconds: Double, jobs: Int) -> RunPipeline.Progress {
        locked {
            done += 1
            cellSeconds.append(seconds)
            if result.status == .fail || result.status == .error { failures += 1 }
            let mean = cellSeconds.reduce(0, +) / Double(cellSeconds.count)
            let remaining = Double(total - done) * mean / Double(jobs)
            return RunPipeline.Progress(done: done, total: total, failures: failures, remainingSeconds: remaining)
        }
    }

    func abort(_ error: Error) {
        locked {
            if self.error == nil { self.error = error }
            condition.broadcast()
        }
    }
}
