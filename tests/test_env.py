"""TradingEnv and evaluation checked against plain Python loops: rewards, costs, episode ends,
auto-resets, observation windows, Sharpe, drawdown and the baselines.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from ppo_core.config import EnvConfig, NetworkConfig
from ppo_core.data import prepare
from ppo_core.env import (
    EvalResult,
    TradingEnv,
    baselines,
    evaluate_policy,
    evaluate_positions,
    policy_positions,
)
from ppo_core.errors import ConfigError
from ppo_core.synthetic import make_synthetic

LOOKBACK = 20
MARKET = 53 * LOOKBACK  # 1,060 market inputs; + 3 account inputs = 1,063, padded to 1,064
GAIN = math.sqrt(MARKET)  # each account input weighs as much as the whole market window


@pytest.fixture(scope="module")
def data():
    return prepare(make_synthetic(1500, seed=11), lookback=LOOKBACK)


def _window(
    data, t: int, account=(0.0, 0.0, 0.0), width: int = 1064, gain: float = GAIN
) -> np.ndarray:
    """The observation of bar t built the slow way, bar-major, then the account state times
    `gain` (None: none), then zeros up to `width` inputs."""
    rows = [data.features[t - LOOKBACK + 1 + k] for k in range(LOOKBACK)]
    state = [] if account is None else [np.asarray(account, np.float32) * np.float32(gain)]
    unpadded = np.concatenate([*rows, *state])
    return np.concatenate([unpadded, np.zeros(width - len(unpadded), dtype=np.float32)])


def _account(data, t: int, position: int, entry: int) -> tuple:
    """Position, tanh of the unrealised log return since entry over 4 x the RMS log return of
    the 50 bars before t x sqrt(bars held), and log1p(bars held) / log1p(256) capped at 1: the
    bounded account inputs, the slow way."""
    if position == 0:
        return (0.0, 0.0, 0.0)
    unrealised = position * data.log_returns[entry:t].sum()
    recent = data.log_returns[max(0, t - 50) : t]
    volatility = math.sqrt(sum(r * r for r in recent) / len(recent))
    z = unrealised / (4.0 * volatility * math.sqrt(t - entry))
    return (float(position), math.tanh(z), min(1.0, math.log1p(t - entry) / math.log1p(256)))


def test_reset_shapes_dtypes_and_starts(data):
    env = TradingEnv(data, "train", n_envs=16, seed=1)
    obs = env.reset()
    assert obs.shape == (16, 1064) == (16, env.obs_dim)  # 1,060 + 3 account + 1 zero
    assert obs.dtype == torch.float32
    assert env.bar_index.dtype == torch.long
    start, end = data.splits.train
    assert ((env.bar_index >= start) & (env.bar_index <= end - env.config.episode_bars)).all()
    assert env.features.shape == (1500, 53)
    for i in range(3):
        assert np.array_equal(obs[i].numpy(), _window(data, int(env.bar_index[i])))


def test_step_matches_a_plain_python_loop(data):
    config = EnvConfig(episode_bars=7, cost_bps=2.5, reward_scale=10.0)
    n_envs = 5
    env = TradingEnv(data, "validation", n_envs=n_envs, config=config, seed=3)
    obs = env.reset()
    split_start, split_end = data.splits.validation
    # Reference state per env, in plain Python.
    bar = [int(b) for b in env.bar_index]
    start, prev, equity, trades = list(bar), [0] * n_envs, [0.0] * n_envs, [0] * n_envs
    entry = list(bar)
    rng = np.random.default_rng(0)
    n_done = 0
    for _ in range(40):
        actions = rng.integers(0, 3, size=n_envs)
        obs, reward, done, info = env.step(torch.as_tensor(actions))
        assert reward.dtype == torch.float32
        assert done.dtype == torch.bool
        assert info["final_bar_index"].dtype == torch.long
        for i in range(n_envs):
            position = int(actions[i]) - 1
            cost = 2.5e-4 * abs(position - prev[i])
            net = position * data.log_returns[bar[i]] - cost
            assert float(reward[i]) == pytest.approx(10.0 * net, rel=1e-5, abs=1e-7)
            equity[i] += net
            trades[i] += position != prev[i]
            if position != prev[i]:
                entry[i] = bar[i]
            assert float(info["equity"][i]) == pytest.approx(equity[i], abs=1e-12)
            assert int(info["trades"][i]) == trades[i]
            assert int(info["position"][i]) == position
            next_bar = bar[i] + 1
            assert int(info["final_bar_index"][i]) == next_bar
            np.testing.assert_allclose(
                info["final_account"][i].numpy(),
                _account(data, next_bar, position, entry[i]),
                rtol=1e-5,
                atol=1e-6,
            )
            ended = next_bar - start[i] >= 7 or next_bar >= split_end
            assert bool(done[i]) == ended
            if ended:
                n_done += 1
                bar[i] = start[i] = int(env.bar_index[i])  # the new random start
                assert split_start <= bar[i] <= split_end - 7
                prev[i], equity[i], trades[i], entry[i] = 0, 0.0, 0, bar[i]
            else:
                bar[i], prev[i] = next_bar, position
            assert int(env.bar_index[i]) == bar[i]
            account = _account(data, bar[i], prev[i], entry[i])
            np.testing.assert_allclose(
                obs[i].numpy(), _window(data, bar[i], account), rtol=1e-5, atol=1e-6
            )
    assert n_done >= 20  # auto-resets were exercised


def test_observe_is_exactly_what_step_returns(data):
    env = TradingEnv(data, "train", n_envs=32, config=EnvConfig(episode_bars=3), seed=5)
    obs = env.reset()
    assert torch.equal(env.observe(env.bar_index), obs)  # flat at the start: zero account
    for _ in range(5):
        obs, _reward, _done, info = env.step(torch.randint(0, 3, (32,)))
        assert torch.equal(env.observe(env.bar_index, env.current_account()), obs)
        final = env.observe(info["final_bar_index"], info["final_account"])
        for i in range(32):
            bar, account = int(info["final_bar_index"][i]), info["final_account"][i].numpy()
            assert np.array_equal(final[i].numpy(), _window(data, bar, account))
    with pytest.raises(IndexError, match="bar_index must lie in"):
        env.observe(torch.tensor([LOOKBACK - 2]))


def test_seeded_runs_reproduce(data):
    def run(seed: int) -> list[torch.Tensor]:
        env = TradingEnv(data, "train", n_envs=8, config=EnvConfig(episode_bars=4), seed=seed)
        out = [env.reset()]
        generator = torch.Generator().manual_seed(0)
        for _ in range(10):
            obs, reward, _done, _info = env.step(torch.randint(0, 3, (8,), generator=generator))
            out += [obs, reward]
        return out

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])


def test_reset_with_seed_restarts_the_stream(data):
    env = TradingEnv(data, "train", n_envs=4)
    a = env.reset(seed=9)
    env.reset()
    assert torch.equal(env.reset(seed=9), a)


def test_episode_truncated_at_split_end_when_split_is_short(data):
    start, end = data.splits.test
    env = TradingEnv(data, "test", n_envs=2, config=EnvConfig(episode_bars=10_000))
    env.reset()
    assert (env.bar_index == start).all()
    for _ in range(end - start - 1):
        _obs, _reward, done, _info = env.step(torch.ones(2, dtype=torch.long))
        assert not done.any()
    _obs, _reward, done, info = env.step(torch.ones(2, dtype=torch.long))
    assert done.all()
    assert (info["final_bar_index"] == end).all()


def test_bad_arguments(data):
    env = TradingEnv(data, "train", n_envs=2)
    env.reset()
    with pytest.raises(ValueError, match=r"0 \(short\), 1 \(flat\) or 2 \(long\)"):
        env.step(torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        env.step(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="split"):
        TradingEnv(data, "holdout")


# -------------------------------------------------------------------------- evaluation


def _reference_metrics(positions, returns, cost_bps, periods_per_year):
    """Plain-loop version of every EvalResult figure."""
    prev, equity, peak, worst, nets, changes, hits, in_market = 0, 0.0, 0.0, 0.0, [], [], 0, 0
    for p, r in zip(positions, returns, strict=True):
        change = abs(p - prev)
        net = p * r - cost_bps * 1e-4 * change
        nets.append(net)
        changes.append(change)
        equity += net
        peak = max(peak, equity)
        worst = max(worst, peak - equity)
        if p != 0:
            in_market += 1
            hits += p * r > 0
        prev = p
    mean = sum(nets) / len(nets)
    std = math.sqrt(sum((x - mean) ** 2 for x in nets) / (len(nets) - 1))
    return {
        "total_log_return": sum(nets),
        "sharpe": mean / std * math.sqrt(periods_per_year),
        "max_drawdown": 1 - math.exp(-worst),
        "turnover": sum(changes) / len(changes),
        "hit_rate": hits / in_market,
        "n_bars": len(nets),
        "exposure": in_market / len(nets),
    }


def test_evaluate_policy_matches_a_plain_loop(data):
    ret_1 = data.feature_names.index("ret_1")
    column = (LOOKBACK - 1) * 53 + ret_1  # the last bar's ret_1 in a bar-major window

    def policy(obs: torch.Tensor) -> torch.Tensor:
        return torch.where(obs[:, column] > 0, 0, 2)  # fade the last move

    result = evaluate_policy(policy, data, "validation", cost_bps=3.0, batch_size=37)
    start, end = data.splits.validation
    positions = [(-1 if data.features[t, ret_1] > 0 else 1) for t in range(start, end)]
    expected = _reference_metrics(
        positions, data.log_returns[start:end], 3.0, data.market.periods_per_year
    )
    for name, value in expected.items():
        assert getattr(result, name) == pytest.approx(value, rel=1e-9), name
    assert result.to_dict()["n_bars"] == end - start


def test_hand_computed_metrics(data):
    start, end = data.splits.test
    returns = np.zeros(len(data.log_returns))
    returns[start : start + 4] = [0.10, -0.20, 0.05, 0.0]
    toy = dataclasses.replace(data, log_returns=returns)
    positions = np.zeros(end - start)
    positions[:4] = [1, 1, -1, 0]
    result = evaluate_positions(positions, toy, "test", cost_bps=0.0)
    assert result.total_log_return == pytest.approx(0.10 - 0.20 - 0.05)
    assert result.max_drawdown == pytest.approx(1 - math.exp(-0.25))  # peak 0.10 -> -0.15
    assert result.hit_rate == pytest.approx(1 / 3)
    assert result.turnover == pytest.approx((1 + 0 + 2 + 1) / (end - start))
    assert result.exposure == pytest.approx(3 / (end - start))


def test_zero_variance_sharpe_is_zero_and_flat_has_no_hit_rate(data):
    flat = evaluate_positions(np.zeros(np.subtract(*data.splits.test[::-1])), data, "test")
    assert flat == EvalResult(0.0, 0.0, 0.0, 0.0, None, flat.n_bars, 0.0)


def test_observation_without_the_account_state_is_the_market_window(data):
    network = NetworkConfig(lookback=LOOKBACK, account_state=False)
    env = TradingEnv(data, "train", n_envs=4, seed=2, network=network)
    obs = env.reset()
    assert obs.shape == (4, 1064) == (4, env.obs_dim)  # 1,060 + 4 zeros
    obs, _reward, _done, _info = env.step(torch.full((4,), 2))
    for i in range(4):
        assert np.array_equal(obs[i].numpy(), _window(data, int(env.bar_index[i]), None))


@pytest.mark.parametrize(
    ("account_state", "input_multiple", "scale_account", "width"),
    [
        (True, 1, True, 1063),
        (False, 1, True, 1060),
        (True, 8, True, 1064),
        (False, 8, True, 1064),
        (True, 64, True, 1088),
        (True, 1, False, 1063),
    ],
)
def test_the_observation_is_laid_out_as_the_network_says(
    data, account_state, input_multiple, scale_account, width
):
    """The account state times its gain, then zeros; input_multiple 1 and scale_account False
    are the layouts that checkpoints made before the padding and the gain were trained on."""
    network = NetworkConfig(
        lookback=LOOKBACK,
        account_state=account_state,
        input_multiple=input_multiple,
        scale_account=scale_account,
    )
    env = TradingEnv(data, "train", n_envs=4, network=network)
    assert env.obs_dim == width == env.pad_dim + MARKET + 3 * account_state == network.obs_dim
    gain = GAIN if scale_account else 1.0
    obs = env.reset()
    assert obs.shape == (4, width)
    flat = (0.0, 0.0, 0.0) if account_state else None
    for i in range(4):
        expected = _window(data, int(env.bar_index[i]), flat, width, gain)
        assert np.array_equal(obs[i].numpy(), expected)
    _obs, _reward, _done, info = env.step(torch.tensor([2, 0, 1, 2]))
    final = env.observe(info["final_bar_index"], info["final_account"])
    for i in range(4):
        account = info["final_account"][i].numpy() if account_state else None
        expected = _window(data, int(info["final_bar_index"][i]), account, width, gain)
        assert np.array_equal(final[i].numpy(), expected)


def test_late_fusion_and_legacy_inputs_lay_out_the_account_as_they_say(data):
    """Late fusion carries the account state raw (no gain: it joins after the trunk); legacy
    inputs are the percent unrealised return and bars held / 100 of older checkpoints; bounded
    inputs stay in [-1, 1] however long a position is held."""
    late = TradingEnv(
        data, "train", n_envs=2, network=NetworkConfig(lookback=LOOKBACK, account_fusion="late")
    )
    legacy = TradingEnv(
        data, "train", n_envs=2, network=NetworkConfig(lookback=LOOKBACK, account_inputs="legacy")
    )
    start, end = data.splits.train
    bars = torch.tensor([start + 30, end - 1])
    long = torch.ones(2, dtype=torch.long)
    entry = torch.tensor([start + 27, start])  # held 3 bars; held the whole split
    account = late.account(bars, long, entry)
    assert np.array_equal(
        late.observe(bars, account)[0].numpy(), _window(data, start + 30, account[0], 1064, 1.0)
    )
    np.testing.assert_allclose(
        account[0].numpy(), _account(data, start + 30, 1, start + 27), rtol=1e-5, atol=1e-6
    )
    assert account[1, 2] == 1.0  # capped at the 256-bar training episode
    assert (account.abs() <= 1.0).all()
    unrealised = 100.0 * data.log_returns[start + 27 : start + 30].sum()
    np.testing.assert_allclose(
        legacy.account(bars, long, entry)[0].numpy(), [1.0, unrealised, 0.03], rtol=1e-5, atol=1e-6
    )
    held = float(legacy.account(bars, long, entry)[1, 2])
    assert held == pytest.approx((end - 1 - start) / 100)
    assert held > 2.56  # beyond any training episode


def test_a_network_of_another_window_is_refused_in_one_line(data):
    with pytest.raises(ConfigError, match=f"53 x {LOOKBACK}: prepare it with lookback=100"):
        TradingEnv(data, "train", n_envs=2, network=NetworkConfig(lookback=100))


def test_oracle_positions_is_the_best_path_by_brute_force():
    """The DP oracle against every one of the 3^n position paths on small random edges."""
    import itertools

    from ppo_core.synthetic import oracle_positions

    rng = np.random.default_rng(3)
    for _ in range(20):
        mu = rng.normal(0, 3e-4, size=6)
        cost = float(rng.uniform(0, 5))

        def total(path, mu=mu, cost=cost):
            p = np.asarray(path, dtype=float)
            return float((p * mu).sum() - cost * 1e-4 * np.abs(np.diff(p, prepend=0.0)).sum())

        best = max(itertools.product((-1, 0, 1), repeat=6), key=total)
        assert total(oracle_positions(mu, cost)) == pytest.approx(total(best), abs=1e-15)


def test_costs_make_flipping_lose_and_the_oracle_hold():
    """On default synthetic data with the default cost, trading the one-bar sign of the edge
    (flipping whenever it turns) loses, while the cost-aware oracle holds through regimes."""
    from ppo_core.synthetic import oracle_positions

    data = prepare(make_synthetic(20_000, seed=1), lookback=LOOKBACK)
    cost = EnvConfig().cost_bps
    start, end = data.splits.train
    edge = data.market.expected_return[start:end]
    sigma_like = np.abs(edge[edge != 0])
    assert np.median(sigma_like) < cost * 1e-4  # one bar's edge is below one change's cost
    oracle = oracle_positions(edge, cost)
    held = np.diff(np.flatnonzero(np.diff(oracle) != 0))
    assert np.median(held) >= 10  # positions are held for tens of bars, not one
    every_bar = np.where(np.arange(end - start) % 2 == 0, 1, -1)
    flip = evaluate_positions(every_bar, data, "train", cost)
    assert flip.total_log_return < 0
    assert evaluate_positions(oracle, data, "train", cost).total_log_return > 0


def test_baselines_and_the_oracle_edge():
    # 3,948 validation bars: a Sharpe's standard error there is ~sqrt(8766 / 3948) = 1.5.
    data = prepare(make_synthetic(20_000, seed=0), lookback=LOOKBACK)
    results = baselines(data, "validation", cost_bps=5.0)
    assert set(results) == {"flat", "buy_and_hold", "random", "oracle"}
    assert results["flat"].total_log_return == 0.0
    start, end = data.splits.validation
    assert results["buy_and_hold"].total_log_return == pytest.approx(
        data.log_returns[start:end].sum() - 5e-4
    )
    # Default signal strength and cost: the oracle's out-of-sample edge is large (Sharpe ~4),
    # random pays the cost on ~0.9 changes a bar and loses.
    assert results["oracle"].sharpe > 3.0
    assert results["random"].sharpe < 0.0
    assert results["oracle"].sharpe > results["buy_and_hold"].sharpe + 2.0
    assert baselines(data, "validation", 5.0)["random"] == results["random"]  # seeded


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_env_matches_cpu(data):
    config = EnvConfig(episode_bars=5)
    cpu = TradingEnv(data, "train", n_envs=64, config=config, device="cpu")
    gpu = TradingEnv(data, "train", n_envs=64, config=config, device="cuda")
    gpu_obs = gpu.reset()
    cpu.reset()
    cpu.start = cpu.bar_index = gpu.bar_index.cpu()  # the two generators differ by device
    assert torch.equal(cpu.observe(cpu.bar_index), gpu_obs.cpu())
    actions = torch.randint(0, 3, (64,))
    _obs, cpu_reward, cpu_done, _info = cpu.step(actions)
    _obs, gpu_reward, gpu_done, _info = gpu.step(actions.cuda())
    assert torch.allclose(cpu_reward, gpu_reward.cpu())
    assert torch.equal(cpu_done, gpu_done.cpu())


def test_evaluation_feeds_each_decision_its_own_account_state(data):
    """A policy that reads its position and bars held (go long from flat, hold 3 bars, then go
    flat for one) is evaluated bar by bar, each observation carrying the previous decision."""

    def policy(obs: torch.Tensor) -> torch.Tensor:
        position, bars_held = obs[:, MARKET] / GAIN, obs[:, MARKET + 2] / GAIN
        three_bars = math.log1p(3) / math.log1p(256)  # the bounded bars-held input
        long_enough = (position > 0.5) & (bars_held >= three_bars - 1e-6)
        return torch.where(long_enough, 1, 2)

    start, end = data.splits.validation
    expected, position, held = [], 0, 0
    for _ in range(start, end):
        position = 0 if (position == 1 and held >= 3) else 1
        held = held + 1 if position == 1 else 0
        expected.append(position)
    positions = policy_positions(policy, data, "validation")
    assert positions.tolist() == expected
    assert evaluate_policy(policy, data, "validation", 2.0) == evaluate_positions(
        np.asarray(expected), data, "validation", 2.0
    )
