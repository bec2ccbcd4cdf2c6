"""Write files so a reader sees the old version or the new one, never half of either.

Every writer of a file a user keeps (checkpoints, ONNX exports, reports, benchmark JSON) uses it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ppo_core.errors import ConfigError

__all__ = ["atomic_path", "check_output"]


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target` to write. When the block succeeds the file
    replaces `target`, with the permissions a plain open() would give it; when it raises, the
    temporary file is removed and `target` is left as it was. The folder must exist."""
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; these files are meant to be shared
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


def check_output(
    target: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
    *,
    flag: str = "output",
    example: str = "out",
) -> Path:
    """Refuse, before any work starts, an output file that is a directory (or is named like
    one, 'DIR/'), sits under a file, or is one of `inputs`: one ConfigError naming `flag`, the
    path and the fix (`example`: a file name to suggest inside a directory). Returns the path;
    folders that do not exist yet are fine (the writers make them).
    """
    raw = os.fspath(target)
    path = Path(raw).expanduser()
    if path.is_dir() or raw.endswith(("/", os.sep)):
        raise ConfigError(
            f"{flag} {raw}: is a directory; give a file name, e.g. {Path(raw) / example}"
        )
    for source in inputs:
        source_path = Path(source).expanduser()
        if _same_file(path, source_path):
            raise ConfigError(
                f"{flag} {raw}: is also an input ({os.fspath(source)}); writing it would destroy "
                "that input: give another file name"
            )
    for folder in path.resolve().parents:
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(f"{flag} {raw}: {folder} is a file, not a folder")
            break
    return path


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return a.samefile(b)  # hard links and symlinks too
    return a.resolve() == b.resolve()
