"""Choosing between the staged pipeline and the host loader, for ``load_file`` and
``safe_open`` with a device.

``pipeline`` (the private ``_pipeline`` argument of ``tensorseal.torch.load_file`` and
``safe_open``):

- ``None`` (the default): the CUDA pipeline when the device is ``cuda[:n]``, torch sees
  a GPU, CuPy is installed and the file is AES-256-GCM; otherwise the host loader, then
  ``.to(device)`` (with a RuntimeWarning if a GPU is there but CuPy or its kernel
  compiler is not);
- ``"cpu"``: the pipeline with :class:`~.pipeline.CpuBackend` (tests, CI);
- ``"cuda"``: the CUDA pipeline, or UsageError if it cannot run here;
- a backend object: that backend (benchmarks use a timing ``CudaBackend``).

Whatever is asked, a ChaCha20-Poly1305 file goes through the host loader: the split into
CTR on the device and GHASH on the host exists only for GCM.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, TypeVar

from .. import _tensors
from ..checks import Checks
from ..errors import UsageError
from ..files import IdentityArg
from ..reader import SealedFile
from .pipeline import Backend, CpuBackend, load_tensors

T = TypeVar("T")


def select_backend(fw: Any, sealed: SealedFile, pipeline: Any) -> Backend | None:
    """The backend that loads ``sealed`` for framework adapter ``fw``, or None for the
    host loader. Raises UsageError (unknown ``pipeline``, or ``"cuda"`` where CUDA or CuPy
    is missing)."""
    if pipeline is not None and not isinstance(pipeline, str):
        if not all(hasattr(pipeline, m) for m in ("allocate", "copy_in", "ctr_decrypt_inplace", "zero_and_free")):
            raise UsageError(f"{pipeline!r} is not a pipeline backend")
    elif pipeline not in (None, "cpu", "cuda"):
        raise UsageError(f"unknown pipeline {pipeline!r} (use 'cpu' or 'cuda')")
    if sealed.header.cipher != "aes-256-gcm":
        return None  # ChaCha20-Poly1305: decrypted on the host, then copied
    if pipeline == "cpu":
        return CpuBackend(fw)
    device = str(getattr(fw, "device", "cpu"))
    if pipeline == "cuda":
        from .cuda import CudaBackend

        return CudaBackend(device if device.startswith("cuda") else "cuda")
    if pipeline is None:
        if not device.startswith("cuda"):
            return None
        from . import cuda

        if not cuda.usable():
            return None
        try:
            return cuda.CudaBackend(device)
        except Exception as exc:  # noqa: BLE001  (e.g. NVRTC missing: still load, on the host)
            warnings.warn(
                f"tensorseal: in-GPU decryption unavailable ({exc}); decrypting on the host",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
    return pipeline  # type: ignore[no-any-return]


def _tensors_of(sealed: SealedFile, backend: Backend, positions: list[int], threads: int | None) -> dict[str, Any]:
    entries = sealed.index.entries
    dests = load_tensors(sealed, backend, positions, threads=threads)
    try:
        return {entries[t].name: backend.tensor(dests[t], entries[t]) for t in positions}
    except BaseException:
        for dest in dests.values():
            backend.zero_and_free(dest)
        raise


def load(
    fw: Any, path: str | os.PathLike[str], identities: IdentityArg, threads: int | None, checks: Checks, pipeline: Any
) -> dict[str, Any]:
    """``load_file`` through the pipeline when :func:`select_backend` picks one, else the
    host loader. Raises like ``tensorseal.torch.load_file``."""
    with _tensors.open_unlocked(path, identities, checks, threads) as sealed:
        backend = select_backend(fw, sealed, pipeline)
        if backend is None:
            return _tensors.load_opened(fw, sealed, threads)
        try:
            return _tensors_of(sealed, backend, list(range(len(sealed.index.entries))), threads)
        finally:
            backend.close()


class PipelinedSafeOpen(_tensors.SafeOpen[T]):
    """``safe_open`` whose ``get_tensor`` goes through the pipeline (one tensor at a
    time); ``get_slice`` still decrypts its rows on the host."""

    def __init__(
        self, fw: Any, path: str | os.PathLike[str], identities: IdentityArg, threads: int | None, checks: Checks,
        pipeline: Any,
    ) -> None:  # fmt: skip
        super().__init__(fw, path, identities, threads, checks)
        try:
            self._backend = select_backend(fw, self._sealed, pipeline)
        except BaseException:
            self._sealed.close()
            raise

    def get_tensor(self, name: str) -> T:
        """Decrypt and authenticate one tensor. Raises UsageError for an unknown name,
        SegmentAuthenticationError, FormatError, OSError."""
        if self._backend is None:
            return super().get_tensor(name)
        i = self._position(name)
        return _tensors_of(self._sealed, self._backend, [i], self._threads)[name]

    def close(self) -> None:
        backend, self._backend = getattr(self, "_backend", None), None
        try:
            if backend is not None:
                backend.close()
        finally:
            super().close()
