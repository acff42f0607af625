import Foundation

/// Hands out cell indices to workers and keeps the run's progress.
final class WorkBoard: @unchecked Sendable {
    private let lock = NSLock()
    private let count: Int
    private let total: Int
    private var nextIndex = 0
    private var done: Int
    private var failures = 0
    private var cellSeconds: [Double] = []
    private(set) var error: Error?

    init(count: Int, alreadyDone: Int, total: Int) {
        self.count = count
        self.done = alreadyDone
        self.total = total
    }

    var started: Int { lock.withLock { done + (nextIndex - cellSeconds.count) } }

    func next() -> Int? {
        lock.withLock {
            guard error == nil, nextIndex < count else { return nil }
            defer { nextIndex += 1 }
            return nextIndex
        }
    }

    func finish(_ result: CellResult, seconds: Double, jobs: Int) -> RunPipeline.Progress {
        lock.withLock {
            done += 1
            cellSeconds.append(seconds)
            if result.status == .fail || result.status == .error { failures += 1 }
            let mean = cellSeconds.reduce(0, +) / Double(cellSeconds.count)
            let remaining = Double(total - done) * mean / Double(jobs)
            return RunPipeline.Progress(done: done, total: total, failures: failures, remainingSeconds: remaining)
        }
    }

    func abort(_ error: Error) {
        lock.withLock { if self.error == nil { self.error = error } }
    }
}
