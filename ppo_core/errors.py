"""The project's exceptions: each carries a message a user can act on.

The CLI prints `str(error)` as one line and exits non-zero; nothing else reaches the terminal.
"""

__all__ = [
    "ArchbenchError",
    "ArchitectureMismatch",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "TrainingDiverged",
]


class ArchbenchError(Exception):
    """Base of every error the tool raises on purpose."""


class ConfigError(ArchbenchError, ValueError):
    """A configuration field or CLI argument has a bad value."""


class DataError(ArchbenchError):
    """A market data file or dataset cannot be used."""


class CheckpointError(ArchbenchError):
    """A checkpoint file is missing, truncated, foreign or unsafe."""


class ArchitectureMismatch(CheckpointError):
    """Weights of one architecture were asked to load into another."""


class TrainingDiverged(ArchbenchError):
    """A loss or a parameter became NaN or inf."""
