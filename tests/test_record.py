"""The archbench/1 record: the optional per-bar `series` is written only when present."""

import json
import math

from archbench.instrument.record import Metric, Record


def test_series_is_written_only_when_present_and_rounded_to_6_digits():
    base = Record(suite="overfit", device="cpu", profile="quick", metrics={})
    assert "series" not in base.to_dict()
    with_series = Record(
        suite="overfit",
        device="cpu",
        profile="quick",
        metrics={"val_sharpe": Metric.measured(1.5, "ratio", "higher")},
        series={"val_net_returns": [0.0012345678, -1.23456789e-5, math.nan]},
    )
    out = with_series.to_dict()
    assert out["series"] == {"val_net_returns": [0.00123457, -1.23457e-05, None]}
    json.dumps(out, allow_nan=False)  # strict JSON: the NaN became null


def test_the_workload_identity_is_written_when_recorded():
    base = Record(suite="train", device="cpu", profile="quick")
    assert "workload" not in base.to_dict()  # older records: 'unknown' to the reports
    workload = {
        "observation": {"obs_dim": 5304},
        "gamma": 0.99,
        "commit": "abc",
        "torch_threads": 2,
    }
    out = base.replace(workload=workload).to_dict()
    assert out["workload"] == workload
    json.dumps(out, allow_nan=False)
