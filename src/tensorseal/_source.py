"""Where a sealed file's bytes come from: a local file (``pread``), or a URL (fsspec).

A remote file is read through one fsspec file object with a read-ahead cache: opening it
costs one range request for the first ``REMOTE_BLOCK`` bytes (prefix, header slots, index
and tag table of any but huge models), and each tensor asked for costs range requests
for its own bytes only, so a rank of a distributed job pulls only its shard of the
weights. Credentials and endpoints come from fsspec's usual sources (for ``s3://``, the
AWS environment) or ``storage_options``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from .errors import TruncatedError, UsageError

REMOTE_BLOCK = 1 << 20  # bytes per range request


def is_url(path: object) -> bool:
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


class LocalSource:
    remote = False

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self.size = os.fstat(self.fd).st_size

    def readinto(self, buf: memoryview, offset: int) -> int:
        return os.preadv(self.fd, [buf], offset)

    def read(self, size: int, offset: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        os.close(self.fd)


class RemoteSource:
    """An fsspec file; reads are serialised (one file object, one position)."""

    remote = True
    fd = -1

    def __init__(self, url: str, storage_options: dict[str, Any] | None) -> None:
        try:
            import fsspec
        except ImportError:
            raise UsageError("reading a sealed file from a URL needs fsspec", hint="pip install 'tensorseal[remote]'") from None
        try:
            fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
            self._file = fs.open(path, "rb", block_size=REMOTE_BLOCK, cache_type="readahead")
        except ImportError as exc:  # the protocol's package (s3fs, aiohttp) is missing
            raise UsageError(f"cannot read {url.split('://')[0]}:// URLs: {exc}", hint="pip install 'tensorseal[remote]'") from None
        self.size = int(self._file.size)
        self._lock = threading.Lock()

    def readinto(self, buf: memoryview, offset: int) -> int:
        with self._lock:
            self._file.seek(offset)
            return self._file.readinto(buf)

    def read(self, size: int, offset: int) -> bytes:
        with self._lock:
            self._file.seek(offset)
            return self._file.read(size)

    def close(self) -> None:
        self._file.close()


Source = LocalSource | RemoteSource


def open_source(path: str, storage_options: dict[str, Any] | None = None) -> Source:
    """Raises OSError (missing file, network), UsageError (no fsspec support for the URL)."""
    if is_url(path):
        return RemoteSource(path, storage_options)
    if storage_options:
        raise UsageError("storage_options are for URLs, not local files")
    return LocalSource(path)


def read_exact(source: Source, size: int, offset: int) -> bytes:
    data = source.read(size, offset)
    if len(data) != size:
        raise TruncatedError(f"file ends at byte {offset + len(data)}, expected {offset + size}")
    return data
