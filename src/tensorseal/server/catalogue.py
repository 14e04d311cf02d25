"""The models a server offers: built once, at start, from the sealed files under a directory.

Clients name a model by name and version (``/models/NAME/VERSION``), never by a path:
names and versions must match :data:`NAME_PATTERN` and are looked up in this catalogue,
so no request ever reaches the file system with a client's string.

Each sealed file under the directory (found recursively; hidden files, symbolic links and
files that are not sealed are skipped) is one model version, named by its header's model
identity (``encrypt --name N --model-version V``). Every file is opened once, at start,
and served from that open descriptor: a file renamed over it later is not served, and a
file changed in place is refused (its size or time changed). At start the server also
computes, for each file:

* its ETag: the first 128 bits of the BLAKE3 of the whole file (so a new signature block
  gives a new ETag), and the full BLAKE3 for the ``X-Tensorseal-Blake3`` header;
* its manifest: the document format of :mod:`tensorseal.manifest`
  (``tensorseal-manifest/v1``) listing the one file with its size and file digest (the
  digest publisher signatures sign), signed by the server's signing keys, if any.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .._download import blake3_of_fd
from ..errors import FormatError, UsageError
from ..format.constants import MAGIC
from ..manifest import CONTEXT as MANIFEST_CONTEXT
from ..manifest import Entry, manifest_body, manifest_digest
from ..reader import SealedFile
from ..signing import SigningKey

__all__ = ["NAME_PATTERN", "Catalogue", "Model", "valid_name"]

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
_NAME = re.compile(NAME_PATTERN)


def valid_name(text: str) -> bool:
    """Whether ``text`` is an acceptable model name or version in a URL. Raises nothing."""
    return bool(_NAME.fullmatch(text)) and ".." not in text


@dataclass(frozen=True)
class Model:
    """One served model version: an open file and what was computed from it at start."""

    name: str
    version: str
    path: str
    fd: int
    size: int
    mtime_ns: int
    etag: str  # quoted, strong
    blake3: str  # hex, whole file
    manifest: bytes  # JSON document

    def unchanged(self) -> bool:
        """Whether the open file still has the size and time it had at start."""
        st = os.fstat(self.fd)
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


class Catalogue:
    """The models under ``directory``. Raises UsageError (no directory, no model, two
    files for one name and version), OSError."""

    def __init__(
        self, directory: str | os.PathLike[str], *, sign_keys: Sequence[SigningKey] = (), threads: int | None = None
    ) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        if not os.path.isdir(self.directory):
            raise UsageError(f"{self.directory} is not a directory", hint="pass --models DIR holding sealed files")
        self.skipped: list[str] = []  # "path: why", for the start-up log
        self._models: dict[tuple[str, str], Model] = {}
        try:
            for path in self._walk():
                model = self._load(path, sign_keys, threads)
                if model is None:
                    continue
                key = (model.name, model.version)
                if key in self._models:
                    os.close(model.fd)
                    raise UsageError(
                        f"{self._models[key].path} and {path} are both model {model.name} version {model.version}",
                        hint="serve one file per model version",
                    )
                self._models[key] = model
        except BaseException:
            self.close()
            raise
        if not self._models:
            raise UsageError(f"{self.directory} holds no sealed model with a name and version",
                             hint="seal with `tensorseal encrypt --name N --model-version V`")  # fmt: skip

    def _walk(self) -> Iterable[str]:
        for root, dirs, files in os.walk(self.directory):  # does not follow symbolic links
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    yield os.path.join(root, name)

    def _load(self, path: str, sign_keys: Sequence[SigningKey], threads: int | None) -> Model | None:
        rel = os.path.relpath(path, self.directory)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            self.skipped.append(f"{rel}: {exc.strerror}")
            return None
        try:
            st = os.fstat(fd)
            import stat

            if not stat.S_ISREG(st.st_mode) or os.pread(fd, len(MAGIC), 0) != MAGIC:
                self.skipped.append(f"{rel}: not a sealed file")
                os.close(fd)
                return None
            try:
                with SealedFile(path) as sealed:
                    if os.fstat(sealed.fileno()).st_ino != st.st_ino:
                        raise UsageError(f"{path} was replaced while the catalogue was built")
                    identity = sealed.header.identity
                    file_digest = sealed.digest(threads=threads)
            except FormatError as exc:
                self.skipped.append(f"{rel}: {exc}")
                os.close(fd)
                return None
            name, version = identity.name, identity.version
            if name is None or version is None or not valid_name(name) or not valid_name(version):
                self.skipped.append(f"{rel}: model name/version {name!r}/{version!r} missing or not of the form {NAME_PATTERN}")
                os.close(fd)
                return None
            whole = blake3_of_fd(fd, st.st_size)
            body = manifest_body([Entry(os.path.basename(path), st.st_size, True, file_digest)], identity)
            digest = manifest_digest(body)
            sigs = [k.sign(digest, MANIFEST_CONTEXT) for k in sign_keys]
            from ..format.header import b64encode

            doc = {"manifest": body,
                   "signatures": [{"alg": s.alg, "key": b64encode(s.key), "sig": b64encode(s.sig)} for s in sigs]}  # fmt: skip
            manifest = json.dumps(doc, indent=1, sort_keys=True).encode("ascii") + b"\n"
            return Model(name, version, path, fd, st.st_size, st.st_mtime_ns, f'"{whole[:32]}"', whole, manifest)
        except BaseException:
            try:
                os.close(fd)
            except OSError:
                pass
            raise

    def get(self, name: str, version: str) -> Model | None:
        """The model, or None; ``name`` and ``version`` must pass :func:`valid_name`."""
        if not (valid_name(name) and valid_name(version)):
            return None
        return self._models.get((name, version))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._models.values(), key=lambda m: (m.name, m.version)))

    def __len__(self) -> int:
        return len(self._models)

    def close(self) -> None:
        """Close every open file. Raises nothing."""
        for model in self._models.values():
            try:
                os.close(model.fd)
            except OSError:
                pass
        self._models.clear()
