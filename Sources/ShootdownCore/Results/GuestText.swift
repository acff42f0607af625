/// Text that came from the guest (splat titles, TAP names, diagnostics, uname, interrupt
/// descriptions, the console tail) can hold terminal escape sequences, NULs or bidi
/// overrides. `VerdictBuilder.judge` passes every string of its verdict through
/// `visible`, so result.json and every report built from it carry the text with those
/// characters spelled out (ESC → `\x1b`); the terminal report applies it again to what
/// it prints, for results written before this rule.
public enum GuestText {
    /// Newlines and tabs stay; other C0 controls, DEL, C1 controls (U+0080–U+009F: U+009B is
    /// an 8-bit CSI to many terminals) and bidirectional overrides become `\xNN` or `\u{NNNN}`.
    /// Idempotent: the escapes are printable.
    public static func visible(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else {
                out.append(scalar)
                continue
            }
            let hex = String(scalar.value, radix: 16)
            let escape = scalar.value < 0x80 ? "\\x" + (hex.count < 2 ? "0" + hex : hex) : "\\u{\(hex)}"
            out.append(contentsOf: escape.unicodeScalars)
        }
        return String(out)
    }

    static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09, 0x0A: return false
        case 0x00...0x1F, 0x7F, 0x80...0x9F: return true
        case 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }

    /// A guest string quoted inside a host-written reason: visible, on one line, and at most
    /// `limit` characters, so a 4 MiB test id cannot become a 4 MiB reason.
    public static func excerpt(_ text: String, limit: Int = 80) -> String {
        let line = visible(text).replacingOccurrences(of: "\n", with: "\\x0a")
        return line.count <= limit ? line : String(line.prefix(limit)) + "…"
    }
}

extension Verdict {
    /// Every string of the verdict, visible (see GuestText). Host-written strings pass
    /// through unchanged, so one pass over the whole value is simpler than tracking origins.
    func visible() -> Verdict {
        let v = GuestText.visible
        var verdict = self
        verdict.reason = reason.map(v)
        verdict.checks = checks.map { check in
            Check(name: v(check.name), passed: check.passed, skipped: check.skipped, detail: check.detail.map(v), source: check.source)
        }
        if var counters {
            counters.operation = v(counters.operation)
            counters.ipis = counters.ipis.map { ipi in
                var ipi = ipi
                ipi.name = v(ipi.name)
                ipi.description = v(ipi.description)
                return ipi
            }
            counters.probes = counters.probes.map { probe in
                var probe = probe
                probe.symbol = v(probe.symbol)
                return probe
            }
            verdict.counters = counters
        }
        verdict.metrics = Dictionary(metrics.map { (v($0.key), v($0.value)) }, uniquingKeysWith: { first, _ in first })
        verdict.splats = splats.map { Splat(kind: v($0.kind), title: v($0.title), excerpt: v($0.excerpt)) }
        if var guest {
            guest.uname = v(guest.uname)
            guest.recordsChannel = guest.recordsChannel.map(v)
            guest.probes = guest.probes.map { ProbeRegistration(symbol: v($0.symbol), status: v($0.status), error: $0.error.map(v)) }
            verdict.guest = guest
        }
        verdict.consoleTail = consoleTail.map(v)
        return verdict
    }
}
