"""Opening a sealed file: strict parse, unwrap, authenticate, then decrypt segments.

Nothing in the header is trusted until the header MAC verifies under a key that matches
the key commitment. Tensors are decrypted straight into caller-provided memory: each
segment's ciphertext is read into a small per-thread scratch buffer (with its tag, kept
apart in the file) and ``decrypt_into`` writes the plaintext to its final place, so the
model is never held twice and never touches disk.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from . import _parallel, audit
from ._source import Source, is_url, open_source, read_exact
from ._wipe import wipe
from .errors import (
    AuditError,
    AuthenticationError,
    FormatError,
    HeaderAuthenticationError,
    IncorrectIdentityError,
    KeyMaterialError,
    KeyServiceError,
    LayoutError,
    NoIdentityMatchError,
    SegmentAuthenticationError,
    SignatureError,
    TrailingDataError,
    TruncatedError,
    UsageError,
)
from .format import constants as C
from .format.header import Header, parse_header, parse_prefix
from .format.keys import INDEX_NONCE, FileKeys, associated_data, make_aead
from .format.safetensors_index import TensorIndex, parse_index
from .format.segments import Segment, TensorRun, plan_runs, run_segments
from .format.signatures import FOOTER_SIZE, MAX_BLOCK_BODY, Signature, file_digest, parse_block, unit_count
from .recipients import Identity, KeyContext, ambient_identities, to_identities
from .signing import VerifyingKey

Progress = Callable[[int], None]


@dataclass(frozen=True)
class _Head:
    """One head slot that parsed: its header, MAC, the bytes before the data, signatures."""

    slot: int
    header: Header
    area: bytes  # the header area as stored (JSON and padding)
    mac: bytes
    front: bytes
    signatures: list[Signature]


@dataclass(frozen=True)
class Job:
    """One segment to decrypt into ``dest`` (a writable buffer of ``segment.length``)."""

    segment: Segment
    dest: memoryview | None  # None: verify only


class SealedFile:
    """A sealed file opened for reading. Use as a context manager.

    ``SealedFile(path)`` parses and bounds-checks the header; :meth:`unlock` unwraps the
    file key with the given identities and authenticates header and index. Raises
    FormatError subclasses, OSError.
    """

    def __init__(self, path: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None) -> None:
        self.path = path if is_url(path) else os.fspath(path)
        self._source: Source | None = open_source(self.path, storage_options)
        self.remote = self._source.remote
        self._fd = self._source.fd  # -1 for a URL
        try:
            self._parse()
        except BaseException:
            self._source.close()
            raise
        self._keys: FileKeys | None = None
        self._index: TensorIndex | None = None
        self._local = threading.local()

    def _parse(self) -> None:
        """Parse both head slots; keep the valid ones, newest generation first."""
        assert self._source is not None
        size = self._source.size
        self.prefix = self._source.read(C.PREFIX_SIZE, 0)
        self.header_len = parse_prefix(self.prefix)
        slot_size = self.header_len + C.MAC_SIZE
        slots = read_exact(self._source, C.HEAD_SLOTS * slot_size, C.PREFIX_SIZE)
        self._candidates: list[_Head] = []
        errors: list[FormatError] = []
        self.damaged_slots: list[int] = []
        for slot in range(C.HEAD_SLOTS):
            raw = slots[slot * slot_size : (slot + 1) * slot_size]
            if raw.count(0) == len(raw):
                continue  # an empty slot (the other one is current)
            try:
                self._candidates.append(self._parse_head(slot, raw, size))
            except FormatError as exc:
                errors.append(exc)
                self.damaged_slots.append(slot)
        if not self._candidates:
            raise errors[0] if errors else LayoutError("both header slots are empty")
        self._candidates.sort(key=lambda head: -head.header.generation)  # stable: slot 0 first on ties
        self._use(self._candidates[0])

    def _parse_head(self, slot: int, raw: bytes, size: int) -> _Head:
        h = parse_header(raw[: self.header_len])
        if size < h.file_size:
            raise TruncatedError(f"file is {size} bytes but its header describes {h.file_size}")
        signatures: list[Signature] = []
        if size > h.file_size:
            extra = size - h.file_size
            if extra > MAX_BLOCK_BODY + FOOTER_SIZE:
                raise TrailingDataError(f"{extra} bytes after the end of the data region")
            signatures = parse_block(read_exact(self._source, extra, h.file_size))
        front = read_exact(self._source, h.data_offset, 0)
        index_end = h.index_end(self.header_len)
        for lo, hi in ((index_end, h.tags_offset), (h.tags_offset + h.tags_length, h.data_offset)):
            if front[lo:hi].count(0) != hi - lo:
                raise LayoutError(f"non-zero bytes in the padding at {lo}..{hi}")
        return _Head(slot, h, raw[: self.header_len], raw[self.header_len :], front, signatures)

    def _use(self, head: _Head) -> None:
        h = self.header = head.header
        self.slot = head.slot
        self.signatures: list[Signature] = head.signatures
        self._front = head.front
        self._index_section = head.front[h.index_offset(self.header_len) : h.index_end(self.header_len)]
        self._authenticated = self.prefix + head.area + self._index_section
        self._mac = head.mac
        self._tags = head.front[h.tags_offset : h.tags_offset + h.tags_length]

    # ---- life cycle -------------------------------------------------------------------
    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None
            self._fd = -1
        wipe(getattr(self, "_file_key", None))
        bufs = getattr(getattr(self, "_local", None), "bufs", None)
        if bufs is not None:  # this thread's sink may hold a plaintext segment
            for buf in bufs:
                buf[:] = bytes(len(buf))
            del self._local.bufs

    def __enter__(self) -> SealedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- signatures (no decryption key needed) ----------------------------------------------
    def digest(self, *, threads: int | None = None, progress: Progress | None = None) -> bytes:
        """The file digest that publisher signatures sign (reads the whole data region)."""
        h = self.header
        unit = h.segment_size
        digests: list[bytes | None] = [None] * unit_count(h.data_length, unit)
        assert self._source is not None
        readinto = self._source.readinto

        def work(chunk: Sequence[int]) -> None:
            from blake3 import blake3

            scratch = memoryview(bytearray(unit))
            for u in chunk:
                n = min(unit, h.data_length - u * unit)
                if readinto(scratch[:n], h.data_offset + u * unit) != n:
                    raise TruncatedError("file ends inside the data region")
                digests[u] = blake3(scratch[:n]).digest()
                if progress is not None:
                    progress(n)

        _parallel.run_chunked(range(len(digests)), work, _parallel.thread_count(threads))
        return file_digest(self._front, digests)

    def check_signatures(self, trusted: Sequence[VerifyingKey], *, threads: int | None = None, progress: Progress | None = None) -> list[VerifyingKey]:
        """The trusted signers whose signature verifies. Raises SignatureError if none does
        (unsigned file, untrusted signers only, or any byte changed since signing)."""
        if not self.signatures:
            raise SignatureError("the file is not signed")
        trusted_raw = {k.raw for k in trusted}
        if not any(s.key in trusted_raw for s in self.signatures):
            raise SignatureError("no signature from a trusted signer")
        digest = self.digest(threads=threads, progress=progress)
        good = [k for k in trusted if any(k.verifies(s, digest) for s in self.signatures)]
        if not good:
            raise SignatureError("the signature does not verify: the file changed after it was signed")
        return good

    # ---- keys ---------------------------------------------------------------------------
    @property
    def unlocked(self) -> bool:
        return self._keys is not None

    def unlock(
        self, identities: Identity | str | os.PathLike[str] | Sequence[Identity | str | os.PathLike[str]] | None = None
    ) -> None:
        """Unwrap the file key and authenticate the header and index.

        ``identities`` are tried first, in order; then the key-service keys that the file's
        stanzas name (AWS KMS, Vault, GCP, Azure, OS keyring), with credentials from the
        environment (``recipients.ambient_identities``); ``None``: only those. A key service
        that refuses or cannot be reached moves on to the next identity; if none opens the
        file, that KeyServiceError is raised.

        Raises NoIdentityMatchError, KeyServiceError, KeyCommitmentError,
        HeaderAuthenticationError, FormatError, InvalidKeyError, UsageError.
        """
        first: Exception | None = None
        for head in self._candidates:  # newest first; an older slot only if a rewrap was cut short
            self._use(head)
            try:
                self._unlock_head(identities)
                return
            except (KeyMaterialError, AuthenticationError, FormatError) as exc:
                first = first or exc
        self._use(self._candidates[0])
        assert first is not None
        raise first

    def _unlock_head(
        self, identities: Identity | str | os.PathLike[str] | Sequence[Identity | str | os.PathLike[str]] | None
    ) -> None:
        stanzas = self.header.recipients
        if any(s.type == "scrypt" for s in stanzas) and len(stanzas) != 1:
            raise FormatError("a passphrase stanza must be the only recipient of a file")
        explicit = [] if identities is None else to_identities(identities)
        context = KeyContext(self.header.identity)
        refused: KeyServiceError | None = None
        for identity in [*explicit, *ambient_identities(stanzas, skip=explicit)]:
            try:
                with audit.unwrap_attempt(self.path, self.header, identity):  # one audit record per identity tried
                    self._unlock_with_file_key(identity.unwrap(stanzas, context))
            except IncorrectIdentityError:
                continue
            except KeyServiceError as exc:
                refused = refused or exc
                continue
            except AuditError:  # required audit log not written: fail closed, stay locked
                self._keys = None
                raise
            return
        if refused is not None:
            raise refused
        kinds = ", ".join(sorted({s.type for s in stanzas}))
        raise NoIdentityMatchError(f"no identity matched any of the file's recipients ({kinds})")

    def _unlock_with_file_key(self, file_key: bytes) -> None:
        wipe(getattr(self, "_file_key", None))
        self._file_key = bytearray(file_key)  # kept for rotation; zeroed by close()
        keys = FileKeys.derive(file_key, self.header.salt)
        keys.check_commitment(self.header)
        keys.check_header_mac(self._authenticated, self._mac)
        self._aad = associated_data(self.header)
        self._aead = make_aead(self.header.cipher, keys.data_key)
        if self.header.mode == "tensors":
            raw = self._index_section
            if self.header.index_encrypted:
                try:
                    raw = make_aead(self.header.cipher, keys.index_key).decrypt(INDEX_NONCE, raw, self._aad)
                except InvalidTag:
                    raise HeaderAuthenticationError("the tensor index does not decrypt under the file key") from None
            self._index = parse_index(raw)
            lengths = [e.nbytes for e in self._index.entries]
        else:
            lengths = [self.header.data_length]
        self._runs, segments = plan_runs(lengths, self.header.segment_size)
        if sum(lengths) != self.header.data_length or segments != self.header.segment_count:
            raise LayoutError("the index does not match the data length or segment count in the header")
        plain = self.header.plain
        if plain and (plain[-1] >= len(lengths) or any(lengths[t] == 0 for t in plain)):
            raise LayoutError("a plain tensor number names no tensor or an empty one")
        if plain and sum(lengths[t] for t in plain) == sum(lengths):
            raise LayoutError("every tensor is unencrypted: a sealed file must encrypt at least one")
        self._plain_mac = make_aead(self.header.cipher, keys.plain_key)
        self._keys = keys

    # ---- what rotation needs (docs/FORMAT.md section 19) ------------------------------------
    @property
    def candidates(self) -> list[_Head]:
        """The head slots that parsed, newest generation first."""
        return list(self._candidates)

    @property
    def file_key(self) -> bytes:
        """A copy of the file key. Raises UsageError if the file is locked or closed."""
        self._need_keys()
        if self._source is None:
            raise UsageError("the file is closed: its file key was wiped")
        return bytes(self._file_key)

    @property
    def index_section(self) -> bytes:
        return self._index_section

    @property
    def tag_table(self) -> bytes:
        return self._tags

    def segment_material(self) -> tuple[bytes, bytes, bytes]:
        """``(data_key, plain_key, associated data)`` of the segment AEAD, for loaders that
        verify and decrypt segments themselves (``tensorseal.gpu``). Raises UsageError if
        the file is locked."""
        self._need_keys()
        assert self._keys is not None
        return self._keys.data_key, self._keys.plain_key, self._aad

    def fileno(self) -> int:
        """The local file's descriptor. Raises UsageError for a file read from a URL."""
        if self._fd < 0:
            raise UsageError("this sealed file is read from a URL or closed: it has no local file descriptor")
        return self._fd

    def mac_function(self, authenticated: bytes) -> bytes:
        """HMAC under this file's header MAC key."""
        self._need_keys()
        assert self._keys is not None
        return self._keys.header_mac(authenticated)

    def header_mac(self, area: bytes) -> bytes:
        """The MAC of a header area of this file's length (8.4 of FORMAT.md)."""
        return self.mac_function(self.prefix + area + self._index_section)

    def decrypt_segment(self, segment: Segment, dest: memoryview) -> None:
        """Decrypt (or verify, if plain) one segment into ``dest``. Raises like decrypt()."""
        self._need_keys()
        self._decrypt_chunk([Job(segment, dest)], None, None)

    def _need_keys(self) -> None:
        if self._keys is None:
            raise UsageError("the file is locked: call unlock() with an identity first")

    # ---- index --------------------------------------------------------------------------
    @property
    def index(self) -> TensorIndex:
        """The authenticated tensor index (tensors mode, after unlock)."""
        self._need_keys()
        if self._index is None:
            raise UsageError("a blob file has no tensor index")
        return self._index

    def public_index(self) -> TensorIndex | None:
        """The index of a ``--public-index`` file, readable without a key but NOT yet
        authenticated (only unlock() or a signature can authenticate it)."""
        if self.header.mode != "tensors" or self.header.index_encrypted:
            return None
        return parse_index(self._index_section)

    @property
    def runs(self) -> list[TensorRun]:
        self._need_keys()
        return self._runs

    # ---- data ---------------------------------------------------------------------------
    def segments(self, tensor: int) -> list[Segment]:
        return list(run_segments(tensor, self.runs[tensor], self.header.segment_size))

    def all_segments(self) -> list[Segment]:
        return [s for t in range(len(self.runs)) for s in self.segments(t)]

    def decrypt(
        self,
        jobs: Sequence[Job],
        *,
        threads: int | None = None,
        progress: Progress | None = None,
        sink: tuple[int, int] | None = None,
    ) -> None:
        """Decrypt (or only verify) segments, in parallel. Jobs without a destination are
        verified only, or, with ``sink=(fd, offset)``, written to ``fd`` at ``offset`` +
        their place in the data region. Raises SegmentAuthenticationError naming the first
        bad segment; on error the destinations hold no usable data."""
        self._need_keys()
        work = lambda chunk: self._decrypt_chunk(chunk, progress, sink)  # noqa: E731
        _parallel.run_chunked(jobs, work, 1 if self.remote else _parallel.thread_count(threads))

    def _decrypt_chunk(self, jobs: Sequence[Job], progress: Progress | None, sink_to: tuple[int, int] | None) -> None:
        assert self._source is not None
        readinto, aead, aad, tags = self._source.readinto, self._aead, self._aad, self._tags
        base = self.header.data_offset
        is_plain = frozenset(self.header.plain).__contains__
        # scratch = pad | aad | segment | tag, the segment 64-byte aligned: a plain segment's
        # tag is the AEAD over no plaintext with AAD = aad | segment; an encrypted one
        # decrypts segment | tag.
        a = -(-len(aad) // 64) * 64
        scratch, sink = self._buffers(a)
        scratch[a - len(aad) : a] = aad
        with_aad = a - len(aad)
        for job in jobs:
            seg = job.segment
            n = seg.length
            if readinto(scratch[a : a + n], base + seg.start) != n:
                raise TruncatedError(f"file ends inside segment {seg.tag_index}")
            t = seg.tag_index * C.TAG_SIZE
            out = sink[:n] if job.dest is None else job.dest
            try:
                if is_plain(seg.tensor):
                    self._plain_mac.decrypt(seg.nonce, tags[t : t + C.TAG_SIZE], scratch[with_aad : a + n])
                    out[:] = scratch[a : a + n]  # the bytes just verified: a private snapshot
                else:
                    scratch[a + n : a + n + C.TAG_SIZE] = tags[t : t + C.TAG_SIZE]
                    aead.decrypt_into(seg.nonce, scratch[a : a + n + C.TAG_SIZE], aad, out)
            except InvalidTag:
                raise SegmentAuthenticationError(self._describe(seg)) from None
            if sink_to is not None and job.dest is None and os.pwrite(sink_to[0], sink[:n], sink_to[1] + seg.start) != n:
                raise OSError("short write")
            if progress is not None:
                progress(n)

    def _buffers(self, aad_room: int) -> tuple[memoryview, memoryview]:
        """This thread's scratch (aad room | segment | tag) and sink buffers, made once per
        thread and file (callers that decrypt one segment at a time reuse them)."""
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            size = self.header.segment_size
            bufs = self._local.bufs = (memoryview(bytearray(aad_room + size + C.TAG_SIZE)), memoryview(bytearray(size)))
        return bufs

    def _describe(self, seg: Segment) -> str:
        where = f"segment {seg.index} of "
        if self._index is not None:
            where += f"tensor {self._index.entries[seg.tensor].name!r}"
        else:
            where += "the blob"
        return f"authentication failed for {where}: the file was modified or corrupted"

    def verify(self, *, threads: int | None = None, progress: Progress | None = None) -> None:
        """Check every tag without keeping any plaintext."""
        self.decrypt([Job(s, None) for s in self.all_segments()], threads=threads, progress=progress)

    def decrypt_tensors_into(
        self, buffers: dict[int, memoryview], *, threads: int | None = None, progress: Progress | None = None
    ) -> None:
        """Decrypt each tensor ``i`` into ``buffers[i]`` (bytes of exactly its size)."""
        jobs = []
        for t, buf in buffers.items():
            run = self.runs[t]
            if buf.nbytes != run.length:
                raise UsageError(f"buffer for tensor {t} has {buf.nbytes} bytes, needs {run.length}")
            flat = buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf
            jobs.extend(Job(s, flat[s.start - run.start : s.start - run.start + s.length]) for s in self.segments(t))
        self.decrypt(jobs, threads=threads, progress=progress)
