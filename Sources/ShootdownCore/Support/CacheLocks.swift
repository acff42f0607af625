import Foundation

/// An exclusive flock(2) on a file beside what it guards (a worktree, a build folder), so
/// that two shootdown runs, or two threads of one, take turns. The lock goes with the
/// descriptor: a crashed or SIGKILLed run never leaves a stale lock. The descriptor is
/// close-on-exec so a command we start (make) does not keep holding it after we exit.
public enum FileLock {
    public static func withLock<T>(_ lockFile: URL, waiting: (String) -> Void = { _ in },
                                   _ body: () throws -> T) throws -> T {
        try FileManager.default.makeDirectory(lockFile.deletingLastPathComponent())
        let fd = open(lockFile.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ShootdownError.io(path: lockFile.path, message: String(cString: strerror(errno))) }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK else {
                throw ShootdownError.io(path: lockFile.path, message: String(cString: strerror(errno)))
            }
            waiting("waiting for another shootdown run that holds \(lockFile.path)")
            while flock(fd, LOCK_EX) != 0 {
                guard errno == EINTR else {
                    throw ShootdownError.io(path: lockFile.path, message: String(cString: strerror(errno)))
                }
            }
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}

/// An exclusive flock(2) held past one call: taken without waiting, or not at all, and
/// released by `release()` or when the process ends (SIGKILL included).
public final class HeldLock: @unchecked Sendable {
    private let lock = NSLock()
    private var fd: Int32

    private init(fd: Int32) { self.fd = fd }

    public static func tryTake(_ lockFile: URL) -> HeldLock? {
        try? FileManager.default.makeDirectory(lockFile.deletingLastPathComponent())
        let fd = open(lockFile.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return nil }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            return nil
        }
        return HeldLock(fd: fd)
    }

    public func release() {
        lock.withLock {
            guard fd >= 0 else { return }
            flock(fd, LOCK_UN)
            close(fd)
            fd = -1
        }
    }

    deinit { release() }
}

/// Puts a fully written cache folder in place with one rename(2), so a reader sees either
/// nothing or a complete folder, and a complete folder is never replaced while another run
/// may be staging from it. Returns the folder now in place: `staging` moved there, or the
/// complete one another run published first (then `staging` is removed).
public func publishDirectory(_ staging: URL, at final: URL, isComplete: (URL) -> Bool) throws -> URL {
    try FileManager.default.makeDirectory(final.deletingLastPathComponent())
    for _ in 0..<3 {
        if rename(staging.path, final.path) == 0 { return final }
        let error = errno
        guard error == EEXIST || error == ENOTEMPTY else {
            throw ShootdownError.io(path: final.path, message: String(cString: strerror(error)))
        }
        if isComplete(final) {
            try? FileManager.default.removeItem(at: staging)
            return final
        }
        // An incomplete leftover (an older shootdown, a crash mid-copy): nobody can be using
        // it, so it is moved aside (atomically) and removed, and the rename is retried.
        let aside = final.deletingLastPathComponent().appendingPathComponent(".stale-\(final.lastPathComponent)-\(UUID().uuidString)")
        if rename(final.path, aside.path) == 0 { try? FileManager.default.removeItem(at: aside) }
    }
    throw ShootdownError.io(path: final.path, message: "could not be replaced by \(staging.path)")
}
