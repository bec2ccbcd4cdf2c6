#!/bin/bash
# The learning test's runs (tests/test_cli_train.py::test_the_default_workload_is_learned_and_
# needs_discounting), one JSON line per run in results.jsonl.
# Usage, from the repository root:
#   bash docs/measurements/learning-cpu-2026-12-04/run.sh SEED GAMMA THREADS [ISA] [STEPS]
# ISA: native (default: this CPU's widest kernels), avx2 (the kernels an AVX2-only x86 CPU such
# as an AMD EPYC before Zen 4 runs: torch's, MKL's and oneDNN's dispatch capped at AVX2) or sse42
# (capped at SSE4.2: torch's scalar 'default' kernels). Each cap changes the float rounding of
# every matmul and reduction, as another CPU model would.
set -euo pipefail
here=$(dirname "$0")
seed=$1 gamma=$2 threads=$3 isa=${4:-native} steps=${5:-100000}
case $isa in
    native) caps=() ;;
    avx2) caps=(ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2) ;;
    sse42) caps=(ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41) ;;
    *) echo "ISA must be native, avx2 or sse42, got $isa" >&2; exit 2 ;;
esac
out=$(mktemp -d)
start=$(date +%s)
env "${caps[@]}" OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" archbench train \
    --preset tiny --data synthetic --device cpu --seed "$seed" --gamma "$gamma" --timesteps "$steps" --json \
    --out "$out/model.pt" > "$out/run.json"
env "${caps[@]}" python - "$out/run.json" "$seed" "$gamma" "$threads" "$isa" "$steps" \
    "$(( $(date +%s) - start ))" >> "$here/results.jsonl" <<'PY'
import json, sys
import torch
run = json.load(open(sys.argv[1]))
v = run["validation"]
cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
print(json.dumps({"seed": int(sys.argv[2]), "gamma": float(sys.argv[3]), "threads": int(sys.argv[4]),
                  "isa": sys.argv[5], "steps": int(sys.argv[6]), "cpu": cpu,
                  "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                  "validation_sharpe": {k: round(m["sharpe"], 3) for k, m in v.items()},
                  "policy_log_return": v["policy"]["total_log_return"],
                  "oracle_log_return": v["oracle"]["total_log_return"],
                  "turnover": v["policy"]["turnover"], "seconds": int(sys.argv[7])}))
PY
rm -rf "$out"
