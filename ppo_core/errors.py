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
    "is_out_of_memory",
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


_OOM_PHRASES = (
    "out of memory",
    "can't allocate memory",
    "not enough memory",
    "defaultcpuallocator",
)


def is_out_of_memory(error: BaseException) -> bool:
    """True for a host or device out-of-memory error, whatever raised it.

    torch's CPU allocator raises a plain RuntimeError ("DefaultCPUAllocator: can't allocate
    memory ... Error code 12"), so the message is read as well as the type; no torch import.
    """
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    message = str(error).lower()
    return isinstance(error, RuntimeError) and any(p in message for p in _OOM_PHRASES)
