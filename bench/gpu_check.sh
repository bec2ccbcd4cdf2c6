#!/usr/bin/env bash
# Issue 15 on a GPU, in one short run (< 6 min on an H100: the three steps are capped at
# 60 + 130 + 165 s; expected ~30 + ~110 + ~140 s): the gpu tests, the quick CUDA sweep,
# and the full-profile cases that check the issue's targets side by side. Everything lands in
# "$OUT" (default ./gpu_out); a summary of the targets is printed and kept in summary.txt.
#
# Environment: OUT (output folder), GPU_CHECK_INSTALL (install command; default: an editable
# install without dependencies), PYTHONPATH (passed through: where plotly lives), PYTHON.
set -uo pipefail

OUT="${OUT:-./gpu_out}"
PYTHON="${PYTHON:-python}"
mkdir -p "$OUT"
eval "${GPU_CHECK_INSTALL:-$PYTHON -m pip install -q --no-deps --no-build-isolation -e .}" \
    >"$OUT/install.log" 2>&1 || { echo "install failed; see $OUT/install.log"; exit 1; }
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true
start=$SECONDS
step() { echo "[$((SECONDS - start)) s] $*"; }

# 1. Every gpu-marked test: captured update == eager, cuda_graph agreement, tf32/bf16 training,
#    NVML and allocator paths (about 30 s).
step "pytest -m gpu tests/"
timeout 60 "$PYTHON" -m pytest -m gpu tests/ -q -p no:cacheprovider \
    >"$OUT/gpu_tests.log" 2>&1
echo "gpu tests exit $?: $(tail -n 1 "$OUT/gpu_tests.log")"

# 2. The targets at the full profile's settings, one pytest session (one ceiling measurement):
#    - update at minibatch 4096 (the iteration case) for large/xlarge in tf32 and bf16, against
#      the matching ceiling (update_ceiling_fraction);
#    - whole-iteration tiny/small: fp32 eager (the figure before this issue), tf32 eager and
#      tf32 captured (train_env_steps_per_s);
#    - batch-1 end-to-end decision p50/p99 for medium/large, eager and cuda_graph, 200 rounds;
#    - raw memory prediction vs the allocator peak at the full settings for tiny and xlarge
#      (the quick settings come from the sweep below). About 2 min.
TRAIN="test_train_throughput and not large_minibatch and ((tiny or small) and not bf16 \
or large and (tf32-eager or bf16))"
INFER="test_inference_latency and batch1 and not batch1024 and (medium or large) \
and not xlarge and (eager or cuda_graph)"
MEMORY="test_memory and (tiny or xlarge)"
step "targets: archbench sweep --profile full (selected cases)"
timeout 130 archbench sweep --profile full --device cuda --presets all \
    --out "$OUT/targets" --no-report -- -k "($TRAIN) or ($INFER) or ($MEMORY)" \
    >"$OUT/targets.log" 2>&1
echo "targets exit $?"

# 3. The quick profile on the GPU, with its report (about 2.5 min).
step "archbench sweep --profile quick --device cuda"
timeout 165 archbench sweep --profile quick --device cuda --out "$OUT" \
    >"$OUT/sweep_quick.log" 2>&1
echo "quick sweep exit $?"

step "summary"
"$PYTHON" - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
"""The issue's targets from every record the runs above streamed (partial runs included)."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
records = []
for path in sorted(out.rglob("*.jsonl")):
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "case" and event.get("record"):
            records.append((path.parent.name, event["record"]))


def value(record, name):
    metric = record["metrics"].get(name) or {}
    return metric.get("value")


def fmt(x, scale=1.0, spec=".3g"):
    return "-" if x is None else format(x * scale, spec)


print("train (whole iteration; update fraction of the SAME precision's ceiling)")
for where, r in records:
    if r["suite"] == "train" and r["case"].get("kind") == "iteration":
        print(
            f"  {where:8} {r['preset']:7} {r['precision']:5} {str(r['case'].get('update')):9}"
            f" mb {r['case']['minibatch']:5}  train_env_steps/s {fmt(value(r, 'train_env_steps_per_s'))}"
            f"  rollout {fmt(value(r, 'rollout_env_steps_per_s'))}"
            f"  update samples/s {fmt(value(r, 'update_samples_per_s'))}"
            f"  update/ceiling {fmt(value(r, 'update_ceiling_fraction'), 1, '.2f')}"
        )
print("infer batch 1 (us): device p50 / e2e p50 / e2e p99")
for where, r in records:
    if r["suite"] == "infer" and r["case"].get("batch") == 1:
        why = r["metrics"]["latency_p50_s"].get("unavailable")
        print(
            f"  {where:8} {r['preset']:7} {r['case']['backend']:10}"
            f" {fmt(value(r, 'latency_p50_s'), 1e6, '.0f')} /"
            f" {fmt(value(r, 'e2e_latency_p50_s'), 1e6, '.0f')} /"
            f" {fmt(value(r, 'e2e_latency_p99_s'), 1e6, '.0f')}" + (f"  ({why})" if why else "")
        )
print("memory: allocator peak vs raw prediction ((measured - predicted) / predicted)")
for where, r in records:
    if r["suite"] == "memory":
        print(
            f"  {where:8} {r['preset']:7} n_envs {r['case']['n_envs']:5}"
            f" allocated {fmt(value(r, 'torch_allocated_bytes'), 1e-6, '.0f')} MB"
            f" predicted {fmt(r['predicted'].get('train_bytes'), 1e-6, '.0f')} MB"
            f" error {fmt(value(r, 'memory_error_pct'), 1, '+.1f')}%"
            f" peak at {r['case'].get('peak_phase')}"
            f" context {fmt(value(r, 'cuda_context_bytes'), 1e-6, '.0f')} MB"
        )
EOF
step "done; everything is in $OUT"
