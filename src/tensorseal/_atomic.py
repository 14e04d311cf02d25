"""Write-to-temp-then-rename: the target path only ever holds a complete, verified file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, durable: bool = False) -> Iterator[int]:
    """Yield a file descriptor of a temp file beside ``path``; rename it onto ``path`` if
    the block completes, delete it if the block raises. ``durable`` fsyncs file and
    directory before and after the rename."""
    import tempfile  # only writers need it; keeps `import tensorseal` light for loaders

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".partial", dir=directory)
    try:
        try:
            yield fd
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
