"""The staged load pipeline: read ciphertext, copy it to the tensors' memory, decrypt it
there with AES-CTR, and check every GCM tag on the host from the ciphertext alone.

For each group of consecutive segments (one contiguous range of the data region, at most
one staging buffer long), a worker thread:

1. waits until the device has finished reading its staging buffer (``Staging.wait``);
2. ``preadv``\\ s the group's ciphertext into it (pinned host memory on CUDA);
3. enqueues the copies into each tensor's own memory (``Backend.copy_in``; asynchronous
   on CUDA) and the in-place AES-256-CTR decryption of every encrypted segment
   (``Backend.ctr_decrypt_inplace``; a CUDA kernel on the same stream);
4. marks the buffer busy until those copies are done (``Staging.mark``);
5. meanwhile checks each segment's GCM tag from the ciphertext still in the staging
   buffer (:mod:`.ghash`), or the GMAC tag of a segment stored in clear (FORMAT 10.5),
   whose bytes are copied but not decrypted.

Each worker owns ``depth`` staging buffers (double buffering by default), so reading
group ``k + 1`` overlaps the copy and decryption of group ``k``. When every worker has
finished, the backend is synchronised; only then, and only if every tag verified, are the
destinations handed back. On any failure (a bad tag, a short read, a device error) every
destination is zeroed and released (``Backend.zero_and_free``) and the error is raised:
:class:`SegmentAuthenticationError` naming the first bad segment seen.

Plaintext never exists in host memory on the CUDA backend: the host only holds
ciphertext (and the bytes of segments stored in clear, which are not secret). The
:class:`CpuBackend` runs the very same steps with host buffers, so CI tests the pipeline
logic without a GPU; it is not a faster CPU loader (the host loader in ``reader.py``
decrypts straight into the tensors with one pass and is what ``device="cpu"`` uses).

Only AES-256-GCM files take this path: CTR + GHASH is what makes the split possible.
ChaCha20-Poly1305 files are loaded on the host and copied (``gpu.loader``).
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .. import _parallel
from ..errors import SegmentAuthenticationError, TruncatedError, UsageError
from ..format import constants as C
from ..format.safetensors_index import TensorEntry
from ..format.segments import Segment
from ..reader import SealedFile
from .ghash import GcmTagChecker, GmacChecker

MIB = 1 << 20
DEFAULT_STAGING = 8 * MIB
"""Staging buffer size (rounded up to whole segments): big enough for efficient
``preadv`` and DMA, small enough that threads x depth buffers stay a few hundred MiB."""

GCM_FIRST_COUNTER = struct.pack(">I", 2)
"""The low word of the first CTR block of a GCM message with a 96-bit nonce: J0 ends in
1 (used for the tag), the data starts at inc32(J0)."""


def counter_block(nonce: bytes) -> bytes:
    """The 16-byte initial CTR block of a GCM segment with a 96-bit ``nonce``."""
    return nonce + GCM_FIRST_COUNTER


# ---- the backend interface ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CtrJob:
    """Decrypt ``dest[offset : offset + length]`` in place with AES-CTR from ``counter``.

    ``counter`` is the 16-byte initial counter block; the backend increments its low 32
    bits (GCM's inc32). A segment is at most 64 MiB (2^22 blocks), so starting from 2 the
    low word never wraps and a 128-bit increment gives the same keystream.
    """

    dest: Any
    offset: int
    length: int
    counter: bytes


class Staging(Protocol):
    """A host buffer that ciphertext is read into."""

    buffer: memoryview  # writable bytes, for preadv

    def slice(self, start: int, stop: int) -> Any:
        """The bytes ``start:stop`` in the form :meth:`Backend.copy_in` takes."""
        ...

    def wait(self) -> None:
        """Block until the device has finished reading this buffer (safe to refill)."""
        ...

    def mark(self) -> None:
        """Record that reads of this buffer were enqueued up to now."""
        ...


class Backend(Protocol):
    """Where decrypted tensors live and how bytes get there."""

    name: str

    def allocate(self, nbytes: int) -> Any:
        """A new destination buffer of ``nbytes`` bytes (a tensor's own memory)."""
        ...

    def staging(self, nbytes: int) -> Staging:
        """A new staging buffer (pinned host memory on CUDA)."""
        ...

    def worker(self) -> contextlib.AbstractContextManager[None]:
        """Context entered by each worker thread (CUDA: its own stream)."""
        ...

    def copy_in(self, staging_view: Any, dest: Any, offset: int) -> None:
        """Copy ``staging_view`` to ``dest[offset:]`` (may be asynchronous)."""
        ...

    def ctr_decrypt_inplace(self, key: bytes, jobs: Sequence[CtrJob]) -> None:
        """AES-256-CTR over each job's range, in place, ordered after the copies this
        thread enqueued before (may be asynchronous)."""
        ...

    def synchronize(self) -> None:
        """Wait for every enqueued copy and decryption. Raises the device's errors."""
        ...

    def zero_and_free(self, dest: Any) -> None:
        """Overwrite ``dest`` with zeros and drop the backend's references to it."""
        ...

    def tensor(self, dest: Any, entry: TensorEntry) -> Any:
        """The tensor of ``entry`` over the (decrypted) bytes of ``dest``, no copy."""
        ...

    def close(self) -> None:
        """Release staging memory and wipe key material the backend holds."""
        ...


# ---- the CPU backend ---------------------------------------------------------------------
class _HostStaging:
    def __init__(self, nbytes: int) -> None:
        self.buffer = memoryview(bytearray(nbytes))

    def slice(self, start: int, stop: int) -> memoryview:
        return self.buffer[start:stop]

    def wait(self) -> None:
        pass

    def mark(self) -> None:
        pass


class CpuBackend:
    """Destinations are host buffers from ``empty`` (numpy arrays over torch- or
    numpy-owned memory); CTR with ``cryptography`` (``update_into`` in place).

    ``framework`` is a tensorseal framework adapter (``_tensors.Framework``): its
    ``empty`` allocates and its ``from_buffer`` builds the tensors; without one, numpy.
    """

    name = "cpu"

    def __init__(self, framework: Any = None) -> None:
        if framework is None:
            from ..numpy import _Numpy

            framework = _Numpy()
        self._fw = framework
        self.staging_allocated = 0  # bytes of staging buffers made so far
        self._lock = threading.Lock()

    def allocate(self, nbytes: int) -> Any:
        return self._fw.empty(nbytes)

    def staging(self, nbytes: int) -> _HostStaging:
        with self._lock:
            self.staging_allocated += nbytes
        return _HostStaging(nbytes)

    def worker(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def copy_in(self, staging_view: Any, dest: Any, offset: int) -> None:
        n = memoryview(staging_view).nbytes
        memoryview(dest).cast("B")[offset : offset + n] = staging_view

    def ctr_decrypt_inplace(self, key: bytes, jobs: Sequence[CtrJob]) -> None:
        algorithm = algorithms.AES(key)
        for job in jobs:
            view = memoryview(job.dest).cast("B")[job.offset : job.offset + job.length]
            Cipher(algorithm, modes.CTR(job.counter)).decryptor().update_into(view, view)

    def synchronize(self) -> None:
        pass

    def zero_and_free(self, dest: Any) -> None:
        import numpy as np

        view = memoryview(dest).cast("B")
        if view.nbytes:
            np.frombuffer(view, dtype=np.uint8).fill(0)

    def tensor(self, dest: Any, entry: TensorEntry) -> Any:
        return self._fw.from_buffer(dest, entry)

    def close(self) -> None:
        pass


# ---- planning ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """Consecutive segments that lie back to back in the data region: one ``preadv``."""

    start: int  # data-region offset
    length: int
    segments: tuple[Segment, ...]


def plan_groups(segments: Sequence[Segment], limit: int) -> list[Group]:
    """Cut ``segments`` (in data order) into groups of at most ``limit`` bytes (a group
    always holds at least one segment) without gaps."""
    groups: list[Group] = []
    current: list[Segment] = []
    start = end = 0
    for seg in segments:
        if current and (seg.start != end or end + seg.length - start > limit):
            groups.append(Group(start, end - start, tuple(current)))
            current = []
        if not current:
            start = end = seg.start
        current.append(seg)
        end += seg.length
    if current:
        groups.append(Group(start, end - start, tuple(current)))
    return groups


# ---- the pipeline ------------------------------------------------------------------------
@dataclass
class Stats:
    """What one pipelined load did (for benchmarks and tests)."""

    threads: int = 0
    groups: int = 0
    staging_bytes: int = 0  # per buffer
    staging_buffers: int = 0
    bytes_read: int = 0
    bytes_decrypted: int = 0  # on the backend (CTR)
    bytes_plain: int = 0  # segments stored in clear: verified, copied


def load_tensors(
    sealed: SealedFile,
    backend: Backend,
    tensors: Sequence[int] | None = None,
    *,
    threads: int | None = None,
    staging_bytes: int | None = None,
    depth: int = 2,
    stats: Stats | None = None,
) -> dict[int, Any]:
    """Load tensors ``tensors`` (positions in data order; all by default) of an unlocked
    AES-256-GCM file into new ``backend`` buffers; returns ``{position: buffer}``, every
    tag verified.

    Raises UsageError (file locked, not AES-256-GCM, bad arguments),
    SegmentAuthenticationError (the first bad segment seen; all buffers were zeroed),
    TruncatedError, OSError, and the backend's device errors.
    """
    if sealed.header.cipher != "aes-256-gcm":
        raise UsageError(f"the staged pipeline needs an aes-256-gcm file, not {sealed.header.cipher}")
    if depth < 1:
        raise UsageError(f"staging depth must be at least 1, got {depth}")
    data_key, plain_key, aad = sealed.segment_material()
    runs = sealed.runs
    wanted = range(len(runs)) if tensors is None else tensors
    segments = [s for t in wanted for s in sealed.segments(t)]
    limit = max(staging_bytes or DEFAULT_STAGING, sealed.header.segment_size)
    groups = plan_groups(segments, limit)
    workers = max(1, min(_parallel.thread_count(threads), len(groups)))
    staging_size = max((g.length for g in groups), default=0)
    stats = stats if stats is not None else Stats()
    stats.threads, stats.groups, stats.staging_bytes = workers, len(groups), staging_size
    stats.staging_buffers = workers * depth

    dests: dict[int, Any] = {}
    try:
        for t in wanted:
            dests[t] = backend.allocate(runs[t].length)
        if groups:
            _run(sealed, backend, groups, dests, data_key, plain_key, aad, workers, depth, staging_size, stats)
        backend.synchronize()
    except BaseException:
        with contextlib.suppress(Exception):
            backend.synchronize()  # let queued work finish before zeroing behind it
        for dest in dests.values():
            backend.zero_and_free(dest)
        dests.clear()
        with contextlib.suppress(Exception):
            backend.synchronize()
        raise
    return dests


def _run(
    sealed: SealedFile,
    backend: Backend,
    groups: list[Group],
    dests: dict[int, Any],
    data_key: bytes,
    plain_key: bytes,
    aad: bytes,
    workers: int,
    depth: int,
    staging_size: int,
    stats: Stats,
) -> None:
    fd, base, tags = sealed.fileno(), sealed.header.data_offset, sealed.tag_table
    runs = sealed.runs
    plain = frozenset(sealed.header.plain)
    gcm = GcmTagChecker(data_key, aad)
    gmac = GmacChecker(plain_key, aad)
    lock = threading.Lock()
    next_group = iter(range(len(groups)))
    abort = threading.Event()
    failures: list[tuple[int, BaseException]] = []
    counts = [0, 0, 0]  # read, decrypted, plain

    def take() -> Group | None:
        with lock:
            k = next(next_group, None)
        return None if k is None or abort.is_set() else groups[k]

    def one_group(group: Group, staging: Staging) -> None:
        view = staging.buffer[: group.length]
        if os.preadv(fd, [view], base + group.start) != group.length:
            raise TruncatedError(f"file ends inside segment {group.segments[0].tag_index} or after it")
        # copies: one per tensor piece (the consecutive segments of one tensor)
        lo = 0
        for k, seg in enumerate(group.segments):
            if k + 1 == len(group.segments) or group.segments[k + 1].tensor != seg.tensor:
                hi = seg.start + seg.length - group.start
                offset = group.start + lo - runs[seg.tensor].start
                backend.copy_in(staging.slice(lo, hi), dests[seg.tensor], offset)
                lo = hi
        jobs = [
            CtrJob(dests[s.tensor], s.start - runs[s.tensor].start, s.length, counter_block(s.nonce))
            for s in group.segments
            if s.tensor not in plain
        ]
        if jobs:
            backend.ctr_decrypt_inplace(data_key, jobs)
        staging.mark()
        # tags, from the bytes still in the staging buffer (ciphertext, or plain bytes)
        decrypted = clear = 0
        for s in group.segments:
            lo = s.start - group.start
            t = s.tag_index * C.TAG_SIZE
            tag = tags[t : t + C.TAG_SIZE]
            if s.tensor in plain:
                ok = gmac.verify(s.nonce, view[lo : lo + s.length], tag)
                clear += s.length
            else:
                ok = gcm.verify(s.nonce, view[lo : lo + s.length], tag)
                decrypted += s.length
            if not ok:
                raise SegmentAuthenticationError(sealed._describe(s))
        with lock:
            counts[0] += group.length
            counts[1] += decrypted
            counts[2] += clear

    def work(_: Sequence[int]) -> None:
        group: Group | None = None
        try:
            with backend.worker():
                buffers = [backend.staging(staging_size) for _ in range(depth)]
                try:
                    k = 0
                    while (group := take()) is not None:
                        staging = buffers[k % depth]
                        k += 1
                        staging.wait()
                        one_group(group, staging)
                finally:
                    for staging in buffers:
                        staging.wait()  # never free a buffer the device may still read
        except BaseException as exc:  # noqa: BLE001  (re-raised by the caller, after every worker stopped)
            abort.set()
            where = group.segments[0].tag_index if group is not None else -1
            with lock:
                failures.append((where, exc))

    _parallel.run_chunked(range(workers), work, workers)
    stats.bytes_read, stats.bytes_decrypted, stats.bytes_plain = counts
    if failures:
        failures.sort(key=lambda f: f[0])
        raise failures[0][1]
