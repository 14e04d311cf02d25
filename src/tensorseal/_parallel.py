"""Thread-pool helpers for the segment loops (AEAD calls and pread/pwrite release the GIL)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
import threading
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
    """Split ``items`` into ``threads`` contiguous chunks and run ``worker`` on each, one
    thread per chunk (the calling thread takes the first).

    Every chunk runs to completion or to its first error; then the first error (in chunk
    order) is raised, so the caller never sees partial success as success.
    """
    if not items:
        return
    threads = max(1, min(threads, len(items)))
    bounds = [len(items) * i // threads for i in range(threads + 1)]
    chunks = [items[bounds[i] : bounds[i + 1]] for i in range(threads)]
    errors: list[BaseException | None] = [None] * threads

    def run(i: int) -> None:
        try:
            worker(chunks[i])
        except BaseException as e:  # handed to the caller below
            errors[i] = e

    helpers = [threading.Thread(target=run, args=(i,), name=f"tensorseal-{i}", daemon=True) for i in range(1, threads)]
    for t in helpers:
        t.start()
    run(0)
    for t in helpers:
        t.join()
    for e in errors:
        if e is not None:
            raise e
