import Foundation

/// `count` threads that run `body` and are joined before `run` returns. Not
/// `DispatchQueue.concurrentPerform`: it runs at most one iteration per active CPU, and an
/// iteration here drains the whole board, so `--jobs 4` on 2 cores ran 2 guests at a time.
/// A guest mostly waits on QEMU (under KVM, or on a remote host), so more workers than
/// cores is what `--jobs` asks for.
enum Workers {
    static func run(_ count: Int, _ body: (Int) -> Void) {
        // pthreads, joined here: each thread drops its reference to `body` before it
        // exits, so the closure does not outlive this call (withoutActuallyEscaping checks).
        withoutActuallyEscaping(body) { body in
            var threads: [pthread_t] = []
            for index in 0..<max(1, count) {
                let work = Unmanaged.passRetained(Work(index: index, body: body)).toOpaque()
                var attributes = pthread_attr_t()
                pthread_attr_init(&attributes)
                pthread_attr_setstacksize(&attributes, 8 << 20)
                var thread = pthread_t()
                let status = pthread_create(&thread, &attributes, { context in
                    Unmanaged<Work>.fromOpaque(context!).takeRetainedValue().start()
                    return nil
                }, work)
                pthread_attr_destroy(&attributes)
                if status == 0 {
                    threads.append(thread)
                } else {
                    // No thread: run this worker's share here rather than lose it.
                    Unmanaged<Work>.fromOpaque(work).takeRetainedValue().start()
                }
            }
            for thread in threads { pthread_join(thread, nil) }
        }
    }

    private final class Work {
        let index: Int
        let body: (Int) -> Void
        init(index: Int, body: @escaping (Int) -> Void) {
            self.index = index
            self.body = body
        }
        func start() { body(index) }
    }
}
