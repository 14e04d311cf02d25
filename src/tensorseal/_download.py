"""A download that appears under its final name only when complete and checked.

The bytes go to ``DST.partial``, beside a JSON sidecar ``DST.partial.json`` that says what
is there, so an interrupted download can resume. Until every byte is in, a failure keeps
both for the next attempt; once they are all in (``all_bytes_in``), a failed check
deletes both. ``commit`` makes the file durable and renames it onto ``DST``; the
directory is synced after. One pull per target at a time (an advisory lock).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import TensorSealError

PARTIAL_SUFFIX = ".partial"
SIDECAR_SUFFIX = ".partial.json"


@dataclass
class PartialDownload:
    dst: str
    partial: str
    sidecar: str
    fd: int
    complete: bool = False

    def all_bytes_in(self) -> None:
        """From now on a failure discards the partial file: its bytes were all there."""
        self.complete = True

    def commit(self) -> None:
        """fsync, drop the sidecar, rename onto the final name."""
        sync(self.fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sidecar)
        os.replace(self.partial, self.dst)


@contextlib.contextmanager
def partial_download(dst: str, busy: type[TensorSealError]) -> Iterator[PartialDownload]:
    """Open (or reopen, to resume) ``dst.partial``, locked. Raises ``busy`` if another
    pull is writing it, OSError."""
    partial, sidecar = dst + PARTIAL_SUFFIX, dst + SIDECAR_SUFFIX
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    download = PartialDownload(dst, partial, sidecar, fd)
    try:
        _lock(fd, partial, busy)
        yield download
    except BaseException:
        if download.complete:  # a failed check: nothing of it is worth resuming
            for path in (partial, sidecar):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        raise
    finally:
        os.close(fd)
    sync_directory(dst)


def _lock(fd: int, path: str, busy: type[TensorSealError]) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise busy(f"another pull is writing {path}", hint="wait for it to finish") from None


def sync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)


def sync_directory(path: str) -> None:
    with contextlib.suppress(OSError):  # not possible on every platform / file system
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def blake3_of_fd(fd: int, size: int) -> str:
    """Hex BLAKE3 of the first ``size`` bytes of ``fd`` (memory-mapped, multithreaded)."""
    import mmap

    from blake3 import blake3

    hasher = blake3(max_threads=blake3.AUTO)
    if size:
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as view:
            hasher.update(view)
    return hasher.hexdigest()
