"""The capacity market, its two references and the simple rules beside them; and, for the
record, the old default market's flaw that made them necessary (issue 22).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ppo_core import capacity_market as cm
from ppo_core.ceiling import Hysteresis, causal_ceiling, expected_pnl, fit_hysteresis, oracle
from ppo_core.data import prepare
from ppo_core.env import evaluate_positions
from ppo_core.errors import ConfigError, DataError
from ppo_core.loaders import is_generated, load_market_data
from ppo_core.market import YEAR_SECONDS
from ppo_core.rules import linear_window, one_bar_rule, trend_rule
from ppo_core.synthetic import make_synthetic

COST_BPS = 30.0
"""The env's default cost, which the suites judge at."""


@pytest.fixture(scope="module", params=[2, 8], ids=["knob2", "knob8"])
def capacity_data(request):
    """40,000 bars (7,800 validation bars: a Sharpe to about +-1) of the default knob and 8."""
    return prepare(cm.make_capacity_market(40_000, seed=1, complexity=request.param))


# ------------------------------------------------------------------------------ the market


def test_capacity_market_bars_are_valid_ohlcv_and_hourly():
    market = cm.make_capacity_market(3_000, seed=2, complexity=4)
    assert market.name == "capacity-4"
    o, h, lo, c, v = market.ohlcv.T
    assert (h >= np.maximum(o, c)).all()
    assert (lo <= np.minimum(o, c)).all()
    assert (lo > 0).all()
    assert (v > 0).all()
    assert market.periods_per_year == pytest.approx(365.25 * 24)
    assert market.expected_return[-1] == 0.0
    assert (market.expected_return[: cm.TEACHER_LAGS - 1] == 0).all()


def test_capacity_market_is_seeded_and_prefix_stable():
    short = cm.make_capacity_market(2_000, seed=3, complexity=8)
    long = cm.make_capacity_market(5_000, seed=3, complexity=8)
    assert np.array_equal(long.ohlcv[:2_000], short.ohlcv)
    # The edge of the last short bar is planted there too (the long market's next return).
    assert np.array_equal(long.expected_return[:1_999], short.expected_return[:1_999])
    assert not np.array_equal(cm.make_capacity_market(2_000, seed=4).ohlcv, short.ohlcv)
    other_knob = cm.make_capacity_market(2_000, seed=3, complexity=32)
    assert np.array_equal(other_knob.ohlcv[:, 4], short.ohlcv[:, 4])  # same traces
    assert not np.allclose(other_knob.expected_return, short.expected_return)


def test_a_smaller_knob_is_the_first_patterns_of_a_larger_one():
    small, _ = cm._teacher(seed=5, complexity=3)
    large, _ = cm._teacher(seed=5, complexity=12)
    assert np.array_equal(large[:3], small)


def test_the_wide_family_is_seeded_prefix_stable_and_reads_a_48_direction_span():
    short = cm.make_capacity_market(2_000, seed=3, complexity=8, wide=True)
    long = cm.make_capacity_market(5_000, seed=3, complexity=8, wide=True)
    assert short.name == "capacity-w8"
    assert np.array_equal(long.ohlcv[:2_000], short.ohlcv)
    assert np.array_equal(long.expected_return[:1_999], short.expected_return[:1_999])
    narrow = cm.make_capacity_market(2_000, seed=3, complexity=8)
    assert np.array_equal(narrow.ohlcv[:, 4], short.ohlcv[:, 4])  # same traces, other teacher
    assert not np.allclose(narrow.expected_return, short.expected_return)
    small, _ = cm._teacher(seed=5, complexity=3, wide=True)
    large, _ = cm._teacher(seed=5, complexity=64, wide=True)
    assert np.array_equal(large[:3], small)
    # What a first layer must project onto: 48 directions of the window here, 12 in the
    # narrow family however many patterns it has.
    assert np.linalg.matrix_rank(large.reshape(64, -1)) == 3 * cm.WIDE_TEACHER_BASIS == 48
    narrow_large, _ = cm._teacher(seed=5, complexity=64)
    assert np.linalg.matrix_rank(narrow_large.reshape(64, -1)) == 12


def test_the_wide_edge_has_its_planted_size():
    market = cm.make_capacity_market(30_000, seed=7, complexity=64, wide=True)
    edge = market.expected_return[cm.TEACHER_LAGS : -1]
    base = cm.CAPACITY_ANNUAL_VOL * math.sqrt(3600 / YEAR_SECONDS)
    assert edge.std() / base == pytest.approx(cm.WIDE_SIGNAL_STRENGTH, rel=0.15)
    assert np.corrcoef(edge[:-1], edge[1:])[0, 1] > 0.8  # holds for a few bars


def test_the_edge_is_the_teacher_of_traces_read_back_from_the_bars():
    """mu_t is a function of bars 0..t: recover the traces from OHLCV alone, apply the
    teacher, and get the planted edge back. This is what makes the causal ceiling exact."""
    market = cm.make_capacity_market(4_000, seed=6, complexity=8)
    o, h, lo, c, v = market.ohlcv.T
    base = cm.CAPACITY_ANNUAL_VOL * math.sqrt(3600 / YEAR_SECONDS)
    traces = np.zeros((len(c), 3))
    traces[1:, 0] = np.log(o[1:] / c[:-1]) / (cm._GAP_SCALE * base)
    traces[:, 1] = np.log(v / 1e6) / cm._VOLUME_SCALE
    upper, lower = np.log(h / np.maximum(o, c)), np.log(np.minimum(o, c) / lo)
    traces[:, 2] = np.log(upper / lower) / (2 * cm._WICK_SCALE)
    rebuilt = cm.CAPACITY_SIGNAL_STRENGTH * base * cm.causal_edge(traces, seed=6, complexity=8)
    # Bar 0 has no gap; the first full window starts at bar 1 + TEACHER_LAGS - 1.
    tail = slice(cm.TEACHER_LAGS, -1)
    np.testing.assert_allclose(rebuilt[tail], market.expected_return[tail], rtol=1e-6, atol=1e-12)


def test_the_edge_has_its_planted_size_and_lasts_tens_of_bars():
    market = cm.make_capacity_market(30_000, seed=7, complexity=8)
    edge = market.expected_return[cm.TEACHER_LAGS : -1]
    base = cm.CAPACITY_ANNUAL_VOL * math.sqrt(3600 / YEAR_SECONDS)
    assert edge.std() / base == pytest.approx(cm.CAPACITY_SIGNAL_STRENGTH, rel=0.15)
    assert abs(edge.mean()) / edge.std() < 0.1
    lag_5 = np.corrcoef(edge[:-5], edge[5:])[0, 1]
    assert lag_5 > 0.5  # holdable for several bars: a round trip's cost can be paid


def test_no_single_feature_at_the_bar_tracks_the_edge(capacity_data):
    start, end = capacity_data.splits.train
    edge = capacity_data.market.expected_return[start:end]
    features = capacity_data.features[start:end].astype(np.float64)
    corr = [abs(np.corrcoef(features[:, j], edge)[0, 1]) for j in range(features.shape[1])]
    assert max(corr) < 0.35, dict(zip(capacity_data.feature_names, np.round(corr, 2), strict=True))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"bars": 1}, "bars"),
        ({"bars": True}, "bars"),
        ({"complexity": 0}, "complexity"),
        ({"complexity": 2.0}, "complexity"),
        ({"complexity": 5000}, "complexity"),
        ({"signal_strength": -0.1}, "signal_strength"),
        ({"signal_strength": math.nan}, "signal_strength"),
        ({"annual_vol": 0.0}, "annual_vol"),
    ],
)
def test_capacity_market_rejects_bad_arguments(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        cm.make_capacity_market(**{"bars": 1_000, **kwargs})


def test_the_capacity_market_is_a_named_dataset():
    market = load_market_data("capacity-4", bars=3_000, seed=2)
    assert np.array_equal(market.ohlcv, cm.make_capacity_market(3_000, 2, 4).ohlcv)
    assert market.origin == {
        "spec": "capacity-4",
        "bars": 3_000,
        "seed": 2,
        "signal_strength": cm.CAPACITY_SIGNAL_STRENGTH,
    }
    default = load_market_data("Capacity", bars=1_000)
    assert default.name == f"capacity-{cm.CAPACITY_DEFAULT_COMPLEXITY}"
    assert default.origin["spec"] == default.name  # one spelling rebuilds the same bars
    rebuilt = load_market_data(**default.origin)
    assert rebuilt.content_hash() == default.content_hash()
    stronger = load_market_data("capacity-4", bars=3_000, seed=2, signal_strength=0.6)
    assert stronger.origin["signal_strength"] == 0.6
    assert [is_generated(name) for name in ("capacity-16", "synthetic", "sp500", "capacity-x")] == [
        True,
        True,
        False,
        False,
    ]
    wide = load_market_data("capacity-W16", bars=3_000, seed=2)
    assert np.array_equal(wide.ohlcv, cm.make_capacity_market(3_000, 2, 16, wide=True).ohlcv)
    assert wide.origin["spec"] == "capacity-w16"
    assert wide.origin["signal_strength"] == cm.WIDE_SIGNAL_STRENGTH
    assert cm.parse_capacity_spec("capacity-w16") == cm.CapacityKnob(16, wide=True)
    with pytest.raises(ConfigError, match="complexity"):
        load_market_data("capacity-0", bars=1_000)
    with pytest.raises(DataError, match="capacity-K"):
        load_market_data("capacity-x")


def test_the_old_market_keeps_its_own_default_signal():
    market = load_market_data("synthetic", bars=1_000, seed=3)
    assert market.origin["signal_strength"] == 0.5
    assert np.array_equal(market.ohlcv, make_synthetic(1_000, seed=3).ohlcv)


# ---------------------------------------------------------------------- rules and references


def _hysteresis_loop(score, enter, leave):
    """The rule as a trader writes it, one bar at a time."""
    position, out = 0.0, []
    for value in score:
        if abs(value) > enter:
            position = math.copysign(1.0, value)
        elif abs(value) < leave:
            position = 0.0
        out.append(position)
    return np.array(out)


@pytest.mark.parametrize(("enter", "leave"), [(0.0, 0.0), (1.0, 0.0), (1.0, 0.5), (0.7, 0.7)])
def test_hysteresis_matches_a_plain_loop(enter, leave):
    score = np.random.default_rng(0).standard_normal(500)
    expected = _hysteresis_loop(score, enter, leave)
    np.testing.assert_array_equal(Hysteresis(enter, leave).positions(score), expected)
    np.testing.assert_array_equal(Hysteresis(enter, leave, -1.0).positions(score), -expected)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"enter": -1.0, "leave": 0.0}, "enter"),
        ({"enter": 1.0, "leave": 2.0}, "leave"),
        ({"enter": 1.0, "leave": 0.5, "sign": 0.0}, "sign"),
    ],
)
def test_hysteresis_refuses_bad_thresholds(kwargs, field):
    with pytest.raises(ConfigError, match=f"Hysteresis.{field}"):
        Hysteresis(**kwargs)


def test_fit_hysteresis_refuses_mismatched_inputs():
    with pytest.raises(DataError, match="matching"):
        fit_hysteresis(np.zeros(10), np.zeros(9), COST_BPS)


def test_the_oracle_bounds_the_causal_ceiling_in_expected_pnl(capacity_data):
    """The oracle maximises the expected P&L over the split exactly, so no causal policy beats
    it there; the ceiling must still earn most of it."""
    start, end = capacity_data.splits.validation
    edge = capacity_data.market.expected_return[start:end]
    upper = expected_pnl(oracle(capacity_data, COST_BPS).positions, edge, COST_BPS)
    ceiling = expected_pnl(causal_ceiling(capacity_data, COST_BPS).positions, edge, COST_BPS)
    assert 0.5 * upper < ceiling <= upper


def test_simple_rules_stay_under_half_the_causal_ceiling(capacity_data):
    """Issue 22: on the capacity market no one-bar rule, trend rule or linear policy on the
    window earns half the causal ceiling's validation Sharpe (all fitted on train)."""
    ceiling = causal_ceiling(capacity_data, COST_BPS).result.sharpe
    assert ceiling > 4.0  # a validation Sharpe's standard error here is about 1
    rules = [
        one_bar_rule(capacity_data, COST_BPS),
        trend_rule(capacity_data, COST_BPS),
        linear_window(capacity_data, COST_BPS, block=10),
    ]
    sharpes = {rule.name: round(rule.result.sharpe, 2) for rule in rules}
    assert max(sharpes.values()) < 0.5 * ceiling, (ceiling, sharpes)


def test_the_references_need_a_planted_edge():
    market = make_synthetic(3_000, seed=0)
    real = prepare(dataclasses.replace(market, expected_return=None))
    with pytest.raises(DataError, match="no planted edge"):
        causal_ceiling(real, COST_BPS)


def _gap_rule(data, split):
    """Issue 22's two-line rule: take sign(gap) when |gap| > 0.25 x the 20-bar volatility,
    else keep the position (raw features, read from the bars)."""
    start, end = data.splits.range(split)
    o, c = data.market.ohlcv[:, 0], data.market.ohlcv[:, 3]
    gap = np.zeros(len(c))
    gap[1:] = np.log(o[1:] / c[:-1])
    ret = np.diff(np.log(c), prepend=np.log(c[0]))
    vol = np.array([ret[max(t - 19, 1) : t + 1].std(ddof=1) for t in range(start, end)])
    return Hysteresis(enter=0.0, leave=0.0).positions(
        np.where(np.abs(gap[start:end]) > 0.25 * vol, gap[start:end], 0.0)
    )


def test_on_the_old_market_a_one_bar_gap_rule_matches_the_oracle():
    """The bug issue 22 documents: the old default market's opening gap is a 10:1 trace of
    its regime, so reading one input at lag 0 does as well as the planted-edge oracle."""
    data = prepare(make_synthetic(30_000, seed=3))
    rule = evaluate_positions(_gap_rule(data, "validation"), data, "validation", COST_BPS)
    upper = oracle(data, COST_BPS).result
    assert rule.sharpe > 0.9 * upper.sharpe, (rule.sharpe, upper.sharpe)


# ------------------------------------------------------------------------- the capacity probe


def test_the_capacity_probe_fits_every_size_on_the_trace_window():
    from ppo_core.capacity_probe import PROBE_SIZES, TRACE_FEATURES, FitSettings, run_probe

    seen = []
    results = run_probe(
        complexities=(2,),
        bars=4_000,
        train_lengths=(600,),
        seeds=(0,),
        fit=FitSettings(max_epochs=1),
        inputs=("traces",),
        on_fit=seen.append,
    )
    assert seen == results
    assert [r.size for r in results] == list(PROBE_SIZES)
    assert PROBE_SIZES["tiny"] == (16, 8, 4)
    n_inputs = len(TRACE_FEATURES) * 25  # 100 lags in blocks of 4
    assert results[0].params == n_inputs + 1  # the linear model
    for r in results:
        assert r.market == "capacity-2"
        assert r.train_bars == 600
        assert r.epochs == 1
        assert -np.inf < r.r2_validation <= 1.0
        assert math.isfinite(r.sharpe_validation)


def test_the_capacity_probe_takes_the_wide_knob_and_custom_widths_by_name(capsys):
    import torch

    from ppo_core.capacity_probe import main

    argv = ["--complexities", "--markets", "capacity-w8", "--bars", "4000", "--sizes", "16"]
    argv += ["--train-lengths", "600", "--seeds", "0", "--max-epochs", "1"]
    threads = torch.get_num_threads()
    assert main([*argv, "--inputs", "traces", "--threads", str(threads)]) == 0
    out = capsys.readouterr().out
    assert "| traces | capacity-w8 | 600 |" in out
    assert "| 16 |" in out  # the size is named by its widths
    assert "Sharpe" in out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_lengths": (10**6,)}, "train length"),
        ({"inputs": ("pixels",)}, "inputs"),
        ({"markets": ("synthetic",)}, "capacity-K or capacity-wK"),
    ],
)
def test_the_capacity_probe_refuses_bad_settings(kwargs, message):
    from ppo_core.capacity_probe import FitSettings, run_probe

    with pytest.raises(ConfigError, match=message):
        run_probe(**{"complexities": (2,), "bars": 4_000, "fit": FitSettings(1), **kwargs})


@pytest.mark.parametrize(
    "argv", [["--batch", "0"], ["--markets", "synthetic"]], ids=["batch", "market"]
)
def test_the_probe_cli_refuses_bad_settings_in_one_line(argv, capsys):
    from ppo_core.capacity_probe import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "FitSettings.batch" in err or "capacity-K or capacity-wK" in err


@pytest.mark.parametrize(("field", "value"), [("max_epochs", 0), ("batch", 1.5), ("lr", 2.0)])
def test_probe_fit_settings_name_the_bad_field(field, value):
    from ppo_core.capacity_probe import FitSettings

    with pytest.raises(ConfigError, match=f"FitSettings.{field}"):
        FitSettings(**{field: value})
