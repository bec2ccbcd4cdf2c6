"""tests/test_capacity_binds.py's probe (capacity-w64, 80,000 bars, market seed 0; 16 vs 128
units on the trace inputs; 45,000 and 5,000 training bars) on more seeds: one JSON line per
training length with (seed, validation R^2, validation Sharpe) per size.

Run from the repository root:
    python docs/measurements/capacity-binds-2026-12-04/probe_seeds.py THREADS 0,1,2,3,4,5
"""

import json
import sys
import time

import torch

from ppo_core.capacity_market import make_capacity_market
from ppo_core.capacity_probe import FitSettings, probe_market
from ppo_core.data import prepare

threads, seeds = int(sys.argv[1]), tuple(int(s) for s in sys.argv[2].split(","))
torch.set_num_threads(threads)
data = prepare(make_capacity_market(80_000, seed=0, complexity=64, wide=True))
fit = FitSettings(max_epochs=60, batch=2048, lr=5e-3)  # the test's
for length in (45_000, 5_000):
    started = time.process_time()
    results = probe_market(
        data, "traces", length, {"16 units": (16,), "128 units": (128,)}, seeds, fit
    )
    record = {
        "threads": threads,
        "length": length,
        "cpu_s": round(time.process_time() - started, 1),
    }
    for r in results:
        record.setdefault(r.size, []).append(
            (r.seed, round(r.r2_validation, 4), round(r.sharpe_validation, 3))
        )
    print(json.dumps(record), flush=True)
