"""Write files so a reader sees the old version or the new one, never half of either.

Every writer of a file a user keeps (checkpoints, ONNX exports, reports, benchmark JSON) uses it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path"]


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
