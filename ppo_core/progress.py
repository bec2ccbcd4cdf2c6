"""The training progress bar: iterations done, time left, the latest throughput and losses.

On stderr, and silent when disabled, so `archbench train --json | jq` gets only JSON.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ProgressBar"]


class _Figures(Protocol):
    """The figures of an iteration the bar shows (an `IterationStats`)."""

    train_env_steps_per_s: float
    update_samples_per_s: float
    value_loss: float
    entropy: float
    approx_kl: float


class ProgressBar:
    """A rich progress bar with the latest throughput and losses; silent when disabled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._progress = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            # On stderr: `archbench train --json | jq` would otherwise get the bar in its JSON.
            self._progress = Progress(
                TextColumn("[bold]PPO[/bold] it {task.completed}/{task.total}"),
                BarColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                transient=False,
                console=Console(stderr=True),
            )
            self._task = self._progress.add_task("train", total=total, status="")

    def __enter__(self) -> ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, stats: _Figures) -> None:
        """One iteration done: move the bar and show its figures."""
        if self._progress is not None:
            status = (
                f"{stats.train_env_steps_per_s:,.0f} env-steps/s  "
                f"{stats.update_samples_per_s:,.0f} "
                f"upd/s  vloss {stats.value_loss:.3g}  ent {stats.entropy:.3f}  "
                f"kl {stats.approx_kl:.4f}"
            )
            self._progress.update(self._task, advance=1, status=status)
