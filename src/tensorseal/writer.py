"""Writing a sealed file: plan the layout, wrap the key, encrypt segments in parallel.

The caller supplies the plaintext one segment at a time through a ``PlaintextSource``
(straight from an array's memory, or read from a file into a scratch buffer), so memory
stays bounded by a few segments. Output goes to a temp file that is renamed into place
only when every segment and the tag table are written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from . import _parallel
from ._atomic import atomic_output
from ._wipe import wipe
from .errors import FormatError, UsageError
from .format import constants as C
from .format.header import Header, ModelIdentity, Stanza, encode_header, encode_prefix, index_offset, pad_header
from .format.keys import INDEX_NONCE, FileKeys, associated_data, make_aead
from .format.segments import Segment, plan_runs, run_segments
from .format.signatures import UnitHasher, encode_block, file_digest, fill_missing_units, unit_count
from .recipients import KeyContext, Recipient, to_recipients
from .signing import SigningKey

# (segment, scratch of segment_size bytes) -> the segment's plaintext (scratch or a view)
PlaintextSource = Callable[[Segment, memoryview], memoryview]
Progress = Callable[[int], None]


@dataclass(frozen=True)
class SealOptions:
    """Choices that shape a sealed file. Validated at construction."""

    cipher: str = C.DEFAULT_CIPHER
    segment_size: int = C.DEFAULT_SEGMENT_SIZE
    public_index: bool = False
    identity: ModelIdentity = ModelIdentity()
    encrypt_only: tuple[str, ...] = ()  # selective encryption: globs on tensor names
    plain: tuple[str, ...] = ()
    header_reserve: int = C.HEADER_RESERVE  # spare header bytes, so rewrap can add recipients in place

    def __post_init__(self) -> None:
        for field_name in ("encrypt_only", "plain"):
            patterns = getattr(self, field_name)
            if isinstance(patterns, str) or not all(isinstance(p, str) and p for p in patterns):
                raise UsageError(f"{field_name} must be a sequence of non-empty glob patterns")
            object.__setattr__(self, field_name, tuple(patterns))
        if self.cipher not in C.CIPHERS:
            raise UsageError(f"unknown cipher {self.cipher!r} (choose {' or '.join(C.CIPHERS)})")
        if not (type(self.header_reserve) is int and 0 <= self.header_reserve <= C.MAX_HEADER_SIZE // 2):
            raise UsageError(f"header reserve must be 0..{C.MAX_HEADER_SIZE // 2} bytes")
        s = self.segment_size
        if not (C.MIN_SEGMENT_SIZE <= s <= C.MAX_SEGMENT_SIZE) or s & (s - 1):
            raise UsageError(f"segment size must be a power of two in {C.MIN_SEGMENT_SIZE}..{C.MAX_SEGMENT_SIZE}")


def _align(n: int, to: int) -> int:
    return -(-n // to) * to


def _layout(
    options: SealOptions, mode: str, salt: bytes, commitment: bytes, stanzas: Sequence[Stanza],
    index_length: int, data_length: int, segment_count: int, plain: tuple[int, ...],
) -> tuple[Header, bytes]:  # fmt: skip
    """The header with its own offsets filled in (they depend on its encoded length), and
    its header area: the JSON padded with ``options.header_reserve`` spaces."""
    tags_offset = data_offset = 0
    while True:
        header = Header(
            cipher=options.cipher, mode=mode, salt=salt, commitment=commitment,
            segment_size=options.segment_size, recipients=tuple(stanzas),
            index_length=index_length, index_encrypted=mode == "tensors" and not options.public_index,
            data_length=data_length, segment_count=segment_count,
            tags_offset=tags_offset, data_offset=data_offset, identity=options.identity, plain=plain,
        )  # fmt: skip
        raw = encode_header(header)
        area_len = len(raw) + options.header_reserve
        want_tags = index_offset(area_len) + index_length
        want_data = _align(want_tags + segment_count * C.TAG_SIZE, C.DATA_ALIGNMENT)
        if (tags_offset, data_offset) == (want_tags, want_data):
            if area_len > C.MAX_HEADER_SIZE:
                raise UsageError(f"header of {area_len} bytes is over the {C.MAX_HEADER_SIZE} byte limit")
            return header, pad_header(raw, area_len)
        tags_offset, data_offset = want_tags, want_data


def head_bytes(area: bytes, header_mac: Callable[[bytes], bytes], index_section: bytes, slot: int = 0) -> bytes:
    """Prefix, the two head slots (``area`` and its MAC in ``slot``, zeros in the other)
    and the index section: every byte before the tag table."""
    prefix = encode_prefix(len(area))
    filled = area + header_mac(prefix + area + index_section)
    empty = bytes(len(filled))
    return prefix + (filled + empty if slot == 0 else empty + filled) + index_section


def _check_plain(mode: str, lengths: Sequence[int], plain: Collection[int]) -> tuple[int, ...]:
    """The plain tensor numbers, sorted. Raises UsageError if a number is out of range or
    names an empty tensor, or if no byte of the data would be encrypted."""
    runs = tuple(sorted(set(plain)))
    if not runs:
        return ()
    if mode != "tensors":
        raise UsageError("only tensors-mode files can leave tensors unencrypted")
    if runs[0] < 0 or runs[-1] >= len(lengths):
        raise UsageError("a plain tensor number is out of range")
    if any(lengths[t] == 0 for t in runs):
        raise UsageError("an empty tensor cannot be marked plain (it has nothing to store)")
    if sum(lengths) == sum(lengths[t] for t in runs):
        raise UsageError("every tensor would be stored unencrypted: encrypt at least one")
    return runs


def write_sealed(
    path: str | os.PathLike[str],
    *,
    mode: str,
    lengths: Sequence[int],
    source: PlaintextSource,
    recipients: Sequence[Recipient | str],
    index: bytes = b"",
    options: SealOptions = SealOptions(),
    threads: int | None = None,
    progress: Progress | None = None,
    durable: bool = False,
    signers: Sequence[SigningKey] = (),
    plain: Collection[int] = (),
    _file_key: bytes | None = None,
    _salt: bytes | None = None,
    _stanzas: Sequence[Stanza] | None = None,
) -> Header:
    """Seal runs of ``lengths`` bytes (tensors in data order, or one blob) to ``path``.

    ``index`` is the safetensors header of a tensors-mode file. ``plain`` names tensors
    (numbers in data order) stored unencrypted, authenticated by a tag all the same;
    at least one non-empty tensor must stay encrypted. ``signers`` sign the
    finished file; the digest is computed while the ciphertext is written. The ``_file_key``,
    ``_salt`` and ``_stanzas`` parameters exist for deterministic test vectors only.
    Raises UsageError, InvalidKeyError, OSError; the target is untouched on error.
    """
    if mode == "tensors" and not index:
        raise UsageError("a tensors-mode file needs an index")
    if mode == "blob" and (index or len(lengths) != 1):
        raise UsageError("a blob file is one run with no index")
    plain_runs = _check_plain(mode, lengths, plain)
    file_key = bytearray(os.urandom(C.KEY_SIZE) if _file_key is None else _file_key)
    salt = os.urandom(C.SALT_SIZE) if _salt is None else _salt
    keys = FileKeys.derive(file_key, salt)
    try:
        if _stanzas is None:
            stanzas = [s for r in to_recipients(recipients) for s in r.wrap(file_key, KeyContext(options.identity))]
        else:
            stanzas = list(_stanzas)
    finally:
        wipe(file_key)  # best effort: docs/SECURITY.md, "Key hygiene"
    if len(stanzas) > C.MAX_STANZAS:
        raise UsageError(f"more than {C.MAX_STANZAS} recipient stanzas")
    runs, segment_count = plan_runs(lengths, options.segment_size)
    data_length = sum(lengths)
    index_length = len(index) + (C.TAG_SIZE if index and not options.public_index else 0)
    if index_length > C.MAX_INDEX_SIZE:
        raise UsageError(f"tensor index of {len(index)} bytes is over the format's limit")
    header, area = _layout(
        options, mode, salt, keys.commitment, stanzas, index_length, data_length, segment_count, plain_runs
    )
    aad = associated_data(header)
    index_section = index
    if index and header.index_encrypted:
        index_section = make_aead(options.cipher, keys.index_key).encrypt(INDEX_NONCE, index, aad)
    front = head_bytes(area, keys.header_mac, index_section)
    assert len(front) == header.tags_offset

    segments = [s for t, run in enumerate(runs) for s in run_segments(t, run, options.segment_size)]
    tags = bytearray(segment_count * C.TAG_SIZE)
    aead = make_aead(options.cipher, keys.data_key)
    is_plain = frozenset(plain_runs).__contains__
    mac = make_aead(options.cipher, keys.plain_key)
    units: list[bytes | None] = [None] * unit_count(data_length, options.segment_size) if signers else []

    with atomic_output(path, durable=durable) as fd:
        os.ftruncate(fd, header.file_size)
        os.pwrite(fd, front, 0)

        def work(chunk: Sequence[Segment]) -> None:
            scratch = memoryview(bytearray(options.segment_size))
            out = memoryview(bytearray(options.segment_size + C.TAG_SIZE))
            # a plain segment's tag is the AEAD over no plaintext with AAD = aad | segment
            mac_input = memoryview(bytearray(len(aad) + options.segment_size)) if plain_runs else None
            if mac_input is not None:
                mac_input[: len(aad)] = aad
            lo, hi = chunk[0].start, chunk[-1].start + chunk[-1].length
            hasher = UnitHasher(units, options.segment_size, data_length, lo, hi) if signers else None
            for seg in chunk:
                n = seg.length
                plain = source(seg, scratch[:n])
                if plain.nbytes != n:
                    raise FormatError(f"source gave {plain.nbytes} bytes for a {n}-byte segment")
                t = seg.tag_index * C.TAG_SIZE
                if mac_input is not None and is_plain(seg.tensor):
                    mac_input[len(aad) : len(aad) + n] = plain
                    stored = mac_input[len(aad) : len(aad) + n]
                    tags[t : t + C.TAG_SIZE] = mac.encrypt(seg.nonce, b"", mac_input[: len(aad) + n])
                else:
                    aead.encrypt_into(seg.nonce, plain, aad, out[: n + C.TAG_SIZE])
                    stored = out[:n]
                    tags[t : t + C.TAG_SIZE] = out[n : n + C.TAG_SIZE]
                if os.pwrite(fd, stored, header.data_offset + seg.start) != n:
                    raise OSError("short write")
                if hasher is not None:
                    hasher.feed(seg.start, stored)
                if progress is not None:
                    progress(n)

        _parallel.run_chunked(segments, work, _parallel.thread_count(threads))
        os.pwrite(fd, tags, header.tags_offset)
        if signers:
            fill_missing_units(fd, header.data_offset, data_length, options.segment_size, units)
            whole_front = bytearray(header.data_offset)
            whole_front[: len(front)] = front
            whole_front[header.tags_offset : header.tags_offset + len(tags)] = tags
            digest = file_digest(whole_front, units)
            os.pwrite(fd, encode_block([k.sign(digest) for k in signers]), header.file_size)
    return header
