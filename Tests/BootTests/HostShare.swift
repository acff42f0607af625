import Testing

/// How many of the suites' heavy tests (guests, kernel-tree builds) run at once. Each suite
/// runs its own tests one at a time, but the six suites ran side by side: on a 2-core host
/// that was up to six runs of guests and builds at once, and a resumed guest twice came back
/// with its last record cut off (cause not found) in 6 suite runs. Two at a time keeps the
/// host about as busy as one `--jobs 2` run.
actor HostShare {
    static let shared = HostShare(slots: 2)
    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(slots: Int) { free = slots }

    func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty { free += 1 } else { waiting.removeFirst().resume() }
    }
}

/// `@Suite(.serialized, .sharingTheHost)`: the suite holds one of HostShare's slots while
/// its tests run, one at a time.
struct SharingTheHost: SuiteTrait, TestScoping {
    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        await HostShare.shared.acquire()
        do {
            try await function()
        } catch {
            await HostShare.shared.release()
            throw error
        }
        await HostShare.shared.release()
    }
}

extension Trait where Self == SharingTheHost {
    static var sharingTheHost: SharingTheHost { SharingTheHost() }
}
