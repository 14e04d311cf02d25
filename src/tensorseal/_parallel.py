"""Thread-pool helpers for the segment loops (AEAD calls and pread/pwrite release the GIL)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .errors import UsageError

T = TypeVar("T")


def thread_count(requested: int | None = None) -> int:
    """``requested``, else ``TENSORSEAL_THREADS``, else the cores this process may use."""
    if requested is None:
        env = os.environ.get("TENSORSEAL_THREADS")
        if env:
            try:
                requested = int(env)
            except ValueError:
                raise UsageError(f"TENSORSEAL_THREADS={env!r} is not an integer") from None
    if requested is None:
        try:
            requested = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            requested = os.cpu_count() or 1
    if requested < 1:
        raise UsageError(f"thread count must be at least 1, got {requested}")
    return requested


def run_chunked(items: Sequence[T], worker: Callable[[Sequence[T]], None], threads: int) -> None:
    """Split ``items`` into ``threads`` contiguous chunks and run ``worker`` on each.

    Every chunk runs to completion or to its first error; then the first error (in chunk
    order) is raised, so the caller never sees partial success as success.
    """
    if not items:
        return
    threads = max(1, min(threads, len(items)))
    if threads == 1:
        worker(items)
        return
    bounds = [len(items) * i // threads for i in range(threads + 1)]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tensorseal") as pool:
        futures = [pool.submit(worker, items[bounds[i] : bounds[i + 1]]) for i in range(threads)]
    for f in futures:
        f.result()
