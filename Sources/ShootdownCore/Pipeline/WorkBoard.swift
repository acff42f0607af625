import Foundation

/// Hands out boots (batches of cell indices) to workers and keeps the run's progress.
/// A boot that ended before all its cells ran gives the rest back; they go next, in a
/// fresh boot. A worker that finds the queue empty waits while others still run boots,
/// since one of them may give cells back.
///
/// Each boot weighs the host threads its emulator keeps busy (`weight`). A guest with a
/// thread per vCPU (more than one) starts only while the running ones fit in `threads`
/// (one always may), and while it runs, others start only within that budget: four vCPU
/// threads of an arm64 guest under multi-threaded TCG beside other guests on two cores
/// starved vCPUs into RCU stall and soft-lockup splats, false FAILs of the kernel.
/// Single-threaded guests beside each other only slow down, so `--jobs` decides for them.
final class WorkBoard: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [[Int]]
    private let weight: ([Int]) -> Int
    private let threads: Int
    private var busy = 0
    private var multiThreaded = 0
    private var inFlight = 0
    private let total: Int
    private let alreadyDone: Int
    private var done: Int
    private var handedOut = 0
    private var failures = 0
    private var cellSeconds: [Double] = []
    private(set) var error: Error?

    init(batches: [[Int]], alreadyDone: Int, total: Int, threads: Int = .max, weight: @escaping ([Int]) -> Int = { _ in 1 }) {
        queue = batches
        self.threads = threads
        self.weight = weight
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
            while true {
                guard error == nil else { return nil }
                if let index = queue.firstIndex(where: { mayStart(weight($0)) }) {
                    inFlight += 1
                    let batch = queue.remove(at: index)
                    busy += weight(batch)
                    if weight(batch) > 1 { multiThreaded += 1 }
                    defer { handedOut += batch.count }
                    return (batch, alreadyDone + handedOut + 1)
                }
                if queue.isEmpty && inFlight == 0 { return nil }
                condition.wait()
            }
        }
    }

    private func mayStart(_ weight: Int) -> Bool {
        inFlight == 0 || busy + weight <= threads || (weight <= 1 && multiThreaded == 0)
    }

    /// A boot is over; `notRun` are its cells that need another one.
    func settle(_ boot: [Int], notRun: [Int]) {
        locked {
            inFlight -= 1
            busy -= weight(boot)
            if weight(boot) > 1 { multiThreaded -= 1 }
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
