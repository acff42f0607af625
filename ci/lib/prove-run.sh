# Sourced by the proof scripts: one run of a test on one kernel of the proof tree, and a
# line per value of a parameter with PASS/FAIL/ERROR over the repeats and the figures.
#   prove_run LABEL REF ARCH TEST GROUP_PARAM METRICS PARAMS...
# needs $bin, $tree, $repeats and $results; METRICS is a comma list of result.json
# figures: probe symbols (per operation) or metric names.
prove_run() {
  local label=$1 ref=$2 arch=$3 test=$4 group=$5 metrics=$6; shift 6
  local params=()
  for p in "$@"; do params+=(--param "$p"); done
  "$bin" run --kernel "git:$tree@$ref" --arch "$arch" --test "$test" "${params[@]}" --repeats "$repeats" \
    --results "$results" --run-id "$label" --quiet >"$results/$label.log" 2>&1 || true
  python3 - "$results/$label" "$arch" "$ref" "$group" "$metrics" <<'PY'
import glob, json, sys
folder, arch, ref, group, metrics = sys.argv[1:6]
cells = [json.load(open(p)) for p in glob.glob(folder + "/*/result.json")]
if not cells:
    print(f"{arch} {ref}: no results (see {folder}.log)")
def figure(cell, name):
    probes = (cell.get("counters") or {}).get("probes") or []
    hit = next((p.get("per_op") for p in probes if p["symbol"] == name), None)
    value = hit if hit is not None else cell.get("metrics", {}).get(name)
    try:
        return round(float(value), 2)
    except (TypeError, ValueError):
        return value
for key in sorted({str(c["cell"]["parameters"].get(group, "-")) for c in cells}):
    mine = [c for c in cells if str(c["cell"]["parameters"].get(group, "-")) == key]
    count = lambda s: sum(c["status"] == s for c in mine)
    figures = "  ".join(f"{m} {sorted({str(figure(c, m)) for c in mine})}" for m in metrics.split(",") if m)
    print(f"{arch:<8} {ref:<16} {key:<14} PASS {count('PASS')}  FAIL {count('FAIL')}  ERROR {count('ERROR')}  of {len(mine)}  {figures}")
    for reason in sorted({c.get("reason") or "" for c in mine if c["status"] != "PASS"})[:1]:
        print(f"    {reason[:160]}")
PY
}
