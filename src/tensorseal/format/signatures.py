"""Publisher signatures: the file digest and the signature block after the data region.

The digest covers every byte of the sealed file except the signature block itself:
``front = BLAKE3(file[0 : data_offset])`` (prefix, header with recipients and model
identity, index, MAC, tag table), ``data = BLAKE3(d_0 | d_1 | ...)`` where ``d_u`` is the
BLAKE3 of unit ``u`` of the data region (``segment_size`` bytes each, cut at fixed
offsets so a verifier without the key, who cannot see tensor boundaries, cuts the same
units), and ``digest = BLAKE3(front | data)``. Units are hashed in parallel, in the same
pass that writes the ciphertext. Each signature is Ed25519 over
``"tensorseal/v1/signature" | digest``. BLAKE3 was measured at 7.0 GB/s per core here
against 1.6 GB/s for SHA-256 with SHA-NI (docs/SECURITY.md).

The block is ``body | u32le(len(body)) | "TSEALSIG"`` with ``body`` the canonical JSON
``{"signatures": [{"alg": "ed25519", "key": b64, "sig": b64}, ...]}``. Signatures are
not covered by the header MAC: anyone may add one without the decryption key.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from blake3 import blake3

from ..errors import HeaderSyntaxError, LimitExceededError, TrailingDataError, TruncatedError
from .header import b64decode, b64encode, expect_keys, loads_strict

MAGIC = b"TSEALSIG"
FOOTER_SIZE = 4 + len(MAGIC)
MAX_BLOCK_BODY = 64 << 10
MAX_SIGNATURES = 64
DIGEST_SIZE = 32
CONTEXT = b"tensorseal/v1/signature"


@dataclass(frozen=True)
class Signature:
    alg: str
    key: bytes  # Ed25519 public key, 32 bytes
    sig: bytes  # 64 bytes


def unit_count(data_length: int, unit: int) -> int:
    return -(-data_length // unit)


def file_digest(front: bytes | memoryview, unit_digests: Sequence[bytes | None]) -> bytes:
    """The digest that signatures sign, from the front bytes and each unit's digest."""
    data = blake3()
    for d in unit_digests:
        assert d is not None, "every unit must be hashed"
        data.update(d)
    return blake3(blake3(front).digest() + data.digest()).digest()


class UnitHasher:
    """Hashes the units (``unit``-byte pieces of the data region, the last one shorter)
    that lie wholly inside one worker's contiguous byte range, fed in order; units that
    straddle two workers' ranges are left as None for :func:`fill_missing_units`."""

    def __init__(self, digests: list[bytes | None], unit: int, data_length: int, lo: int, hi: int) -> None:
        self.digests, self.unit, self.data_length = digests, unit, data_length
        self.lo, self.hi = lo, hi
        self._current: int | None = None
        self._hasher = blake3()

    def feed(self, offset: int, data: memoryview) -> None:
        pos, end = offset, offset + data.nbytes
        while pos < end:
            u = pos // self.unit
            u_start, u_end = u * self.unit, min((u + 1) * self.unit, self.data_length)
            take = min(end, u_end) - pos
            if self.lo <= u_start and u_end <= self.hi:  # wholly mine
                if self._current != u:
                    self._current, self._hasher = u, blake3()
                self._hasher.update(data[pos - offset : pos - offset + take])
                if pos + take == u_end:
                    self.digests[u] = self._hasher.digest()
            pos += take


def fill_missing_units(fd: int, data_offset: int, data_length: int, unit: int, digests: list[bytes | None]) -> None:
    """Hash, by reading them back, the few units no single worker held whole."""
    for u, d in enumerate(digests):
        if d is None:
            n = min(unit, data_length - u * unit)
            data = os.pread(fd, n, data_offset + u * unit)
            if len(data) != n:
                raise TruncatedError("file ends inside the data region")
            digests[u] = blake3(data).digest()


def encode_block(signatures: Sequence[Signature]) -> bytes:
    if not 1 <= len(signatures) <= MAX_SIGNATURES:
        raise LimitExceededError(f"a file carries 1..{MAX_SIGNATURES} signatures")
    body = json.dumps(
        {"signatures": [{"alg": s.alg, "key": b64encode(s.key), "sig": b64encode(s.sig)} for s in signatures]},
        sort_keys=True,
        separators=(",", ":"),
    ).encode("ascii")
    return body + struct.pack("<I", len(body)) + MAGIC


def parse_block(tail: bytes) -> list[Signature]:
    """Parse the bytes after the data region. Raises TrailingDataError if they are not a
    signature block, HeaderSyntaxError / LimitExceededError if the block is malformed."""
    if len(tail) < FOOTER_SIZE or tail[-len(MAGIC) :] != MAGIC:
        raise TrailingDataError(f"{len(tail)} bytes after the end of the data region")
    (n,) = struct.unpack("<I", tail[-FOOTER_SIZE : -len(MAGIC)])
    if n > MAX_BLOCK_BODY:
        raise LimitExceededError(f"signature block of {n} bytes is over {MAX_BLOCK_BODY}")
    if n != len(tail) - FOOTER_SIZE:
        raise TrailingDataError("bytes between the data region and the signature block")
    obj = expect_keys(loads_strict(tail[:n], "signature block"), {"signatures"}, "signature block")
    items = obj["signatures"]
    if not isinstance(items, list) or not items:
        raise HeaderSyntaxError("signatures must be a non-empty list")
    if len(items) > MAX_SIGNATURES:
        raise LimitExceededError(f"more than {MAX_SIGNATURES} signatures")
    out = []
    for i, item in enumerate(items):
        expect_keys(item, {"alg", "key", "sig"}, f"signature {i}")
        if item["alg"] != "ed25519":
            raise HeaderSyntaxError(f"signature {i} has unknown algorithm {item['alg']!r}")
        out.append(Signature("ed25519", b64decode(item["key"], "signer key", 32), b64decode(item["sig"], "signature", 64)))
    return out


def block_size(tail_footer: bytes) -> int | None:
    """Total size of the block ending with this 12-byte footer, or None if it is not one."""
    if len(tail_footer) != FOOTER_SIZE or tail_footer[-len(MAGIC) :] != MAGIC:
        return None
    return struct.unpack("<I", tail_footer[:4])[0] + FOOTER_SIZE
