"""The CUDA backend of the staged pipeline: torch CUDA tensors as destinations, pinned
staging buffers, one CUDA stream per worker thread, and the AES-256-CTR kernel of
:mod:`.aes_kernel` launched on that stream.

Why CuPy's ``RawKernel`` (the optional ``tensorseal[cuda]`` extra, ``cupy-cuda12x``):

- it compiles the kernel at run time with NVRTC (cached on disk by CuPy, about a second
  the first time), for whatever GPU is present, with no compiler, CUDA toolkit or build
  step at install time; tensorseal stays a pure-Python wheel;
- ``torch.utils.cpp_extension.load_inline`` needs ``nvcc``, ninja and a C++ toolchain on
  every serving machine and compiles for tens of seconds on first use; a torch extension
  built at install time ties the wheel to one torch and CUDA version;
- Triton could express CTR, but the T-table lookups become gathers from global memory
  (no explicit shared memory), and its kernels are harder to check against C code on a
  machine without a GPU. The CUDA C source here also compiles on the host
  (``TS_HOST_EMULATION``), which is how CI checks it against ``cryptography``.

CuPy and torch share the device's primary context; the kernel runs on torch's stream
(``cupy.cuda.ExternalStream``) and takes raw device pointers, so no memory changes hands
between the two libraries.

Everything here imports torch and CuPy lazily: importing this module on a machine
without them (or without a GPU) is fine; constructing a :class:`CudaBackend` is not.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import UnsupportedDtypeError, UsageError
from ..format.safetensors_index import TensorEntry
from .aes_kernel import JOB, KERNEL_NAME, SOURCE, expand_key_256
from .pipeline import CtrJob

THREADS_PER_BLOCK = 256
BLOCKS_PER_THREAD = 4  # AES blocks per thread (grid-stride), to amortise each thread block's table copy
MAX_GRID_X = 2048  # thread blocks per segment
MAX_JOBS_PER_LAUNCH = 65535  # gridDim.y limit

_INSTALL_HINT = "pip install 'tensorseal[cuda]' (CuPy for CUDA 12)"
_kernels: dict[int, Any] = {}
_kernels_lock = threading.Lock()
_warned = False


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise UsageError("torch is not installed", hint="pip install 'tensorseal[torch]'") from None
    return torch


def _cupy() -> Any:
    try:
        import cupy
    except ImportError:
        raise UsageError("the CUDA decryption kernel needs CuPy", hint=_INSTALL_HINT) from None
    return cupy


def cuda_available() -> bool:
    """True if torch is installed and sees a CUDA device. Raises nothing."""
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001  (a broken driver reads as "no GPU")
        return False


def usable() -> bool:
    """True if the CUDA pipeline can run here: a CUDA device and CuPy. Warns once if a GPU
    is present but CuPy is not (loads then decrypt on the host). Raises nothing."""
    global _warned
    if not cuda_available():
        return False
    try:
        import cupy  # noqa: F401
    except ImportError:
        if not _warned:
            _warned = True
            warnings.warn(
                f"tensorseal: decrypting on the host and copying to the GPU; for in-GPU decryption {_INSTALL_HINT}",
                RuntimeWarning,
                stacklevel=3,
            )
        return False
    return True


def kernel(device_index: int) -> Any:
    """The compiled AES-256-CTR kernel for one device (compiled once per process)."""
    with _kernels_lock:
        k = _kernels.get(device_index)
        if k is None:
            cupy = _cupy()
            with cupy.cuda.Device(device_index):
                k = cupy.RawKernel(SOURCE, KERNEL_NAME)
                if hasattr(k, "compile"):
                    k.compile()
            _kernels[device_index] = k
        return k


def job_table(jobs: Sequence[CtrJob]) -> tuple[bytearray, int]:
    """The kernel's job table for ``jobs`` (destinations with ``data_ptr()``: torch
    tensors) and the longest job. Raises UsageError for a destination not 16-byte
    aligned (the kernel reads and writes 16 bytes at a time)."""
    table = bytearray(JOB.size * len(jobs))
    longest = 0
    for i, job in enumerate(jobs):
        ptr = job.dest.data_ptr() + job.offset
        if ptr % 16:
            raise UsageError("a CTR destination must be 16-byte aligned")
        n0, n1, n2, c = struct.unpack(">IIII", job.counter)
        JOB.pack_into(table, JOB.size * i, ptr, job.length, n0, n1, n2, c)
        longest = max(longest, job.length)
    return table, longest


class _PinnedStaging:
    """A pinned host buffer and the event after which the device no longer reads it."""

    def __init__(self, nbytes: int, torch: Any) -> None:
        self._torch = torch
        self._tensor = torch.empty(max(nbytes, 1), dtype=torch.uint8, pin_memory=True)
        self.buffer = memoryview(self._tensor.numpy()).cast("B")[:nbytes]
        self._event: Any = None

    def slice(self, start: int, stop: int) -> Any:
        return self._tensor[start:stop]

    def wait(self) -> None:
        if self._event is not None:
            self._event.synchronize()
            self._event = None

    def mark(self) -> None:
        event = self._torch.cuda.Event()
        event.record()  # on this thread's current stream
        self._event = event


class CudaBackend:
    """Destinations are ``torch.uint8`` CUDA tensors; the tensors returned are views of
    them (no copy). ``timing=True`` records CUDA events around every kernel launch
    (:meth:`kernel_seconds`). Raises UsageError if torch, CUDA or CuPy is missing."""

    name = "cuda"

    def __init__(self, device: Any = "cuda", *, timing: bool = False) -> None:
        torch = _torch()
        if not cuda_available():
            raise UsageError("no CUDA device is available", hint="load with device='cpu'")
        self._cupy = _cupy()
        dev = torch.device(device)
        if dev.type != "cuda":
            raise UsageError(f"the CUDA backend needs a cuda device, not {device!r}")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self._torch = torch
        self.device = dev
        self._kernel = kernel(dev.index)
        self._origin = torch.cuda.current_stream(dev)
        self._lock = threading.Lock()
        self._streams: list[Any] = []
        self._round_keys: dict[bytes, Any] = {}
        self._external: dict[int, Any] = {}
        self.timing = timing
        self._events: list[tuple[Any, Any, int]] = []
        self.staging_allocated = 0  # bytes of pinned staging buffers made so far

    # ---- memory ------------------------------------------------------------------------
    def allocate(self, nbytes: int) -> Any:
        return self._torch.empty(nbytes, dtype=self._torch.uint8, device=self.device)

    def staging(self, nbytes: int) -> _PinnedStaging:
        with self._lock:
            self.staging_allocated += nbytes
        return _PinnedStaging(nbytes, self._torch)

    @contextlib.contextmanager
    def worker(self) -> Iterator[None]:
        torch = self._torch
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(self._origin)  # after whatever the caller queued (and our allocations)
        with self._lock:
            self._streams.append(stream)
        with torch.cuda.device(self.device), torch.cuda.stream(stream), self._cupy.cuda.Device(self.device.index):
            yield

    def copy_in(self, staging_view: Any, dest: Any, offset: int) -> None:
        n = staging_view.numel()
        dest[offset : offset + n].copy_(staging_view, non_blocking=True)

    # ---- decryption --------------------------------------------------------------------
    def _keys_on_device(self, key: bytes) -> Any:
        with self._lock:
            rk = self._round_keys.get(key)
            if rk is None:
                import numpy as np

                words = np.array(expand_key_256(key), dtype=np.uint32)
                rk = self._torch.from_numpy(words.view(np.int32)).to(self.device)
                words.fill(0)
                self._round_keys[key] = rk
            return rk

    def _stream(self) -> tuple[Any, Any]:
        torch_stream = self._torch.cuda.current_stream(self.device)
        ptr = torch_stream.cuda_stream
        with self._lock:
            ext = self._external.get(ptr)
            if ext is None:
                ext = self._external[ptr] = self._cupy.cuda.ExternalStream(ptr)
        return torch_stream, ext

    def ctr_decrypt_inplace(self, key: bytes, jobs: Sequence[CtrJob]) -> None:
        import numpy as np

        torch = self._torch
        rk = self._keys_on_device(key)
        jobs = [j for j in jobs if j.length]
        for first in range(0, len(jobs), MAX_JOBS_PER_LAUNCH):
            batch = jobs[first : first + MAX_JOBS_PER_LAUNCH]
            table, longest = job_table(batch)
            host = torch.frombuffer(table, dtype=torch.uint8).pin_memory()
            on_device = host.to(self.device, non_blocking=True)
            blocks = -(-longest // 16)
            per_block = THREADS_PER_BLOCK * BLOCKS_PER_THREAD
            grid = (max(1, min(-(-blocks // per_block), MAX_GRID_X)), len(batch))
            torch_stream, ext = self._stream()
            start = end = None
            if self.timing:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record(torch_stream)
            with self._cupy.cuda.Device(self.device.index), ext:
                self._kernel(grid, (THREADS_PER_BLOCK,), (np.uint64(rk.data_ptr()), np.uint64(on_device.data_ptr())))
            if self.timing:
                end.record(torch_stream)
                with self._lock:
                    self._events.append((start, end, sum(j.length for j in batch)))

    def synchronize(self) -> None:
        with self._lock:  # torch hands out pooled streams: forget them once drained
            streams, self._streams = self._streams, []
        for stream in streams:
            stream.synchronize()
            self._origin.wait_stream(stream)
        self._torch.cuda.synchronize(self.device)

    def reset_timing(self) -> None:
        """Forget the kernel timings recorded so far."""
        with self._lock:
            self._events.clear()

    def kernel_seconds(self) -> tuple[float, int]:
        """(seconds inside the decryption kernel, bytes decrypted) since construction,
        from CUDA events (``timing=True``); call after :meth:`synchronize`."""
        with self._lock:
            events = list(self._events)
        return sum(s.elapsed_time(e) for s, e, _ in events) / 1000.0, sum(n for _, _, n in events)

    # ---- results and clean-up ----------------------------------------------------------
    def zero_and_free(self, dest: Any) -> None:
        dest.zero_()

    def tensor(self, dest: Any, entry: TensorEntry) -> Any:
        from ..torch import _DTYPES

        torch = self._torch
        dtype = getattr(torch, _DTYPES.get(entry.dtype, ""), None)
        if dtype is None:
            raise UnsupportedDtypeError(f"torch cannot represent {entry.dtype} tensors")
        if dest.numel() == 0:
            return torch.empty(entry.shape, dtype=dtype, device=self.device)
        return dest.view(dtype).reshape(entry.shape)

    def close(self) -> None:
        """Zero the round keys on the device; forget streams. Raises the device's errors."""
        with self._lock:
            keys, self._round_keys = list(self._round_keys.values()), {}
            self._streams.clear()
            self._external.clear()
        for rk in keys:
            rk.zero_()
        if keys:
            self._torch.cuda.synchronize(self.device)
