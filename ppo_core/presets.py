"""Named network sizes and training modes, as plain data.

`parse_hidden_dims` is the one place that turns a user's "medium" or "768,384,192" into widths.
"""

from __future__ import annotations

from ppo_core.config import MAX_WIDTH
from ppo_core.errors import ConfigError

__all__ = ["PRESETS", "TRAINING_MODES", "hidden_dims_text", "parse_hidden_dims", "preset_name"]

PRESETS: dict[str, tuple[int, ...]] = {
    "tiny": (256, 128, 64),
    "small": (512, 256, 128),
    "medium": (1024, 512, 256),
    "large": (2048, 1024, 512, 256),
    "xlarge": (4096, 2048, 1024, 512),
}

# PPOConfig field overrides per training mode. `extended` is for 500M+ step runs on a GPU,
# where a larger rollout and minibatch keep the device busy. No mode touches gamma or
# gae_lambda: every mode trains PPOConfig's 0.99 and 0.95, because the observation carries the
# position and the synthetic edge lasts tens of bars, so an action's consequences do too.
TRAINING_MODES: dict[str, dict[str, object]] = {
    "quick": {"n_steps": 128, "n_epochs": 4, "learning_rate": 1e-3, "ent_coef": 0.0},
    "production": {"n_steps": 256, "n_epochs": 10, "learning_rate": 3e-4, "ent_coef": 0.0},
    "extended": {
        "n_steps": 512,
        "n_epochs": 10,
        "learning_rate": 1e-4,
        "ent_coef": 0.0,
        "target_kl": 0.02,
    },
}


def parse_hidden_dims(text: str) -> tuple[int, ...]:
    """A preset name ('medium') or comma-separated widths ('768,384,192') -> widths."""
    spec = str(text).strip().lower()
    if spec in PRESETS:
        return PRESETS[spec]
    parts = [p.strip() for p in spec.replace(" ", ",").split(",") if p.strip()]
    if not parts:
        raise ConfigError(
            f"hidden_dims {text!r} is empty: give a preset ({', '.join(PRESETS)}) "
            "or widths like 768,384,192"
        )
    dims = []
    for part in parts:
        if not part.isdigit():
            raise ConfigError(
                f"hidden_dims {text!r}: {part!r} is neither a preset ({', '.join(PRESETS)}) "
                "nor a positive integer width"
            )
        width = int(part)
        if not 0 < width <= MAX_WIDTH:
            raise ConfigError(f"hidden_dims {text!r}: width {width} is outside 1..{MAX_WIDTH:,}")
        dims.append(width)
    return tuple(dims)


def hidden_dims_text(hidden_dims: tuple[int, ...] | list[int]) -> str:
    """The widths as a command line and the run file spell them, '768,384,192': the one place
    a hidden_dims tuple becomes text (parse_hidden_dims reads it back)."""
    return ",".join(str(w) for w in hidden_dims)


def preset_name(hidden_dims: tuple[int, ...] | list[int]) -> str:
    """The preset's name for these widths, or the widths joined by 'x' for a custom size."""
    dims = tuple(hidden_dims)
    for name, widths in PRESETS.items():
        if widths == dims:
            return name
    return "x".join(str(w) for w in dims)
