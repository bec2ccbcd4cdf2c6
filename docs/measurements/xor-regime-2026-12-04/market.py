"""A prototype market (not in the package): the old synthetic market's hidden trend regimes,
traced only in the correlation of two per-bar traces. The opening gap g_t and the wicks' log-ratio
w_t are unit normals in every state, w_t = rho s_t g_t + sqrt(1 - rho^2 s_t^2) e_t, so only
their product carries the regime s_t (no single input and no linear function of the window does).
The causal ceiling trades the forward filter of s_t (from the traces and the returns, given the
bars' true volatility).

Run from the repository root: python docs/measurements/xor-regime-2026-12-04/market.py RHO BARS
SEED SIGNAL REGIME_BARS -> one JSON line: oracle, causal ceiling and the simple rules (30 bp).
"""

import dataclasses
import json
import math
import sys

import numpy as np

from ppo_core import synthetic as syn
from ppo_core.market import YEAR_SECONDS, MarketData


def make_pairs(bars, seed, rho, signal=0.5, annual_vol=0.4, regime_bars=40, linear=False):
    from statistics import NormalDist

    # A prototype: the regime length is set by patching the synthetic module's chain.
    syn._TREND_SWITCH_QUANTILE = NormalDist().inv_cdf(1 - 1 / regime_bars)
    syn.TREND_MEAN_BARS = regime_bars
    rng = np.random.default_rng([0x9A125, seed])
    n = rng.standard_normal((bars, 17))
    base = annual_vol * math.sqrt(3600 / YEAR_SECONDS)
    ret, sigma, trend = syn._garch_with_trends(n[:, :14], base, signal)
    g, e = n[:, 14], n[:, 15]
    s = trend.astype(float)
    # The control (linear) puts the same trace strength in the wick ratio alone.
    w = rho * s * (1.0 if linear else g) + np.sqrt(1 - rho**2 * s**2) * e
    close = 100.0 * np.exp(np.cumsum(ret))
    open_ = np.empty(bars)
    open_[0] = close[0]
    open_[1:] = close[:-1] * np.exp(0.3 * base * g[1:])
    wicks = sigma * np.exp(0.25 * n[:, 16])
    upper = wicks / (1 + np.exp(-2 * 0.3 * w))
    high = np.maximum(open_, close) * np.exp(upper)
    low = np.minimum(open_, close) * np.exp(-(wicks - upper))
    volume = 1e6 * np.exp(0.8 * np.log(sigma / base) + 0.25 * n[:, 13])
    ts = np.datetime64("2020-01-01T00:00:00", "ns") + np.arange(bars) * np.timedelta64(
        3600 * 10**9, "ns"
    )
    expected = np.zeros(bars)
    expected[:-1] = signal * s[:-1] * base
    market = MarketData(
        name=f"pairs-{rho}",
        timestamps=ts,
        ohlcv=np.column_stack([open_, high, low, close, volume]),
        bar_seconds=3600.0,
        source="proto",
        expected_return=expected,
    )
    return market, filtered(g, w, ret, sigma, rho, signal, base)


def filtered(g, w, ret, sigma, rho, signal, base):
    from scipy.stats import t as student

    levels = np.array([-1.0, 0.0, 1.0])
    p_stay = 1 - 1 / syn.TREND_MEAN_BARS
    T = np.full((3, 3), (1 - p_stay) / 2)
    np.fill_diagonal(T, p_stay)
    var = 1 - rho**2 * levels**2
    post = np.array([0.0, 1.0, 0.0])
    out = np.zeros(len(g))
    scale = np.sqrt(3 / 5)
    for t in range(len(g)):
        if t:
            lik = student.pdf((ret[t] - signal * base * levels) / (sigma[t] * scale), 5)
            post = post * lik
            post /= post.sum()
        if t:
            post = post @ T
        lik = np.exp(-0.5 * (w[t] - rho * levels * g[t]) ** 2 / var) / np.sqrt(var)
        post = post * lik
        post /= post.sum()
        out[t] = signal * base * (post[2] - post[0])
    out[-1] = 0
    return out


if __name__ == "__main__":
    from ppo_core import ceiling, rules
    from ppo_core.data import prepare

    rho = float(sys.argv[1])
    bars = int(sys.argv[2])
    seed = int(sys.argv[3])
    sig = float(sys.argv[4])
    rb = int(sys.argv[5])
    market, filt = make_pairs(bars, seed, rho, sig, regime_bars=rb)
    data = prepare(market)
    cost = 30.0
    res = {"rho": rho, "bars": bars, "seed": seed, "signal": sig, "regime": rb}
    res["oracle"] = ceiling.oracle(data, cost).result.sharpe
    causal = prepare(dataclasses.replace(market, expected_return=filt))
    res["ceiling"] = ceiling.causal_ceiling(causal, cost).result.sharpe
    for f in (rules.one_bar_rule, rules.trend_rule, rules.linear_window):
        r = f(data, cost)
        res[r.name] = r.result.sharpe
    print(
        json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in res.items()}),
        flush=True,
    )
