"""A path for frameworks that can only open a file by name (weaker than loading from memory).

    with tensorseal.memfile.plaintext_path("model.onnx.tseal", ["key.txt"]) as path:
        session = some_framework.load(path)          # opens "/proc/self/fd/N"

The sealed file is authenticated and decrypted into an anonymous memory file
(``memfd_create`` on Linux; where that is missing, a 0600 file in ``/dev/shm`` that is
unlinked as soon as it is open) and the block gets a path to it. On exit the contents are
overwritten with zeros, the file is truncated to nothing and closed, so the path no longer
opens. The plaintext never lands in a file on disk, but while the block runs it is a file
that the process's own user and root can read through ``/proc``, and tmpfs pages can be
swapped: see "Path-only frameworks" in docs/SECURITY.md. Prefer the in-memory loaders
(:func:`tensorseal.read_blob`, :mod:`tensorseal.torch`, :mod:`tensorseal.onnx`) wherever
the framework takes bytes or a stream.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import secrets
from collections.abc import Iterator
from typing import Any

from .checks import Checks, SignersArg
from .errors import UsageError
from .files import IdentityArg
from .reader import Job, SealedFile

__all__ = ["plaintext_path"]

MEMFD_NAME = "tensorseal"  # shows as "/memfd:tensorseal (deleted)" in /proc/PID/fd: no secret
MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs", "hugetlbfs"})
_F_SEAL_FUTURE_WRITE = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x0010)  # Linux 5.1+, not in Python's fcntl
_WIPE_CHUNK = 1 << 20


def _mount_fs_type(directory: str) -> str | None:
    """File system type of the mount holding ``directory``, from /proc/self/mountinfo, or
    None where that cannot be read."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    target = os.path.realpath(directory)
    best, fs_type = -1, None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # the longest mount point wins; later mounts shadow earlier ones
            best, fs_type = len(point), tail[0]
    return fs_type


def _data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The byte ranges of ``fd`` below ``size`` that hold data: zeroing a hole would only
    allocate memory (and, on a full tmpfs, fault)."""
    if not hasattr(os, "SEEK_DATA"):
        yield 0, size
        return
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole is left
                return
            if e.errno == errno.EINVAL and off == 0:  # no SEEK_DATA on this file system
                yield 0, size
                return
            raise
        if start >= size:
            return
        stop = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, stop
        off = stop


class _MemoryFile:
    """An open memory-backed file: its descriptor, the path to hand out, and the name to
    unlink (only where no /proc path could stand for it)."""

    def __init__(self, fd: int, path: str, name: str | None, kind: str) -> None:
        self.fd, self.path, self.name, self.kind = fd, path, name, kind
        self.map: mmap.mmap | None = None
        self.sealed = False
        self.link_dir: str | None = None

    @classmethod
    def create(cls, *, suffix: str, use_memfd: bool, shm_dir: str, fd_dir: str) -> _MemoryFile:
        has_proc = os.path.isdir(fd_dir)
        if use_memfd and has_proc and hasattr(os, "memfd_create"):
            flags = os.MFD_CLOEXEC | getattr(os, "MFD_ALLOW_SEALING", 0)
            try:
                fd = os.memfd_create(MEMFD_NAME, flags)
            except OSError as e:  # ENOSYS, or refused by a seccomp filter: try /dev/shm
                if e.errno not in (errno.ENOSYS, errno.EPERM, errno.EACCES, errno.EINVAL):
                    raise
            else:
                return cls(fd, f"{fd_dir}/{fd}", None, "memfd")
        if not os.path.isdir(shm_dir):
            raise UsageError(
                f"no memory-backed file is available here (no memfd_create, no {shm_dir})",
                hint="load from memory instead: tensorseal.read_blob, tensorseal.torch.load, tensorseal.onnx",
            )
        fs_type = _mount_fs_type(shm_dir)
        if fs_type is not None and fs_type not in MEMORY_FILE_SYSTEMS:
            raise UsageError(
                f"{shm_dir} is on a {fs_type} file system, not in memory: refusing to write plaintext there",
                hint="mount a tmpfs there, or load from memory with tensorseal.read_blob",
            )
        name = os.path.join(shm_dir, f".tensorseal-{secrets.token_hex(16)}{suffix}")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(name, flags, 0o600)
        if not has_proc:
            return cls(fd, name, name, "shm")  # the name stays until the block ends
        try:
            os.unlink(name)  # before any plaintext is written
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, f"{fd_dir}/{fd}", None, "shm")

    def fill(self, sealed: SealedFile, prefix: bytes, threads: int | None) -> None:
        """Decrypt every segment into the file (only authenticated segments are written),
        then seal it against writes where the kernel allows."""
        size = len(prefix) + sealed.header.data_length
        os.ftruncate(self.fd, size)
        if size:
            self.map = mmap.mmap(self.fd, size)  # kept only to wipe through, even once sealed
        if prefix and os.pwrite(self.fd, prefix, 0) != len(prefix):
            raise OSError("short write to the memory file")
        sealed.decrypt([Job(s, None) for s in sealed.all_segments()], threads=threads, sink=(self.fd, len(prefix)))
        if self.kind == "memfd":
            try:  # no more write() or new writable shared mappings, by anyone; no growing
                fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | _F_SEAL_FUTURE_WRITE)
                self.sealed = True
            except OSError:  # kernel before 5.1: the file stays writable
                pass

    def link(self, suffix: str) -> str:
        """A symlink named ``model<suffix>`` to the /proc path, for frameworks that look at
        the extension. It holds no secret; it is removed on exit."""
        import tempfile

        self.link_dir = tempfile.mkdtemp(prefix="tensorseal-")
        link = os.path.join(self.link_dir, "model" + suffix)
        os.symlink(self.path, link)
        return link

    def wipe(self) -> None:
        """Zeros over the contents, truncate to nothing, close, remove every name."""
        try:
            if self.map is not None:
                n = min(len(self.map), os.fstat(self.fd).st_size)  # never touch pages past the end
                zeros = bytes(min(n, _WIPE_CHUNK))
                for start, stop in _data_ranges(self.fd, n):
                    for off in range(start, stop, _WIPE_CHUNK):
                        end = min(off + _WIPE_CHUNK, stop)
                        self.map[off:end] = zeros[: end - off]
                self.map.close()
                self.map = None
            os.ftruncate(self.fd, 0)
        finally:
            if self.name is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.name)
            if self.link_dir is not None:
                with contextlib.suppress(FileNotFoundError):
                    for entry in os.listdir(self.link_dir):
                        os.unlink(os.path.join(self.link_dir, entry))
                    os.rmdir(self.link_dir)
            os.close(self.fd)


@contextlib.contextmanager
def plaintext_path(
    path: str | os.PathLike[str],
    identities: IdentityArg,
    *,
    signers: SignersArg | None = None,
    threads: int | None = None,
    suffix: str = "",
    _memfd: bool = True,
    _shm_dir: str = "/dev/shm",
    _fd_dir: str = "/proc/self/fd",
    **expect: Any,
) -> Iterator[str]:
    """Yield a path to the decrypted contents of a sealed file, held in memory only: the
    blob of a blob-mode file, or the original safetensors bytes of a tensors-mode file.

    The path is given only after every tag verified and every check passed (``signers``
    and ``expect_name``, ``expect_version``, ``min_version``, ``expect_file``, ``require_signature``
    as in :func:`tensorseal.decrypt_file`). ``suffix`` (e.g. ``".onnx"``) makes the path
    end with it, for frameworks that pick a parser by extension. On exit, normal or not,
    the contents are zeroed and the path stops opening; objects that keep reading the
    file afterwards (a memory map of it) see an empty file. Weaker than the in-memory
    loaders: see docs/SECURITY.md.

    Raises NoIdentityMatchError, AuthenticationError, ModelMismatchError, FormatError,
    UsageError (bad suffix, or no memory-backed file system: it never falls back to disk),
    OSError.
    """
    checks = Checks.build(signers, **expect)
    if os.sep in suffix or "\0" in suffix or (os.altsep and os.altsep in suffix):
        raise UsageError(f"suffix {suffix!r} must not contain a path separator")
    with SealedFile(path) as sealed:
        sealed.unlock(identities)
        checks.apply(sealed, threads=threads)
        prefix = sealed.index.raw if sealed.header.mode == "tensors" else b""
        mem = _MemoryFile.create(suffix=suffix, use_memfd=_memfd, shm_dir=_shm_dir, fd_dir=_fd_dir)
        try:
            mem.fill(sealed, prefix, threads)
            given = mem.link(suffix) if suffix and mem.name is None else mem.path
        except BaseException:
            mem.wipe()
            raise
    try:
        yield given
    finally:
        mem.wipe()
