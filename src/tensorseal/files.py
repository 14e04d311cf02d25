"""Whole-file operations: encrypt any file, decrypt back byte for byte, verify.

A valid safetensors file is sealed in tensors mode (its header becomes the index, its
data buffer the data region, cut per tensor); anything else is sealed in blob mode. Both
stream through scratch buffers, so memory is bounded by a few segments per thread.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from . import selection
from ._atomic import atomic_output
from .checks import Checks, SignersArg
from .errors import FormatError, LayoutError, UsageError
from .format.header import Header
from .format.safetensors_index import MAX_SAFETENSORS_HEADER, TensorIndex, parse_index
from .format.segments import Segment
from .format.signatures import Signature, encode_block
from .reader import Job, Progress, SealedFile
from .recipients import Identity, Recipient
from .signing import SigningKey, to_signing_keys
from .writer import SealOptions, write_sealed

IdentityArg = Identity | str | os.PathLike[str] | Sequence[Identity | str | os.PathLike[str]]


def read_safetensors_index(fd: int, size: int) -> TensorIndex | None:
    """The index of a safetensors file, or None if the file is not one.

    A file that starts like safetensors but breaks its rules raises FormatError.
    """
    head = os.pread(fd, 9, 0)
    if len(head) < 9 or head[8:9] != b"{":
        return None
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_SAFETENSORS_HEADER or n + 8 > size:
        return None
    index = parse_index(os.pread(fd, 8 + n, 0))
    if 8 + n + index.data_length != size:
        raise FormatError(f"safetensors data is {size - 8 - n} bytes but the header describes {index.data_length}")
    return index


def _reader(fd: int, base: int) -> Callable[[Segment, memoryview], memoryview]:
    def read(seg: Segment, scratch: memoryview) -> memoryview:
        if os.preadv(fd, [scratch], base + seg.start) != scratch.nbytes:
            raise FormatError("input file shrank while it was being read")
        return scratch

    return read


def encrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    recipients: Sequence[Recipient | str],
    *,
    mode: str = "auto",
    options: SealOptions = SealOptions(),
    threads: int | None = None,
    progress: Progress | None = None,
    sign_with: Sequence[SigningKey | str | os.PathLike[str]] = (),
    _require_match: bool = True,
) -> Header:
    """Seal ``src`` into ``dst``, signed by ``sign_with`` (keys or key files) if given.
    ``mode``: "auto" (safetensors -> tensors, else blob), "tensors" or "blob". With
    ``options.encrypt_only``/``options.plain`` (selective encryption) the tensors left in
    clear are still authenticated. Raises FormatError, UsageError, InvalidKeyError, OSError."""
    if mode not in ("auto", "tensors", "blob"):
        raise UsageError(f"unknown mode {mode!r}")
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise UsageError("input and output are the same file")
    fd = os.open(src, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        index = read_safetensors_index(fd, size) if mode != "blob" else None
        if index is None and mode == "tensors":
            raise FormatError(f"{os.fspath(src)} is not a safetensors file", hint="use blob mode for other files")
        plain: frozenset[int] = frozenset()
        if index is not None:
            lengths = [e.nbytes for e in index.entries]
            base, raw, seal_mode = len(index.raw), index.raw, "tensors"
            plain = selection.select(
                [e.name for e in index.entries], lengths, options.encrypt_only, options.plain,
                where=os.path.basename(os.fspath(src)), require_match=_require_match,
            ).plain  # fmt: skip
        else:
            if options.encrypt_only or options.plain:
                raise UsageError(f"{os.fspath(src)} is not a safetensors file: selective encryption needs tensors")
            lengths, base, raw, seal_mode = [size], 0, b"", "blob"
        return write_sealed(
            dst, mode=seal_mode, lengths=lengths, source=_reader(fd, base), recipients=recipients, index=raw,
            options=options, threads=threads, progress=progress, signers=to_signing_keys(sign_with), plain=plain,
        )  # fmt: skip
    finally:
        os.close(fd)


def encrypt_directory(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    recipients: Sequence[Recipient | str],
    *,
    options: SealOptions = SealOptions(),
    threads: int | None = None,
    sign_with: Sequence[SigningKey | str | os.PathLike[str]] = (),
    seal_config: bool = False,
) -> list[str]:
    """Seal every ``*.safetensors`` file of a model directory into ``dst`` under the same
    relative name (so ``model.safetensors.index.json`` keeps working) and copy every
    other file as it is, or, with ``seal_config``, seal it too (blob mode, same name).
    Each file's model identity gets its file name as the file id.
    Returns the sealed paths. Raises UsageError if ``dst`` exists and is not empty or no
    shard is found, and like :func:`encrypt_file`."""
    import dataclasses
    import shutil
    import tempfile

    src, dst = os.fspath(src), os.fspath(dst).rstrip(os.sep)
    if not os.path.isdir(src):
        raise UsageError(f"{src} is not a directory")
    if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
        raise UsageError(f"{dst} exists and is not an empty directory")
    parent = os.path.dirname(os.path.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    if options.encrypt_only or options.plain:
        _check_patterns_match(src, options)
    work = tempfile.mkdtemp(prefix="." + os.path.basename(dst) + ".", suffix=".partial", dir=parent)
    sealed = []
    try:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            rel_root = os.path.relpath(root, src)
            os.makedirs(os.path.join(work, rel_root), exist_ok=True)
            for name in sorted(files):
                a, rel = os.path.join(root, name), os.path.normpath(os.path.join(rel_root, name))
                if name.endswith(".safetensors"):
                    shard = dataclasses.replace(options.identity, file=name)
                    encrypt_file(a, os.path.join(work, rel), recipients, mode="tensors", threads=threads,
                                 options=dataclasses.replace(options, identity=shard), sign_with=sign_with,
                                 _require_match=False)  # fmt: skip
                    sealed.append(os.path.join(dst, rel))
                elif seal_config:
                    blob = dataclasses.replace(options, identity=dataclasses.replace(options.identity, file=name),
                                               encrypt_only=(), plain=())  # fmt: skip
                    encrypt_file(a, os.path.join(work, rel), recipients, mode="blob", threads=threads,
                                 options=blob, sign_with=sign_with)  # fmt: skip
                    sealed.append(os.path.join(dst, rel))
                else:
                    shutil.copyfile(a, os.path.join(work, rel))
        if not any(p.endswith(".safetensors") for p in sealed):
            raise UsageError(f"no .safetensors file under {src}")
        if os.path.isdir(dst):
            os.rmdir(dst)  # empty, checked above
        os.rename(work, dst)  # the output directory appears complete or not at all
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return sealed


def _check_patterns_match(src: str, options: SealOptions) -> None:
    """Every selective-encryption pattern must match a tensor in some shard of ``src``."""
    matched: set[str] = set()
    for root, _dirs, files in os.walk(src):
        for name in files:
            if name.endswith(".safetensors"):
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    index = read_safetensors_index(fd, os.fstat(fd).st_size)
                finally:
                    os.close(fd)
                if index is None:
                    raise FormatError(f"{os.path.join(root, name)} is not a safetensors file")
                names = [e.name for e in index.entries]
                # match only: whether a shard encrypts something is checked when it is sealed
                matched |= {p for p in options.encrypt_only + options.plain for n in names if fnmatchcase(n, p)}
    selection.check_all_matched(options.encrypt_only, options.plain, matched, src)


def decrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    identities: IdentityArg,
    *,
    signers: SignersArg | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    **expect: Any,
) -> Header:
    """Decrypt ``src`` to ``dst``, giving back the original bytes. ``dst`` appears only
    after every tag verified and every check passed: with ``signers``, a trusted
    signature; ``expect`` takes ``require_signature``, ``expect_name``,
    ``expect_version``, ``min_version`` and ``expect_file`` (see tensorseal.checks).
    Raises FormatError, AuthenticationError, NoIdentityMatchError, ModelMismatchError."""
    checks = Checks.build(signers, **expect)
    with SealedFile(src) as sealed:
        sealed.unlock(identities)
        checks.apply(sealed, threads=threads)
        prefix = sealed.index.raw if sealed.header.mode == "tensors" else b""
        with atomic_output(dst) as fd:
            os.ftruncate(fd, len(prefix) + sealed.header.data_length)
            os.pwrite(fd, prefix, 0)
            sealed.decrypt(
                [Job(s, None) for s in sealed.all_segments()],
                threads=threads, progress=progress, sink=(fd, len(prefix)),
            )  # fmt: skip
        return sealed.header


def read_blob(
    src: str | os.PathLike[str],
    identities: IdentityArg,
    *,
    signers: SignersArg | None = None,
    threads: int | None = None,
    **expect: Any,
) -> bytearray:
    """Decrypt a sealed blob (ONNX, TorchScript, pickle, ...) into memory, never to disk.

    Returns only after every tag verified (and the checks of :func:`decrypt_file`
    passed). Raises UsageError for a tensors-mode file, and like :func:`decrypt_file`.
    """
    checks = Checks.build(signers, **expect)
    with SealedFile(src) as sealed:
        sealed.unlock(identities)
        checks.apply(sealed, threads=threads)
        if sealed.header.mode != "blob":
            raise UsageError(f"{os.fspath(src)} holds tensors, not a blob", hint="use tensorseal.numpy/torch.load_file")
        out = bytearray(sealed.header.data_length)
        sealed.decrypt_tensors_into({0: memoryview(out)}, threads=threads)
        return out


def verify_file(
    src: str | os.PathLike[str],
    identities: IdentityArg | None = None,
    *,
    signers: SignersArg | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    **expect: Any,
) -> Header:
    """Check ``src`` and write nothing: with ``signers``, that a trusted publisher signed
    every byte (no decryption key needed); with ``identities``, every tag too; ``expect``
    as in :func:`decrypt_file`.

    Raises SignatureError, ModelMismatchError, LayoutError (a damaged spare header slot,
    which loaders tolerate), and like :func:`decrypt_file`.
    """
    checks = Checks.build(signers, **expect)
    if identities is None and checks.signers is None:
        raise UsageError("nothing to verify with: pass identities, signers, or both")
    with SealedFile(src) as sealed:
        if identities is not None:
            sealed.unlock(identities)
        checks.apply(sealed, threads=threads)
        if identities is not None:
            sealed.verify(threads=threads, progress=progress)
        if sealed.damaged_slots:  # loaders fall back to the good slot; verify says so
            raise LayoutError(
                f"{os.fspath(src)}: header slot {sealed.damaged_slots[0]} is damaged (or a rewrap was interrupted)",
                hint="the other slot is intact; `tensorseal rewrap FILE -i ...` rewrites both",
            )
        return sealed.header


def sign_file(
    path: str | os.PathLike[str], signing_keys: Sequence[SigningKey | str | os.PathLike[str]], *, threads: int | None = None
) -> list[Signature]:
    """Add signatures to a sealed file, keeping the others (a key that signed before is
    re-signed). The file is rewritten through a temp copy and renamed, so a crash leaves
    the old file. Needs no decryption key. Returns the file's signatures."""
    keys = to_signing_keys(signing_keys)
    if not keys:
        raise UsageError("at least one signing key is needed")
    with SealedFile(path) as sealed:
        digest = sealed.digest(threads=threads)
        new = [k.sign(digest) for k in keys]
        fresh = {s.key for s in new}
        signatures = [s for s in sealed.signatures if s.key not in fresh] + new
        end = sealed.header.file_size
        with open(path, "rb") as src, atomic_output(path) as fd, os.fdopen(os.dup(fd), "wb") as dst:
            remaining = end
            while remaining:
                chunk = src.read(min(remaining, 8 << 20))
                if not chunk:
                    raise FormatError("file shrank while it was being signed")
                dst.write(chunk)
                remaining -= len(chunk)
            dst.write(encode_block(signatures))
    return signatures
