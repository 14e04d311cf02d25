"""The framework-independent half of save_file / load_file / safe_open.

A framework adapter (numpy or torch) says how to turn a tensor into bytes and how to turn
a freshly allocated byte buffer into a tensor; everything else is shared here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from . import selection
from .errors import UsageError
from .checks import NO_CHECKS, Checks
from .files import IdentityArg
from .format.header import ModelIdentity
from .format.safetensors_index import TensorEntry, build_index
from .format.segments import Segment
from .reader import Job, SealedFile
from .recipients import Recipient
from .signing import SigningKey, to_signing_keys
from .writer import SealOptions, write_sealed

T = TypeVar("T")


class Framework(Protocol[T]):
    name: str

    def to_bytes(self, tensor: T) -> tuple[str, tuple[int, ...], np.ndarray]:
        """(safetensors dtype, shape, contiguous little-endian uint8 view of the data)."""
        ...

    def empty(self, nbytes: int) -> np.ndarray:
        """A new uint8 buffer for one tensor, from the memory the framework will own."""
        ...

    def from_buffer(self, buf: np.ndarray, entry: TensorEntry) -> T:
        """Reinterpret a uint8 buffer holding the tensor's bytes as a tensor."""
        ...

    def index(self, tensor: T, key: Any) -> T:
        """``tensor[key]`` in the framework's own indexing rules."""
        ...


def save(
    fw: Framework[T],
    tensors: Mapping[str, T],
    path: str | os.PathLike[str],
    recipients: Sequence[Recipient | str],
    metadata: Mapping[str, str] | None,
    options: SealOptions,
    threads: int | None,
    sign_with: Sequence[SigningKey | str | os.PathLike[str]] = (),
) -> None:
    if not isinstance(tensors, Mapping):
        raise UsageError("tensors must be a dict of name -> tensor")
    data: dict[str, np.ndarray] = {}
    specs: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str):
            raise UsageError(f"tensor names must be strings, got {name!r}")
        dtype, shape, raw = fw.to_bytes(tensor)
        specs[name], data[name] = (dtype, shape), raw
    index = build_index(specs, metadata)
    lengths = [e.nbytes for e in index.entries]
    plain = selection.select([e.name for e in index.entries], lengths, options.encrypt_only, options.plain).plain
    views = [memoryview(data[e.name]) for e in index.entries]
    starts = [e.start for e in index.entries]

    def source(seg: Segment, scratch: memoryview) -> memoryview:
        off = seg.start - starts[seg.tensor]
        return views[seg.tensor][off : off + seg.length]

    write_sealed(
        path, mode="tensors", lengths=lengths, source=source, recipients=recipients, index=index.raw,
        options=options, threads=threads, signers=to_signing_keys(sign_with), plain=plain,
    )  # fmt: skip


def load(fw: Framework[T], path: str | os.PathLike[str], identities: IdentityArg, threads: int | None, checks: Checks) -> dict[str, T]:
    with open_unlocked(path, identities, checks, threads) as sealed:
        return load_opened(fw, sealed, threads)


def load_opened(fw: Framework[T], sealed: SealedFile, threads: int | None) -> dict[str, T]:
    """Decrypt every tensor of an unlocked file on the host (what :func:`load` does once
    the file is open; also the fallback of ``tensorseal.gpu``)."""
    entries = sealed.index.entries
    buffers = [fw.empty(e.nbytes) for e in entries]
    try:
        sealed.decrypt_tensors_into({i: memoryview(b) for i, b in enumerate(buffers)}, threads=threads)
    except BaseException:
        for b in buffers:  # leave no plaintext of the good segments behind
            b.fill(0)
        raise
    return {e.name: fw.from_buffer(b, e) for e, b in zip(entries, buffers)}


def open_unlocked(
    path: str | os.PathLike[str], identities: IdentityArg, checks: Checks = NO_CHECKS, threads: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> SealedFile:  # fmt: skip
    """Open (a path or a URL), unwrap, authenticate, then apply ``checks`` (signature,
    model identity)."""
    sealed = SealedFile(path, storage_options=storage_options)
    try:
        sealed.unlock(identities)
        checks.apply(sealed, threads=threads)
        if sealed.header.mode != "tensors":
            raise UsageError(f"{sealed.path} is a sealed blob, not tensors", hint="use `tensorseal decrypt`")
    except BaseException:
        sealed.close()
        raise
    return sealed


def identity_from(name: str | None, version: str | None) -> ModelIdentity:
    return ModelIdentity(name=name, version=version)


class SafeOpen(Generic[T]):
    """``safe_open`` over a sealed file: the index is decrypted once, tensors on demand."""

    def __init__(
        self, fw: Framework[T], path: str | os.PathLike[str], identities: IdentityArg, threads: int | None,
        checks: Checks = NO_CHECKS, storage_options: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        self._fw = fw
        self._threads = threads
        self._sealed = open_unlocked(path, identities, checks, threads, storage_options)
        self._index = self._sealed.index
        self._by_name = self._index.by_name()

    def __enter__(self) -> SafeOpen[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sealed.close()

    def keys(self) -> list[str]:
        return sorted(self._by_name)

    def metadata(self) -> dict[str, str] | None:
        return None if self._index.metadata is None else dict(self._index.metadata)

    def _position(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise UsageError(f"no tensor named {name!r} in this file") from None

    def get_tensor(self, name: str) -> T:
        """Decrypt and authenticate one tensor. Raises UsageError for an unknown name."""
        i = self._position(name)
        entry = self._index.entries[i]
        buf = self._fw.empty(entry.nbytes)
        self._sealed.decrypt_tensors_into({i: memoryview(buf)}, threads=self._threads)
        return self._fw.from_buffer(buf, entry)

    def get_slice(self, name: str) -> TensorSlice[T]:
        i = self._position(name)
        return TensorSlice(self, i, self._index.entries[i])

    def _read_rows(self, i: int, entry: TensorEntry, lo: int, hi: int) -> np.ndarray:
        """Bytes of rows ``lo..hi`` of tensor ``i``, decrypting only the segments they
        touch (each fully authenticated)."""
        row = entry.nbytes // entry.shape[0]
        run_start = self._sealed.runs[i].start
        first, last = run_start + lo * row, run_start + hi * row  # in data-region offsets
        wanted = [s for s in self._sealed.segments(i) if s.start < last and s.start + s.length > first]
        if not wanted:
            return self._fw.empty(0)
        base = wanted[0].start
        buf = self._fw.empty(wanted[-1].start + wanted[-1].length - base)
        mv = memoryview(buf)
        self._sealed.decrypt([Job(s, mv[s.start - base : s.start - base + s.length]) for s in wanted], threads=self._threads)
        return buf[first - base : last - base]


class TensorSlice(Generic[T]):
    """Lazy view of one tensor: ``get_shape()``, ``get_dtype()``, and ``[...]`` indexing
    that decrypts only the segments holding the first-axis range asked for."""

    def __init__(self, owner: SafeOpen[T], position: int, entry: TensorEntry) -> None:
        self._owner, self._i, self._entry = owner, position, entry

    def get_shape(self) -> list[int]:
        return list(self._entry.shape)

    def get_dtype(self) -> str:
        return self._entry.dtype

    def __getitem__(self, key: Any) -> T:
        e, fw = self._entry, self._owner._fw
        first = key[0] if isinstance(key, tuple) and key else key
        rest = key[1:] if isinstance(key, tuple) else ()
        if not e.shape or e.nbytes == 0 or not isinstance(first, (slice, int, np.integer)) or isinstance(first, bool):
            return fw.index(self._owner.get_tensor(e.name), key)  # Ellipsis, None, fancy: read all
        n = e.shape[0]
        if isinstance(first, slice):
            rows = range(*first.indices(n))
        else:
            i = int(first) + (n if first < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {int(first)} is out of range for axis 0 of size {n}")
            rows = range(i, i + 1)
        lo, hi = (min(rows), max(rows) + 1) if rows else (0, 0)
        block = self._owner._read_rows(self._i, e, lo, hi)
        tensor = fw.from_buffer(block, TensorEntry(e.name, e.dtype, (hi - lo, *e.shape[1:]), 0, block.nbytes))
        if isinstance(first, slice):
            stop = rows.stop - lo
            local: Any = slice(rows.start - lo, stop if stop >= 0 else None, rows.step) if rows else slice(0, 0)
        else:
            local = 0
        return fw.index(tensor, (local, *rest))
