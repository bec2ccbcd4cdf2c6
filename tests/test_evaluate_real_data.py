"""`archbench evaluate` on hourly FX says what its figures rest on: the cost and where it came
from, the period, bars per year, the trend and matched-turnover baselines, and a caveat when the
Sharpe's standard error exceeds 1; --json carries all of it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from archbench.cli.main import main

SMALL = ["--hidden-dims", "32,16", "--timesteps", "256", "--n-envs", "4", "--n-steps", "32"]


def _train(argv: list[str], out, capsys) -> dict:
    assert main(["train", *SMALL, *argv, "--device", "cpu", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    return {"summary": json.loads(captured.out), "err": captured.err}


@pytest.fixture(scope="module")
def eurusd(tmp_path_factory):
    pytest.importorskip("gym_anytrading", reason="the data extra is not installed")
    out = tmp_path_factory.mktemp("eurusd") / "model.pt"
    assert main(["train", *SMALL, "--data", "eurusd-1h", "--device", "cpu", "--out", str(out)]) == 0
    return out


def test_evaluate_on_hourly_fx_prints_cost_period_baselines_and_caveat(eurusd, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(eurusd), "--split", "test", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    out = " ".join(captured.out.split())  # the table wraps with the terminal's width
    assert "cost: 1 bp per unit of position change" in out
    assert "eurusd-1h's default" in out
    assert "period: 2017-" in out
    assert "bars per year" in out
    for name in ("trend", "random_matched", "buy_and_hold", "flat"):
        assert name in out
    assert "oracle" not in out  # real data plants no edge
    # 1,146 test bars of 6,281 a year: 10 weeks, so the Sharpe's error is ~2.3.
    assert "warning: the test split has" in captured.err
    assert "standard error is ~+-2." in captured.err


def test_evaluate_json_on_hourly_fx_carries_all_of_it(eurusd, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(eurusd), "--split", "test", "--device", "cpu", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["data"] == "eurusd-1h"
    assert summary["cost"]["bps"] == 1.0
    assert "eurusd-1h's default" in summary["cost"]["source"]
    assert summary["cost"]["warning"] is None
    assert summary["first_bar"].startswith("2017-")
    assert summary["last_bar"].startswith("2017-12")
    assert summary["bars_per_year"] == pytest.approx(6_281, abs=1)
    assert summary["years"] == pytest.approx(summary["n_bars"] / summary["bars_per_year"])
    assert summary["sharpe_standard_error"] > 1.0
    assert "standard error" in summary["caveat"]
    results = summary["results"]
    assert set(results) == {"policy", "flat", "buy_and_hold", "trend", "random_matched"}
    random = results["random_matched"]
    turnover = results["policy"]["turnover"]
    assert random["turnover"] == pytest.approx(turnover, abs=1.0 / summary["n_bars"])
    assert random["draws"] == 16
    assert set(summary["baselines"]) >= set(results) - {"policy"}


def test_evaluate_cost_bps_overrides_and_is_said(eurusd, capsys):
    capsys.readouterr()
    argv = ["evaluate", str(eurusd), "--split", "test", "--device", "cpu", "--json"]
    assert main([*argv, "--cost-bps", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cost"] == {"bps": 3.0, "source": "--cost-bps", "warning": None}
    assert main([*argv, "--cost-bps", "-1"]) == 2
    assert "--cost-bps -1" in capsys.readouterr().err


def _fx_file(path) -> None:
    """2,500 hourly EUR/USD-like bars on weekdays: 9 bp of noise a bar around 1.10."""
    stamps = pd.date_range("2024-01-01", periods=3_600, freq="h")
    stamps = stamps[stamps.day_of_week < 5][:2_500]
    rng = np.random.default_rng(0)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0.0, 9e-4, len(stamps))))
    opened = np.concatenate([[1.1], close[:-1]])
    spread = np.abs(rng.normal(0.0, 4e-4, len(stamps)))
    pd.DataFrame(
        {
            "timestamp": stamps,
            "open": opened,
            "high": np.maximum(opened, close) + spread,
            "low": np.minimum(opened, close) - spread,
            "close": close,
            "volume": rng.integers(100, 1_000, len(stamps)),
        }
    ).to_csv(path, index=False)


def test_a_file_without_cost_bps_is_warned_about_the_synthetic_default(tmp_path, capsys):
    data = tmp_path / "eurusd.csv"
    _fx_file(data)
    trained = _train(["--data", str(data)], tmp_path / "model.pt", capsys)
    assert "no --cost-bps, so the synthetic market's 30 bp is used" in trained["err"]
    context = trained["summary"]["validation_context"]
    assert context["cost"]["bps"] == 30.0
    assert "per-bar volatility" in context["cost"]["warning"]
    # Weekdays only: fewer bars a year than 24/7 hourly (8,766), as the data says.
    assert 6_000 < context["bars_per_year"] < 6_400
    # Told the cost: no warning, and evaluate keeps the cost it was trained at.
    told = _train(["--data", str(data), "--cost-bps", "1"], tmp_path / "told.pt", capsys)
    assert "no --cost-bps" not in told["err"]
    argv = ["evaluate", str(tmp_path / "told.pt"), "--split", "test", "--device", "cpu", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["cost"]["bps"] == 1.0
    assert summary["cost"]["source"].startswith("the cost")
    assert summary["cost"]["warning"] is None
