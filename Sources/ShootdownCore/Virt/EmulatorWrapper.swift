import Foundation

/// The QEMU every guest runs through: settings libvirt has no XML for, and a lifetime
/// bound that outlives a killed run.
extension GuestLauncher {
    /// A wrapper around QEMU that appends to the `-accel` and `-cpu` values libvirt
    /// passes, for settings libvirt has no XML for, and kills QEMU when the guest's
    /// lifetime is over. Written only when it changes, since libvirt re-probes an
    /// emulator whose file changed. Returns its path on the host.
    func emulatorWrapper(for emulator: String, accelSuffix: String, cpuSuffix: String) throws -> String {
        let tag = ContentHash.of(accelSuffix, cpuSuffix).prefix(8)
        let name = "\(URL(fileURLWithPath: emulator).lastPathComponent)-\(tag)"
        let script = Self.wrapperScript(emulator: emulator, accelSuffix: accelSuffix, cpuSuffix: cpuSuffix)
        // Never touch an unchanged wrapper: a new ctime invalidates libvirt's capabilities
        // cache, and every domain start then re-probes QEMU (4 s instead of 0.3 s).
        if staging == .volumes {
            let volume = "bin-\(name)"
            if connection.downloadVolume(name: volume, limit: 1 << 16) == Data(script.utf8) {
                return try connection.ensurePool() + "/" + volume
            }
            return try connection.uploadVolume(name: volume, data: Data(script.utf8), mode: "0755")
        }
        let url = context.paths.stage.appendingPathComponent("bin/\(name)")
        if (try? String(contentsOf: url, encoding: .utf8)) != script {
            try FileManager.default.makeDirectory(url.deletingLastPathComponent(), mode: 0o755)
            try writeAtomically(script, to: url)
            chmod(url.path, 0o755)
        }
        return url.path
    }

    /// The lifetime is read from a `lifetime` file beside the kernel (seconds; the same
    /// wrapper serves every guest, so it cannot be in the script). A watcher forked before
    /// the exec polls QEMU (its parent once the shell has exec'd it) every 0.2 s, SIGKILLs
    /// it at the end, and exits once QEMU is gone, a zombie, or its pid belongs to a process
    /// started later, so a reused pid is not hit. It shares QEMU's cgroup, which libvirt
    /// removes after a destroy: with a 2 s poll the watcher kept the cgroup busy and every
    /// teardown took 1 s longer (libvirt retries the removal 5 times, 200 ms apart, then
    /// gives up).
    static func wrapperScript(emulator: String, accelSuffix: String, cpuSuffix: String) -> String {
        """
            #!/bin/sh
            # Written by shootdown: QEMU with settings libvirt cannot express:
            # -accel …\(accelSuffix)  -cpu …\(cpuSuffix)
            # and a hard lifetime, so a guest whose run was killed does not run forever.
            prev=
            kernel=
            for arg do
                shift
                case "$prev" in
                -accel) arg="$arg\(accelSuffix)" ;;
                -cpu) arg="$arg\(cpuSuffix)" ;;
                -kernel) kernel=$arg ;;
                esac
                set -- "$@" "$arg"
                prev=$arg
            done
            lifetime=
            if [ -n "$kernel" ] && [ -r "${kernel%kernel}lifetime" ]; then
                read -r lifetime < "${kernel%kernel}lifetime" || :
            fi
            case "$lifetime" in
            ''|*[!0-9]*) ;;
            *)
                qemu=$$
                (
                    # A zombie counts as gone: whoever reaps QEMU may be slow at it. So does
                    # another process under its pid (pids wrap at 32768 here): its start time
                    # (field 22 of stat) differs.
                    read -r line < "/proc/$qemu/stat" || exit 0
                    set -- $line
                    birth=${22}
                    ticks=$(( lifetime * 5 ))
                    while read -r line < "/proc/$qemu/stat"; do
                        set -- $line
                        [ "$3" != Z ] && [ "${22}" = "$birth" ] || exit 0
                        if [ "$ticks" -le 0 ]; then
                            kill -KILL "$qemu"
                            exit 0
                        fi
                        ticks=$(( ticks - 1 ))
                        sleep 0.2
                    done
                ) </dev/null >/dev/null 2>&1 &
                ;;
            esac
            exec \(shellQuoted(emulator)) "$@"

            """
    }
}
