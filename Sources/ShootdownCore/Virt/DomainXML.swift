import XMLSupport

/// Builds libvirt domain XML for a `DomainSpec` as an XML tree serialised by libxml2.
public enum DomainXML {
    public static func document(for spec: DomainSpec) -> XMLElement {
        var domain = XMLElement("domain", [("type", spec.accel.domainType)])
        domain.append(XMLElement("name", text: spec.name))
        if let uuid = spec.uuid { domain.append(XMLElement("uuid", text: uuid)) }
        domain.append(XMLElement("memory", [("unit", "MiB")], text: String(spec.memoryMiB)))
        domain.append(XMLElement("vcpu", text: String(spec.vcpus)))
        if let owner = spec.owner {
            var metadata = XMLElement("metadata")
            metadata.append(XMLElement("shootdown:owner", [("xmlns:shootdown", GuestOwner.namespace)] + owner.attributes))
            domain.append(metadata)
        }

        var os = XMLElement("os")
        os.append(XMLElement("type", [("arch", spec.arch.rawValue), ("machine", spec.arch.machine)], text: "hvm"))
        os.append(XMLElement("kernel", text: spec.kernel))
        os.append(XMLElement("initrd", text: spec.initrd))
        os.append(XMLElement("cmdline", text: spec.commandLine))
        domain.append(os)

        domain.append(features(for: spec))
        domain.append(cpu(for: spec))
        domain.append(XMLElement("clock", [("offset", "utc")]))
        // A guest that stops for any reason is finished; transient domains then vanish.
        for event in ["on_poweroff", "on_reboot", "on_crash"] {
            domain.append(XMLElement(event, text: "destroy"))
        }

        var devices = XMLElement("devices")
        devices.append(XMLElement("emulator", text: spec.emulatorWrapper ?? spec.emulator))
        devices.append(XMLElement("controller", [("type", "usb"), ("model", "none")]))
        var serial = XMLElement("serial", [("type", "file")])
        serial.append(XMLElement("source", [("path", spec.consolePath)]))
        serial.append(XMLElement("target", [("port", "0")]))
        devices.append(serial)
        var channel = XMLElement("channel", [("type", "file")])
        channel.append(XMLElement("source", [("path", spec.resultPath)]))
        channel.append(XMLElement("target", [("type", "virtio"), ("name", DomainSpec.resultChannel)]))
        devices.append(channel)
        if let socket = spec.planSocketPath {
            var plan = XMLElement("channel", [("type", "unix")])
            plan.append(XMLElement("source", [("mode", "bind"), ("path", socket)]))
            plan.append(XMLElement("target", [("type", "virtio"), ("name", DomainSpec.planChannel)]))
            devices.append(plan)
        }
        devices.append(XMLElement("memballoon", [("model", "none")]))
        domain.append(devices)
        return domain
    }

    public static func render(_ spec: DomainSpec) throws -> String {
        try document(for: spec).serialized()
    }

    static func features(for spec: DomainSpec) -> XMLElement {
        var features = XMLElement("features")
        switch spec.arch {
        case .x86_64:
            // ACPI is how an x86 guest powers itself off.
            features.append(XMLElement("acpi"))
            if spec.accel == .kvm && spec.paravirt == .off {
                // A dedicated-vCPU hint makes the guest skip PV TLB flush and PV spinlocks;
                // pv-ipi off removes the PV IPI hypercall.
                var kvm = XMLElement("kvm")
                kvm.append(XMLElement("hint-dedicated", [("state", "on")]))
                kvm.append(XMLElement("pv-ipi", [("state", "off")]))
                features.append(kvm)
            }
        case .aarch64:
            // GICv3: GICv2 stops at 8 vCPUs.
            features.append(XMLElement("gic", [("version", "3")]))
        }
        return features
    }

    static func cpu(for spec: DomainSpec) -> XMLElement {
        let model = spec.cpuModel
        var cpu = XMLElement("cpu", [("mode", model.mode)] + (model.model == nil ? [] : [("match", "exact")]))
        if let name = model.model {
            cpu.append(XMLElement("model", [("fallback", "forbid")], text: name))
        }
        // One socket of N cores, as a plain `-smp N` gives. libvirt's default is N
        // one-core sockets, and cross-socket TSC/MTRR sync slows an x86 boot by ~1.3 s.
        // A NUMA guest: a socket per node (the planner makes vCPUs a multiple of nodes).
        let sockets = spec.numaSockets
        cpu.append(XMLElement("topology", [("sockets", String(sockets)), ("dies", "1"), ("cores", String(spec.vcpus / sockets)),
                                           ("threads", "1")]))
        if spec.numaNodes > 1 {
            var numa = XMLElement("numa")
            for (node, cell) in spec.numaCells.enumerated() {
                let cpus = cell.cpus.isEmpty ? [] : [("cpus", cell.cpus.count == 1 ? "\(cell.cpus.lowerBound)" : "\(cell.cpus.lowerBound)-\(cell.cpus.upperBound - 1)")]
                numa.append(XMLElement("cell", [("id", String(node))] + cpus + [("memory", String(cell.memoryMiB)), ("unit", "MiB")]))
            }
            cpu.append(numa)
        }
        return cpu
    }
}
