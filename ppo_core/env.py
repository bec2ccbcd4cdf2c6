"""The vectorised trading environment every network size trains on, and the evaluation that
judges a policy over a whole split beside flat, buy-and-hold, random and oracle baselines.

All state lives in tensors on one device; observations are windows into one feature tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ppo_core.config import ACCOUNT_DIM, EnvConfig, NetworkConfig
from ppo_core.data import NORMALIZED_CLIP, SPLIT_NAMES, PreparedData
from ppo_core.errors import ConfigError
from ppo_core.synthetic import oracle_positions

__all__ = [
    "EvalResult",
    "TradingEnv",
    "baselines",
    "evaluate_policy",
    "evaluate_positions",
    "net_returns",
    "oracle_split_positions",
    "policy_positions",
]

ACTION_TO_POSITION = (-1, 0, 1)
"""Action 0 is short, 1 flat, 2 long: position = action - 1."""
BARS_HELD_SCALE = 100.0
"""Legacy account inputs: bars held enter divided by this, so a typical holding period is O(1)."""
UNREALISED_SCALE = 100.0
"""Legacy account inputs: the unrealised log return enters times this (percent)."""
UNREALISED_SIGMAS = 4.0
"""Bounded account inputs: the unrealised return's z-score (random-walk standard deviations over
the hold) is divided by this before the tanh, so a hold through a planted regime, several
standard deviations in the money, stays off the bound (README, "The workload")."""
VOLATILITY_BARS = 50
"""Bounded account inputs: the unrealised return is scaled by the root mean square of the log
returns over this many bars before the current one (a causal, recent volatility)."""


class TradingEnv:
    """n_envs trading episodes over one split, stepped together on `device`.

    Observation of bar t: feature rows t-lookback+1..t flattened bar-major, i.e.
    obs[:, k * n_features + f] = features[t - lookback + 1 + k, f], then (account_state) the
    account: the position p held into bar t, the unrealised return of the open position
    u = p * log(close[t] / close[entry]) and the bars held h = t - entry (both 0 when flat), as
    NetworkConfig.account_inputs says: 'bounded', tanh(u / (UNREALISED_SIGMAS * vol[t] *
    sqrt(h))) with vol[t] the RMS log return of the VOLATILITY_BARS bars before t, and
    min(1, log1p(h) / log1p(account_horizon)); 'legacy', UNREALISED_SCALE * u and
    h / BARS_HELD_SCALE, clipped to +-NORMALIZED_CLIP. All three times NetworkConfig.account_gain,
    then zeros up to a multiple of input_multiple inputs (NetworkConfig.pad_dim): the layout of
    `network`, the NetworkConfig of the policy that reads it. `observe(bar_index, account)`
    rebuilds it; `account()` returns the account state unscaled.
    Action a in {0, 1, 2} sets position p = a - 1 for bar t -> t+1; the reward is
    reward_scale * (p * log_returns[t] - cost_bps * 1e-4 * |p - p_prev|), p_prev = 0 at an
    episode's start. A position's entry is the bar at which it was taken (a flip re-enters).
    Episodes start at uniformly random bars in
    [split start, max(split start, split end - episode_bars)] and end after episode_bars
    steps or at the split end, whichever is first; every end is a time-limit truncation.
    """

    n_actions = 3

    def __init__(
        self,
        data: PreparedData,
        split: str = "train",
        n_envs: int = 8,
        config: EnvConfig | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        network: NetworkConfig | None = None,
    ) -> None:
        if split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {', '.join(SPLIT_NAMES)}; got {split!r}")
        if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
        if network is None:
            network = NetworkConfig(n_features=data.n_features, lookback=data.lookback)
        elif (network.n_features, network.lookback) != (data.n_features, data.lookback):
            raise ConfigError(
                f"the network reads {network.n_features} features x {network.lookback} bars but "
                f"the data was prepared as {data.n_features} x {data.lookback}: prepare it with "
                f"lookback={network.lookback}"
            )
        self.data = data
        self.split = split
        self.n_envs = n_envs
        self.config = config if config is not None else EnvConfig()
        self.device = torch.device(device)
        self.lookback = data.lookback
        self.n_features = data.n_features
        self.network = network
        """The network whose observation layout this env builds (account state, gain, padding)."""
        self.account_state = network.account_state
        self._account_gain = network.account_gain
        self.pad_dim = network.pad_dim
        self.obs_dim = network.obs_dim
        self.split_start, self.split_end = data.splits.range(split)

        self.features = torch.as_tensor(data.features, device=self.device).contiguous()  # (T, F)
        self.log_returns = torch.as_tensor(data.log_returns, device=self.device)  # (T,) float64
        # log(close[t] / close[0]): an open position's unrealised return is a difference of two.
        self._log_price = torch.cumsum(self.log_returns, 0) - self.log_returns  # (T,) float64
        self._volatility = _recent_volatility(self.log_returns)  # (T,) float64
        self._n_windows = self.features.shape[0] - self.lookback + 1
        # Gathering (B * lookback) feature rows and reshaping is ~3x faster on a CPU than
        # index_select over an overlapping as_strided window view (a generic strided copy).
        self._window_offsets = torch.arange(-self.lookback + 1, 1, device=self.device)  # (L,)
        self._cost = self.config.cost_bps * 1e-4
        self._latest_start = max(self.split_start, self.split_end - self.config.episode_bars)
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(seed)

        zeros = torch.zeros(n_envs, dtype=torch.long, device=self.device)
        self.bar_index = zeros  # (n_envs,) the bar t of the current observation
        self.start = zeros  # (n_envs,) first bar of each episode
        self.position = zeros  # (n_envs,) position held into bar t, in {-1, 0, 1}
        self.entry_bar = zeros  # (n_envs,) bar at which the open position was taken
        self.equity = torch.zeros(n_envs, dtype=torch.float64, device=self.device)
        self.trades = zeros  # (n_envs,) position changes so far this episode

    # ---------------------------------------------------------------------------- gym-like

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start every episode afresh at random bars -> obs (n_envs, obs_dim) float32.

        `seed` reseeds the start sampler; without it the sampler continues its stream."""
        if seed is not None:
            self._generator.manual_seed(seed)
        starts = self._random_starts()
        zeros = torch.zeros_like(starts)
        self.start, self.bar_index, self.position, self.trades = starts, starts, zeros, zeros
        self.entry_bar = starts
        self.equity = torch.zeros(self.n_envs, dtype=torch.float64, device=self.device)
        return self.observe(self.bar_index, self.current_account())

    def step(
        self, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """action (n_envs,) long in {0, 1, 2} -> obs, reward (n_envs,) float32, done (n_envs,)
        bool, info. Where done, obs is already the first observation of a new episode and
        info["final_bar_index"] and info["final_account"] rebuild the observation that would have
        come next: observe(final_bar_index, final_account).

        info: "final_bar_index" (n_envs,) long; "final_account" (n_envs, ACCOUNT_DIM) float32;
        "equity" (n_envs,) float64, the episode's
        cumulative net log return including this step (the final one where done); "trades"
        (n_envs,) long, position changes this episode; "position" (n_envs,) long, the
        position just taken; "episode_bars" (n_envs,) long, steps taken this episode."""
        self._check_action(action)
        t = self.bar_index
        position = action.to(self.device, torch.long) - 1  # (n_envs,)
        change = (position - self.position).abs()
        # float64 throughout: a long tensor times a Python float would round to float32.
        net = position * self.log_returns[t] - self._cost * change.to(torch.float64)
        reward = (self.config.reward_scale * net).to(torch.float32)
        equity = self.equity + net
        trades = self.trades + (change != 0).long()
        entry = torch.where(change != 0, t, self.entry_bar)

        next_bar = t + 1
        length = next_bar - self.start
        done = (length >= self.config.episode_bars) | (next_bar >= self.split_end)
        info = {
            "final_bar_index": next_bar,
            "final_account": self.account(next_bar, position, entry),
            "equity": equity,
            "trades": trades,
            "position": position,
            "episode_bars": length,
        }
        # Always draw n_envs starts so the random stream does not depend on which envs ended.
        starts = self._random_starts()
        self.start = torch.where(done, starts, self.start)
        self.bar_index = torch.where(done, starts, next_bar)
        self.position = torch.where(done, 0, position)
        self.entry_bar = torch.where(done, starts, entry)
        self.equity = torch.where(done, 0.0, equity)
        self.trades = torch.where(done, 0, trades)
        return self.observe(self.bar_index, self.current_account()), reward, done, info

    def account(
        self, bar_index: torch.Tensor, position: torch.Tensor, entry_bar: torch.Tensor
    ) -> torch.Tensor:
        """The account state at bar t of a position taken at entry_bar -> (B, ACCOUNT_DIM)
        float32: position, scaled unrealised log return, scaled bars held (0 when flat)."""
        p = position.to(torch.float64)
        unrealised = p * (self._log_price[bar_index] - self._log_price[entry_bar])  # (B,)
        held = torch.where(position != 0, bar_index - entry_bar, 0).to(torch.float64)  # (B,)
        if self.network.account_inputs == "legacy":
            state = torch.stack([p, UNREALISED_SCALE * unrealised, held / BARS_HELD_SCALE], dim=1)
            return state.clamp(-NORMALIZED_CLIP, NORMALIZED_CLIP).to(torch.float32)
        # A z-score of the unrealised return under a random walk: saturates only on a move of
        # several standard deviations, not on a long hold in a trending market.
        spread = UNREALISED_SIGMAS * self._volatility[bar_index] * held.clamp(min=1.0).sqrt()
        horizon = math.log1p(self.network.account_horizon)
        held_scaled = (torch.log1p(held) / horizon).clamp(max=1.0)
        state = torch.stack([p, torch.tanh(unrealised / spread), held_scaled], dim=1)  # (B, 3)
        return state.to(torch.float32)

    def current_account(self) -> torch.Tensor:
        """The account state of every environment now -> (n_envs, ACCOUNT_DIM) float32."""
        return self.account(self.bar_index, self.position, self.entry_bar)

    def observe(self, bar_index: torch.Tensor, account: torch.Tensor | None = None) -> torch.Tensor:
        """bar_index (B,) long, account (B, ACCOUNT_DIM) -> obs (B, obs_dim) float32: one gather
        of feature rows, then the account state times account_gain when the env carries one (None:
        flat, no position, as at an episode's start), then pad_dim zero columns."""
        bar_index = bar_index.to(self.device)
        rows = bar_index - (self.lookback - 1)
        if rows.device.type == "cpu" and rows.numel():
            # On CUDA this check would force a sync every step; index_select asserts there.
            low, high = int(rows.min()), int(rows.max())
            if low < 0 or high >= self._n_windows:
                raise IndexError(
                    f"bar_index must lie in [{self.lookback - 1}, {self.features.shape[0] - 1}],"
                    f" got {low + self.lookback - 1}..{high + self.lookback - 1}"
                )
        bars = (bar_index[:, None] + self._window_offsets).reshape(-1)  # (B * lookback,)
        window = torch.index_select(self.features, 0, bars).reshape(len(rows), -1)  # (B, L*F)
        parts = [window]
        if self.account_state:
            if account is None:
                account = torch.zeros(len(rows), ACCOUNT_DIM, device=self.device)
            parts.append(account.to(self.device, torch.float32) * self._account_gain)  # (B, 3)
        if self.pad_dim:
            parts.append(window.new_zeros(len(rows), self.pad_dim))  # (B, pad_dim)
        # One cat builds the row, so with the account state the padding adds no copy of the
        # window (without it, this cat is the one copy the padding costs).
        return torch.cat(parts, dim=1) if len(parts) > 1 else window

    # ----------------------------------------------------------------------------- private

    def _random_starts(self) -> torch.Tensor:
        return torch.randint(
            self.split_start,
            self._latest_start + 1,
            (self.n_envs,),
            generator=self._generator,
            device=self.device,
        )

    def _check_action(self, action: torch.Tensor) -> None:
        if not isinstance(action, torch.Tensor) or action.shape != (self.n_envs,):
            shape = tuple(action.shape) if isinstance(action, torch.Tensor) else type(action)
            raise ValueError(f"action must be a tensor of shape ({self.n_envs},), got {shape}")
        if action.dtype.is_floating_point or action.dtype == torch.bool:
            raise ValueError(f"action must be an integer tensor, got {action.dtype}")
        if action.device.type == "cpu" and ((action < 0) | (action > 2)).any():
            raise ValueError("actions must be 0 (short), 1 (flat) or 2 (long)")


def _recent_volatility(log_returns: torch.Tensor) -> torch.Tensor:
    """log_returns (T,) -> (T,): the RMS of the VOLATILITY_BARS log returns before each bar
    (fewer at the start; bar 0 takes bar 1's), floored so that a flat price divides safely."""
    squares = torch.cat([log_returns.new_zeros(1), torch.cumsum(log_returns**2, 0)])  # (T + 1,)
    t = torch.arange(len(log_returns), device=log_returns.device)
    first = (t - VOLATILITY_BARS).clamp(min=0)
    count = (t - first).clamp(min=1)
    rms = ((squares[t] - squares[first]) / count).clamp(min=0.0).sqrt()
    if len(rms) > 1:
        rms[0] = rms[1]
    return rms.clamp(min=1e-12)


# ------------------------------------------------------------------------------ evaluation


@dataclass(frozen=True)
class EvalResult:
    """How one fixed sequence of positions did over every bar of a split, net of costs."""

    total_log_return: float
    """Sum of per-bar net log returns (log of final over initial wealth)."""
    sharpe: float
    """mean / std (ddof 1) of per-bar net log returns x sqrt(periods_per_year) of the data
    (observed bars per year); 0.0 when the returns have no variance."""
    max_drawdown: float
    """Largest fall of wealth from a running peak (the start counts), as a fraction in [0, 1)."""
    turnover: float
    """Mean |position change| per bar (entering from flat at the split start counts)."""
    hit_rate: float | None
    """Fraction of bars in the market whose gross return was positive; None if never in it."""
    n_bars: int
    """Decision bars evaluated."""
    exposure: float
    """Fraction of bars with a non-zero position."""

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def net_returns(
    positions: np.ndarray, data: PreparedData, split: str = "validation", cost_bps: float = 1.0
) -> np.ndarray:
    """positions (n_bars,) in {-1, 0, 1} over `split`, held in sequence from flat -> the net log
    return of each bar (n_bars,) float64: p_t * log_returns[t] - cost * |p_t - p_(t-1)|."""
    start, end = data.splits.range(split)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape != (end - start,):
        raise ValueError(f"expected {end - start} positions for {split}, got {positions.shape}")
    change = np.abs(np.diff(positions, prepend=0.0))
    return positions * data.log_returns[start:end] - cost_bps * 1e-4 * change


def evaluate_positions(
    positions: np.ndarray, data: PreparedData, split: str = "validation", cost_bps: float = 1.0
) -> EvalResult:
    """positions (n_bars,) in {-1, 0, 1}, one per decision bar of `split`, held in sequence."""
    start, end = data.splits.range(split)
    net = net_returns(positions, data, split, cost_bps)
    positions = np.asarray(positions, dtype=np.float64)
    gross = positions * data.log_returns[start:end]  # (n,)
    change = np.abs(np.diff(positions, prepend=0.0))
    equity = np.concatenate([[0.0], np.cumsum(net)])
    drawdown = float((np.maximum.accumulate(equity) - equity).max())
    std = float(net.std(ddof=1)) if len(net) > 1 else 0.0
    sharpe = float(net.mean() / std * math.sqrt(data.market.periods_per_year)) if std > 0 else 0.0
    in_market = positions != 0
    return EvalResult(
        total_log_return=float(net.sum()),
        sharpe=sharpe,
        max_drawdown=float(-math.expm1(-drawdown)),
        turnover=float(change.mean()),
        hit_rate=float((gross[in_market] > 0).mean()) if in_market.any() else None,
        n_bars=len(net),
        exposure=float(in_market.mean()),
    )


def _checked(chosen: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if chosen.shape != shape or chosen.dtype.is_floating_point:
        raise ValueError(
            f"policy_fn must return integer actions of shape {shape}, "
            f"got {chosen.dtype} {tuple(chosen.shape)}"
        )
    return chosen.to("cpu", torch.long)


def policy_positions(
    policy_fn: Callable[[torch.Tensor], torch.Tensor],
    data: PreparedData,
    split: str = "validation",
    device: str | torch.device = "cpu",
    batch_size: int = 4096,
    network: NetworkConfig | None = None,
) -> np.ndarray:
    """The positions (n_bars,) int64 in {-1, 0, 1} policy_fn (obs (B, obs_dim) float32 ->
    actions (B,) in {0, 1, 2}) takes over every bar of `split`, starting flat.

    With the account state in the observation each decision depends on the last, so bars are
    visited one at a time; without it, in batches of `batch_size`. `network` is the policy's
    NetworkConfig: it lays out the observation (None: the defaults for this data)."""
    env = TradingEnv(data, split, n_envs=1, device=device, network=network)
    start, end = data.splits.range(split)
    if env.account_state:
        actions = []
        position = torch.zeros(1, dtype=torch.long, device=env.device)
        entry = torch.full((1,), start, dtype=torch.long, device=env.device)
        for t in range(start, end):
            bar = torch.full((1,), t, dtype=torch.long, device=env.device)
            chosen = _checked(policy_fn(env.observe(bar, env.account(bar, position, entry))), (1,))
            new = (chosen - 1).to(env.device)
            entry = torch.where(new != position, bar, entry)
            position = new
            actions.append(chosen)
    else:
        actions = []
        for first in range(start, end, batch_size):
            bars = torch.arange(first, min(first + batch_size, end), device=env.device)
            actions.append(_checked(policy_fn(env.observe(bars)), tuple(bars.shape)))
    all_actions = torch.cat(actions).numpy()
    if ((all_actions < 0) | (all_actions > 2)).any():
        raise ValueError("policy_fn must return actions 0 (short), 1 (flat) or 2 (long)")
    return all_actions - 1


def evaluate_policy(
    policy_fn: Callable[[torch.Tensor], torch.Tensor],
    data: PreparedData,
    split: str = "validation",
    cost_bps: float = 1.0,
    device: str | torch.device = "cpu",
    batch_size: int = 4096,
    network: NetworkConfig | None = None,
) -> EvalResult:
    """Run policy_fn once over every bar of `split` (see `policy_positions`), then hold the
    chosen positions in time order."""
    positions = policy_positions(policy_fn, data, split, device, batch_size, network)
    return evaluate_positions(positions, data, split, cost_bps)


def oracle_split_positions(
    data: PreparedData, split: str = "validation", cost_bps: float = 1.0
) -> np.ndarray | None:
    """The cost-aware oracle's positions over `split` (synthetic.oracle_positions on the planted
    edge), or None for data with no planted edge (real markets)."""
    edge = data.market.expected_return
    if edge is None:
        return None
    start, end = data.splits.range(split)
    return oracle_positions(edge[start:end], cost_bps)


def baselines(
    data: PreparedData, split: str = "validation", cost_bps: float = 1.0, seed: int = 0
) -> dict[str, EvalResult]:
    """Reference policies on the same split: always flat, always long, uniformly random
    positions (seeded), and the cost-aware oracle where the data planted an edge."""
    start, end = data.splits.range(split)
    n = end - start
    rng = np.random.default_rng(seed)
    results = {
        "flat": evaluate_positions(np.zeros(n), data, split, cost_bps),
        "buy_and_hold": evaluate_positions(np.ones(n), data, split, cost_bps),
        "random": evaluate_positions(rng.integers(-1, 2, size=n), data, split, cost_bps),
    }
    oracle = oracle_split_positions(data, split, cost_bps)
    if oracle is not None:
        results["oracle"] = evaluate_positions(oracle, data, split, cost_bps)
    return results
