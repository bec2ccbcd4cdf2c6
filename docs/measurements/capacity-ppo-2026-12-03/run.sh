#!/bin/bash
# PPO (archbench train) on the capacity markets at CPU budgets: one line per run in results.jsonl.
# Usage, from the repository root: bash docs/measurements/capacity-ppo-2026-12-03/run.sh MARKET DIMS STEPS SEED
# e.g. ... run.sh capacity-w64 16 1000000 0   (one torch thread, 60,000 bars)
set -euo pipefail
here=$(dirname "$0")
market=$1 dims=$2 steps=$3 seed=$4
out=$(mktemp -d)
OMP_NUM_THREADS=1 archbench train --hidden-dims "$dims" --data "$market" --bars 60000 \
    --timesteps "$steps" --seed "$seed" --json --out "$out/model.pt" > "$out/run.json"
python - "$out/run.json" "$market" "$dims" "$steps" "$seed" >> "$here/results.jsonl" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
sharpe = {name: round(m["sharpe"], 3) for name, m in run["validation"].items()}
print(json.dumps({"market": sys.argv[2], "hidden_dims": sys.argv[3], "steps": int(sys.argv[4]),
                  "seed": int(sys.argv[5]), "validation_sharpe": sharpe,
                  "turnover": run["validation"]["policy"]["turnover"],
                  "train_explained_variance": run["last_iteration"]["explained_variance"],
                  "train_env_steps_per_s": run["last_iteration"]["train_env_steps_per_s"]}))
PY
rm -rf "$out"
