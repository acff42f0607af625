import Foundation
import Testing
import XMLSupport
@testable import ShootdownCore

@Suite struct DomainXMLTests {
    static let schema = RelaxNGValidator(schemaPath: "/usr/share/libvirt/schemas/domain.rng")

    static func spec(_ arch: Arch, _ accel: Accelerator, _ paravirt: Paravirt?) -> DomainSpec {
        let stage = "/var/lib/libvirt/shootdown/shootdown-run-0"
        return DomainSpec(name: "shootdown-run-0", arch: arch, accel: accel, paravirt: paravirt, vcpus: 4, memoryMiB: 1024,
                          emulator: "/usr/bin/\(arch.qemuBinary)", kernel: "\(stage)/kernel",
                          initrd: "\(stage)/initramfs.cpio", consolePath: "\(stage)/console.log",
                          resultPath: "\(stage)/results.jsonl")
    }

    static let combinations: [(Arch, Accelerator, Paravirt?, String)] = [
        (.x86_64, .tcg, nil, "domain-x86_64-tcg.xml"),
        (.aarch64, .tcg, nil, "domain-aarch64-tcg.xml"),
        (.x86_64, .kvm, .on, "domain-x86_64-kvm-pv-on.xml"),
        (.x86_64, .kvm, .off, "domain-x86_64-kvm-pv-off.xml"),
        (.aarch64, .kvm, .off, "domain-aarch64-kvm-pv-off.xml"),
        (.aarch64, .kvm, .on, "domain-aarch64-kvm-pv-on.xml"),
        (.x86_64, .tcg, .off, "domain-x86_64-tcg-pv-off.xml"),
        (.aarch64, .tcg, .off, "domain-aarch64-tcg-pv-off.xml"),
    ]

    @Test(arguments: combinations.indices)
    func matchesGoldenAndSchema(index: Int) throws {
        let (arch, accel, paravirt, golden) = Self.combinations[index]
        let xml = try DomainXML.render(Self.spec(arch, accel, paravirt))
        GoldenFile.check(xml, golden)
        #expect(try Self.schema.validate(xml) == [])
    }

    /// A guest booted to be saved: its UUID (which restored copies must carry) and the
    /// plan port its copies get their payload on, a UNIX socket libvirt listens on. KVM
    /// arm64 too, since the KVM path cannot be booted here.
    @Test(arguments: [(Arch.x86_64, Accelerator.tcg, "domain-x86_64-tcg-saved.xml"), (.aarch64, .kvm, "domain-aarch64-kvm-saved.xml")])
    func savedGuestsCarryTheirUUIDAndPlanPort(arch: Arch, accel: Accelerator, golden: String) throws {
        var spec = Self.spec(arch, accel, accel == .kvm ? .off : nil)
        spec.uuid = "6344f6be-c764-44f4-b5d2-e63650a569e9"
        spec.planSocketPath = "/var/lib/libvirt/shootdown/saved/0123456789abcdef-0/plan.sock"
        let xml = try DomainXML.render(spec)
        GoldenFile.check(xml, golden)
        #expect(try Self.schema.validate(xml) == [])
    }

    /// A guest with NUMA nodes (the migration test): a socket and a cell per node, vCPUs
    /// and memory split evenly, the same in the domain and in the reproducer's QEMU line.
    /// KVM arm64 too, since the KVM path cannot be booted here.
    @Test(arguments: [(Arch.x86_64, Accelerator.tcg, "domain-x86_64-tcg-numa2.xml"), (.aarch64, .kvm, "domain-aarch64-kvm-numa2.xml")])
    func numaGuestsGetASocketAndACellPerNode(arch: Arch, accel: Accelerator, golden: String) throws {
        var spec = Self.spec(arch, accel, nil)
        spec.numaNodes = 2
        let xml = try DomainXML.render(spec)
        GoldenFile.check(xml, golden)
        #expect(try Self.schema.validate(xml) == [])
        #expect(xml.contains(#"<topology sockets="2" dies="1" cores="2" threads="1"/>"#))
        let line = QemuCommandLine.arguments(for: spec)
        #expect(line.contains("4,sockets=2,cores=2,threads=1"))
        #expect(line.contains("node,nodeid=1,cpus=2-3,memdev=ram-node1"))
        #expect(line.contains("memory-backend-ram,id=ram-node0,size=512M"))
        // vCPUs that do not split evenly keep one socket (the run refuses them for NUMA tests).
        spec.vcpus = 3
        #expect(spec.numaSockets == 1 && spec.numaCells.map(\.cpus) == [0..<1, 1..<3])
    }

    /// A NUMA test with vCPUs that do not split over its nodes is refused before anything
    /// builds or boots, with what to use instead.
    @Test func numaTestsRefuseVCPUsThatDoNotSplit() throws {
        let context = ToolContext(paths: ToolPaths(cache: Repository.root, results: Repository.root,
                                                   resources: Repository.root, stage: Repository.root))
        let pipeline = RunPipeline(context: context)
        #expect(try pipeline.renderTests(RunRequest(vcpus: [2, 4], tests: [TestSelection(name: "hugetlb-shared-migrate")])).count == 1)
        #expect(throws: ShootdownError.usage("hugetlb-shared-migrate runs on 2 NUMA nodes, a socket each: --vcpus 3 does not split evenly; use a multiple of 2")) {
            try pipeline.renderTests(RunRequest(vcpus: [4, 3], tests: [TestSelection(name: "hugetlb-shared-migrate")]))
        }
    }

    @Test func schemaValidationCatchesInvalidDomains() throws {
        var document = DomainXML.document(for: Self.spec(.x86_64, .tcg, nil))
        document.append(XMLElement("vcpu-count", text: "4"))
        let errors = try Self.schema.validate(try document.serialized())
        #expect(!errors.isEmpty)
    }

    @Test func textAndAttributesAreEscapedByLibxml2() throws {
        var spec = Self.spec(.x86_64, .tcg, nil)
        spec.kernel = "/tmp/a<b>&'\"c"
        let xml = try DomainXML.render(spec)
        #expect(xml.contains("<kernel>/tmp/a&lt;b&gt;&amp;'\"c</kernel>"))
        #expect(try Self.schema.validate(xml) == [])
    }

    @Test func paravirtOffReachesTheGuestCommandLine() {
        #expect(Self.spec(.x86_64, .kvm, .off).commandLine.contains("nopv"))
        #expect(!Self.spec(.x86_64, .kvm, .on).commandLine.contains("nopv"))
        #expect(!Self.spec(.aarch64, .kvm, .off).commandLine.contains("nopv"))
        #expect(Self.spec(.aarch64, .kvm, .off).commandLine.contains("no-steal-acc"))
    }

    /// x86 under TCG runs single-threaded: the wrapper must rewrite only libvirt's
    /// `-accel tcg` and pass every other argument through untouched.
    @Test func singleThreadWrapperRewritesOnlyTheAccelerator() throws {
        let stage = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-wrapper-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: stage) }
        let context = ToolContext(paths: ToolPaths(cache: stage, results: stage, resources: stage, stage: stage))
        let launcher = GuestLauncher(context: context, connection: try LibvirtConnection(uri: "test:///default"), staging: .files)
        let wrapper = try launcher.emulatorWrapper(for: "/bin/echo", accelSuffix: ",thread=single", cpuSuffix: "")
        let output = try ProcessRunner().check(Command(wrapper, ["-name", "a b", "-accel", "tcg", "-append", "x -accel tcg", "-cpu", "max"]))
        #expect(output.stdout == "-name a b -accel tcg,thread=single -append x -accel tcg -cpu max\n")
        // An unchanged wrapper is left alone: a new ctime makes libvirt re-probe QEMU on every start.
        func ctime(_ path: String) -> timespec {
            var info = stat()
            stat(path, &info)
            return info.st_ctim
        }
        let before = ctime(wrapper)
        Thread.sleep(forTimeInterval: 0.02)
        #expect(try launcher.emulatorWrapper(for: "/bin/echo", accelSuffix: ",thread=single", cpuSuffix: "") == wrapper)
        let after = ctime(wrapper)
        #expect(before.tv_sec == after.tv_sec && before.tv_nsec == after.tv_nsec)
        let steal = try launcher.emulatorWrapper(for: "/bin/echo", accelSuffix: "", cpuSuffix: ",kvm-steal-time=off")
        #expect(try ProcessRunner().check(Command(steal, ["-accel", "kvm", "-cpu", "host"])).stdout == "-accel kvm -cpu host,kvm-steal-time=off\n")
        #expect(Self.spec(.aarch64, .kvm, .off).qemuSuffixes.cpu == ",kvm-steal-time=off")
        #expect(Self.spec(.aarch64, .kvm, .on).qemuSuffixes.cpu == "")
        var spec = Self.spec(.x86_64, .tcg, nil)
        #expect(spec.singleThreadedTCG)
        #expect(!Self.spec(.aarch64, .tcg, nil).singleThreadedTCG && !Self.spec(.x86_64, .kvm, nil).singleThreadedTCG)
        spec.emulatorWrapper = wrapper
        #expect(try DomainXML.render(spec).contains("<emulator>\(wrapper)</emulator>"))
        #expect(QemuCommandLine.arguments(for: spec).contains("tcg,thread=single"))
        #expect(QemuCommandLine.arguments(for: spec).first == "/usr/bin/qemu-system-x86_64")
    }

    /// arm64 gets a TCG thread per vCPU for race tests, and otherwise only with a core for
    /// each vCPU and one to spare; x86 never (MTTCG crashes it). The spec, the
    /// reproducer's QEMU line and the run's thread budget follow the same choice.
    @Test func tcgThreadsFollowTheTestAndTheHostsCores() throws {
        #expect(TCGThreads.choose(arch: .aarch64, vcpus: 4, hostCPUs: 2, races: false) == .single)
        #expect(TCGThreads.choose(arch: .aarch64, vcpus: 4, hostCPUs: 4, races: false) == .single)
        #expect(TCGThreads.choose(arch: .aarch64, vcpus: 4, hostCPUs: 5, races: false) == .multi)
        #expect(TCGThreads.choose(arch: .aarch64, vcpus: 4, hostCPUs: 2, races: true) == .multi)
        #expect(TCGThreads.choose(arch: .x86_64, vcpus: 4, hostCPUs: 2, races: true) == .single)
        let stage = FileManager.default.temporaryDirectory.appendingPathComponent("shootdown-threads-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: stage) }
        // Needs qemu-system-aarch64 installed (ci/setup-host), as the boot tests do.
        let context = ToolContext(paths: ToolPaths(cache: stage, results: stage, resources: stage, stage: stage))
        let launcher = GuestLauncher(context: context, connection: try LibvirtConnection(uri: "test:///default"), staging: .files)
        for threads in [TCGThreads.single, .multi] {
            let spec = try launcher.stagedSpec(name: "shootdown-t", arch: .aarch64, accel: .tcg, paravirt: nil, vcpus: 4,
                                               memoryMiB: 512, tcgThreads: threads)
            #expect(QemuCommandLine.arguments(for: spec).contains("tcg,thread=single") == (threads == .single))
        }
        // The race templates say so; the counting one does not.
        let catalog = TemplateCatalog(resources: Repository.root)
        #expect(try ["gup-fast-unshare-race", "collapse-gup-fast-race", "gup-pin-unshare", "madv-collapse"].allSatisfy { try catalog.template(named: $0).manifest.races })
        #expect(try !catalog.template(named: "hugetlb-share-fork-exit").manifest.races)
    }

    @Test func rawQemuLineMirrorsTheDomain() {
        let line = QemuCommandLine.shellLine(for: Self.spec(.aarch64, .tcg, nil))
        GoldenFile.check(line + "\n", "qemu-aarch64-tcg.txt")
    }
}

/// Ctrl-C while libvirt is still creating a domain: the new domain must not outlive us.
@Suite struct ActiveDomainsTests {
    @Test func aDomainThatComesUpDuringAnInterruptionIsDestroyed() throws {
        let registry = ActiveDomains()
        let connection = try LibvirtConnection(uri: "test:///default")
        let xml = "<domain type='test'><name>shootdown-race-\(UUID().uuidString)</name><memory>1024</memory><os><type>hvm</type></os></domain>"
        #expect(registry.beginStart())
        let domain = try connection.startTransient(xml: xml)
        let stopped = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            registry.stopStarting()  // waits for the start in flight
            stopped.signal()
        }
        // Wait (not sleep) until the interruption has begun, however loaded the machine is.
        let deadline = Date().addingTimeInterval(30)
        while !registry.isInterrupted && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(registry.isInterrupted)
        #expect(stopped.wait(timeout: .now() + 0.2) == .timedOut, "the interruption must wait for the start in flight")
        registry.endStart(domain)
        #expect(stopped.wait(timeout: .now() + 5) == .success)
        #expect(!domain.isActive)
        #expect(!registry.beginStart())
        #expect(registry.names.isEmpty)
    }
}
