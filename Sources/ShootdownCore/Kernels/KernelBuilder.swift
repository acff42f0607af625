import Foundation

/// Builds kernels from source for `git:` and `dir:` specs: out of tree (`O=`), one kept
/// build folder per tree × arch × config so the next nearby commit builds incrementally,
/// through ccache, cross-compiling arm64. git refs are checked out in shootdown's own
/// worktree, never in the user's working tree.
public struct KernelBuilder: Sendable {
    let context: ToolContext
    /// The user's own fragments, applied after shootdown's.
    let extraFragments: [URL]

    public init(context: ToolContext, extraFragments: [URL] = []) {
        self.context = context
        self.extraFragments = extraFragments
    }

    /// A source tree ready to build: a git worktree at a commit, or a plain folder.
    public struct Source: Sendable {
        public var path: URL
        /// The commit (git) or nil (a plain folder).
        public var commit: String?
        /// Where it came from, for results: `~/linux@v6.12 (1a2b3c4d…)`.
        public var origin: String
        /// Groups build folders: the same tree shares them across commits.
        public var treeKey: String
    }

    public func source(for spec: KernelSpec) throws -> Source {
        switch spec {
        case .git(let tree, let ref):
            let tree = URL(fileURLWithPath: (tree as NSString).expandingTildeInPath).standardizedFileURL
            return try withWorktreeLock(tree: tree) { try checkout(tree: tree, ref: ref) }
        case .dir(let path):
            let url = URL(fileURLWithPath: (path as NSString).expandingTildeInPath).standardizedFileURL
            guard FileManager.default.fileExists(atPath: url.appendingPathComponent("Kconfig").path) else {
                throw ShootdownError.kernelUnusable(spec: spec.description, reason: "\(url.path) is not a kernel source folder (no Kconfig)")
            }
            return Source(path: url, commit: nil, origin: url.path, treeKey: ContentHash.of(url.path))
        default:
            throw ShootdownError.kernelUnusable(spec: spec.description, reason: "not a source spec")
        }
    }

    /// shootdown's worktree of a tree: one per tree, shared by every run and ref.
    func worktree(of tree: URL) -> URL {
        context.paths.cache.appendingPathComponent("worktrees/\(tree.lastPathComponent)-\(ContentHash.of(tree.path).prefix(8))")
    }

    /// Holds the tree's worktree for one user: another run on the same tree waits rather
    /// than checking out its ref under this one's build.
    func withWorktreeLock<T>(tree: URL, _ body: () throws -> T) throws -> T {
        let worktree = worktree(of: tree)
        return try FileLock.withLock(worktree.appendingPathExtension("lock"), waiting: { context.log("kernel: \($0)") }, body)
    }

    /// `git worktree add` once per tree into the cache, then `checkout --detach` per ref.
    /// The caller holds the worktree lock.
    func checkout(tree: URL, ref: String) throws -> Source {
        let spec = "git:\(tree.path)@\(ref)"
        let resolved = try context.runner.run(Command("git", ["-C", tree.path, "rev-parse", "--verify", "\(ref)^{commit}"]))
        guard resolved.succeeded else {
            throw ShootdownError.kernelUnusable(spec: spec, reason: "git cannot resolve '\(ref)' in \(tree.path): \(tail(resolved.stderr, lines: 2))")
        }
        let commit = resolved.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let treeKey = ContentHash.of(tree.path)
        let worktree = worktree(of: tree)
        if !FileManager.default.fileExists(atPath: worktree.appendingPathComponent(".git").path) {
            try FileManager.default.makeDirectory(worktree.deletingLastPathComponent())
            try? FileManager.default.removeItem(at: worktree)
            _ = try? context.runner.run(Command("git", ["-C", tree.path, "worktree", "prune"]))
            try context.runner.check(Command("git", ["-C", tree.path, "worktree", "add", "--detach", worktree.path, commit]))
        } else {
            try context.runner.check(Command("git", ["-C", worktree.path, "checkout", "--quiet", "--detach", "--force", commit]))
        }
        return Source(path: worktree, commit: commit, origin: "\(tree.path)@\(ref) (\(commit.prefix(12)))", treeKey: treeKey)
    }

    /// The fragments for an arch: shootdown's, then the user's.
    public func fragments(arch: Arch) throws -> [KernelConfigFragment] {
        try KernelConfigFragment.shipped(resources: context.paths.resources, arch: arch) + extraFragments.map(KernelConfigFragment.load)
    }

    public func buildDirectory(source: Source, arch: Arch) throws -> URL {
        var hash = ContentHash()
        for fragment in try fragments(arch: arch) {
            hash.update(fragment.path)
            fragment.settings.forEach { hash.update("\($0.option)=\($0.value)") }
        }
        return context.paths.cache.appendingPathComponent("builds/\(source.treeKey.prefix(8))-\(arch)-\(hash.hex.prefix(12))")
    }

    /// make's variables for a build of `source` into `output`. ccache hashes paths
    /// relative to the source folder (make exports command-line variables to its
    /// recipes), so builds of the same commit in another folder (a `dir:` copy) hit.
    static func makeVariables(_ arch: Arch, output: URL, jobs: Int, source: URL? = nil) -> [String] {
        var variables = ["O=\(output.path)", "-j\(jobs)"]
        if let source { variables += ["CCACHE_BASEDIR=\(source.path)", "CCACHE_NOHASHDIR=true"] }
        switch arch {
        case .x86_64: variables += ["ARCH=x86_64", "CC=ccache gcc", "HOSTCC=ccache gcc"]
        case .aarch64: variables += ["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-", "CC=ccache aarch64-linux-gnu-gcc", "HOSTCC=ccache gcc"]
        }
        return variables
    }

    static func imageTarget(_ arch: Arch) -> (target: String, path: String) {
        arch == .x86_64 ? ("bzImage", "arch/x86/boot/bzImage") : ("Image", "arch/arm64/boot/Image")
    }

    /// Configures and builds; returns the image, copied out of the build folder so the
    /// next commit's build does not overwrite what a result points at.
    /// A git ref holds its worktree from checkout until the image is kept, so the image is
    /// the one of its own commit even when another run wants another ref of the same tree.
    public func build(_ spec: KernelSpec, arch: Arch) throws -> KernelImage {
        if case .git(let tree, let ref) = spec {
            let tree = URL(fileURLWithPath: (tree as NSString).expandingTildeInPath).standardizedFileURL
            return try withWorktreeLock(tree: tree) {
                try build(source: try checkout(tree: tree, ref: ref), arch: arch, spec: spec)
            }
        }
        return try build(source: try source(for: spec), arch: arch, spec: spec)
    }

    /// Holds the build folder's lock from configure until the image is kept: two runs
    /// never build in one folder at once.
    public func build(source: Source, arch: Arch, spec: KernelSpec) throws -> KernelImage {
        let output = try buildDirectory(source: source, arch: arch)
        return try FileLock.withLock(output.appendingPathExtension("lock"), waiting: { context.log("build: \($0)") }) {
            try build(source: source, arch: arch, spec: spec, output: output)
        }
    }

    func build(source: Source, arch: Arch, spec: KernelSpec, output: URL) throws -> KernelImage {
        try FileManager.default.makeDirectory(output)
        let log = output.appendingPathComponent("build.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let jobs = ProcessInfo.processInfo.activeProcessorCount + 1
        let variables = Self.makeVariables(arch, output: output, jobs: jobs, source: source.path)
        let clock = ContinuousClock(), started = clock.now
        try configure(source: source, arch: arch, output: output, log: log, spec: spec, variables: variables)
        let image = Self.imageTarget(arch)
        // `modules` builds no module (mod2noconfig left none) but writes Module.symvers,
        // which out-of-tree modules built against this folder link with.
        try step("compile \(image.target)", log: log, spec: spec, ticker: true) {
            Command("make", ["-C", source.path.path] + variables + [image.target, "modules"])
        }
        let release = (try? context.runner.run(Command("make", ["-s", "-C", source.path.path] + variables + ["kernelrelease"])))?
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
        context.log(String(format: "build %@: %@ done in %.0f s (log %@)", arch.rawValue, release, (clock.now - started).seconds, log.path))
        return try keep(output: output, image: image.path, arch: arch, spec: spec, source: source, release: release)
    }

    /// defconfig, then shootdown's and the user's fragments merged, then mod2noconfig;
    /// fails with the list of fragment settings the final .config lost.
    public func configure(source: Source, arch: Arch, output: URL, log: URL, spec: KernelSpec, variables: [String]? = nil) throws {
        let variables = variables ?? Self.makeVariables(arch, output: output, jobs: ProcessInfo.processInfo.activeProcessorCount + 1,
                                                        source: source.path)
        let fragments = try fragments(arch: arch)
        try step("configure \(arch) (defconfig + \(fragments.count) fragments)", log: log, spec: spec) {
            Command("make", ["-C", source.path.path] + variables + ["defconfig"])
        }
        try step("merge fragments", log: log, spec: spec) {
            Command(source.path.appendingPathComponent("scripts/kconfig/merge_config.sh").path,
                    ["-m", "-O", output.path, output.appendingPathComponent(".config").path] + fragments.map(\.path),
                    workingDirectory: source.path.path)
        }
        // mod2noconfig is olddefconfig that also turns every `=m` off: drivers the guest
        // needs are built in by the fragments, and a module-heavy defconfig (arm64's has
        // ~800) no longer costs build time. MODULES itself stays on for out-of-tree modules.
        try step("mod2noconfig", log: log, spec: spec) {
            Command("make", ["-C", source.path.path] + variables + ["mod2noconfig"])
        }
        let config = (try? String(contentsOf: output.appendingPathComponent(".config"), encoding: .utf8)) ?? ""
        let lost = KernelConfigFragment.lost(fragments, finalConfig: config)
        guard lost.isEmpty else {
            throw ShootdownError.kernelUnusable(spec: spec.description,
                                                reason: "these options did not survive mod2noconfig:\n  " + lost.joined(separator: "\n  "))
        }
    }

    /// Copies image, .config and System.map to `kernels/built/<commit or content>-<arch>-<config>`.
    /// A git build is keyed by its commit; a `dir:` tree has no commit and can be edited
    /// between builds, so its key is the built image's content: an earlier result keeps
    /// pointing at the image it ran. The folder is written aside and renamed into place, and
    /// one already there is kept, so a run staging from it never sees it change.
    func keep(output: URL, image: String, arch: Arch, spec: KernelSpec, source: Source, release: String) throws -> KernelImage {
        let names = [image, ".config", "System.map"]
        let identity: String
        if let commit = source.commit {
            identity = String(commit.prefix(16))
        } else {
            var hash = ContentHash()
            for name in [image, ".config"] {
                guard let data = try? Data(contentsOf: output.appendingPathComponent(name), options: .alwaysMapped) else {
                    throw ShootdownError.io(path: output.appendingPathComponent(name).path, message: "build output missing")
                }
                hash.update(data)
            }
            identity = String(hash.hex.prefix(16))
        }
        let directory = context.paths.cache.appendingPathComponent("kernels/built/\(identity)-\(arch)-\(output.lastPathComponent.suffix(12))")
        let staging = directory.deletingLastPathComponent().appendingPathComponent(".keep-\(UUID().uuidString)")
        try FileManager.default.makeDirectory(staging)
        defer { try? FileManager.default.removeItem(at: staging) }
        for name in names {
            let from = output.appendingPathComponent(name), to = staging.appendingPathComponent(URL(fileURLWithPath: name).lastPathComponent)
            do {
                try FileManager.default.copyItem(at: from, to: to)
            } catch {
                throw ShootdownError.io(path: from.path, message: "build output missing: \(error.localizedDescription)")
            }
        }
        let kept = try publishDirectory(staging, at: directory) { existing in
            names.allSatisfy { FileManager.default.fileExists(atPath: existing.appendingPathComponent(URL(fileURLWithPath: $0).lastPathComponent).path) }
        }
        func path(_ name: String) -> URL { kept.appendingPathComponent(URL(fileURLWithPath: name).lastPathComponent) }
        return KernelImage(spec: spec.description, arch: arch, version: release, origin: source.origin,
                           kernel: path(image), config: path(".config"), systemMap: path("System.map"),
                           buildDirectory: output)
    }

    /// Runs one build step with its output appended to the log; on failure the error
    /// names the log's first error line. Long steps print the elapsed time every 30 s.
    func step(_ name: String, log: URL, spec: KernelSpec, ticker: Bool = false, _ command: () -> Command) throws {
        context.log("build: \(name)")
        let base = command()
        let line = ([base.executable] + base.arguments).map(shellQuoted).joined(separator: " ")
        let directory = base.workingDirectory.map { "cd \(shellQuoted($0)) && " } ?? ""
        let shell = Command("/bin/sh", ["-c", "\(directory)\(line) >> \(shellQuoted(log.path)) 2>&1"])
        var timer: DispatchSourceTimer?
        if ticker {
            let started = Date(), log = context.log
            let source = DispatchSource.makeTimerSource(queue: .global())
            source.schedule(deadline: .now() + 30, repeating: 30)
            source.setEventHandler { log(String(format: "build: %@ … %.0f s", name, Date().timeIntervalSince(started))) }
            source.resume()
            timer = source
        }
        defer { timer?.cancel() }
        let result = try context.runner.run(shell, timeout: .seconds(4 * 3600))
        guard result.succeeded else {
            throw ShootdownError.kernelUnusable(spec: spec.description, reason: "\(name) failed: \(Self.firstError(inLog: log))")
        }
    }

    /// `path:line: text` of the first error in a build log: a compiler or linker error
    /// first, else make's own `*** [target] Error` line.
    static func firstError(inLog log: URL) -> String {
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        let lines = text.lines(omittingEmpty: false)
        let compilerMarkers = [": error:", ": fatal error:", "undefined reference to", ": Error:"]
        let makeMarkers = ["*** [", "*** No rule", "] Error "]
        for markers in [compilerMarkers, makeMarkers] {
            if let index = lines.firstIndex(where: { line in markers.contains { line.contains($0) } }) {
                return "\(lines[index].trimmingCharacters(in: .whitespaces)) (\(log.path):\(index + 1))"
            }
        }
        return "see \(log.path)"
    }
}
