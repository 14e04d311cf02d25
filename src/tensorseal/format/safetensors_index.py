"""The tensor index of tensors mode: a safetensors header, parsed strictly.

The index section of a tensors-mode file holds the original safetensors header bytes
verbatim (the 8-byte length and the JSON), so that decryption gives back the original
file byte for byte, and every reader agrees with safetensors on names, dtypes, shapes and
offsets. Rules follow the safetensors spec: offsets relative to the data buffer, sorted
ranges with no holes and no overlaps, sizes equal to shape x dtype size, 100 MB cap.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import HeaderSyntaxError, LayoutError, LimitExceededError, TruncatedError, UnsupportedDtypeError
from .header import expect_keys, loads_strict

MAX_SAFETENSORS_HEADER = 100_000_000
MAX_RANK = 64

# dtype -> size in bits (safetensors names)
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # offset in the data buffer
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class TensorIndex:
    """Parsed index: entries in data order (the order that numbers tensors in nonces)."""

    entries: tuple[TensorEntry, ...]
    metadata: dict[str, str] | None
    data_length: int
    raw: bytes  # the safetensors header exactly as stored (length prefix + JSON)

    def by_name(self) -> dict[str, int]:
        return {e.name: i for i, e in enumerate(self.entries)}


def tensor_nbytes(dtype: str, shape: Sequence[int]) -> int:
    bits = DTYPE_BITS.get(dtype)
    if bits is None:
        raise UnsupportedDtypeError(f"unknown dtype {dtype!r}")
    total = math.prod(shape) * bits
    if total % 8:
        raise LayoutError(f"{dtype} tensor of shape {list(shape)} does not fill whole bytes")
    return total // 8


def parse_index(raw: bytes) -> TensorIndex:
    """Parse a safetensors header (with its 8-byte length). Raises FormatError subclasses."""
    if len(raw) < 8:
        raise TruncatedError("tensor index shorter than its length field")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_SAFETENSORS_HEADER:
        raise LimitExceededError(f"safetensors header of {n} bytes is over the 100 MB cap")
    if n != len(raw) - 8:
        raise LayoutError("safetensors header length does not match the index size")
    if not raw[8:9] == b"{":
        raise HeaderSyntaxError("safetensors header must start with '{'")
    obj = loads_strict(raw[8:], "tensor index")
    if not isinstance(obj, dict):
        raise HeaderSyntaxError("tensor index must be a JSON object")
    has_metadata = "__metadata__" in obj
    metadata = obj.pop("__metadata__", None)
    if has_metadata and (not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())):
        raise HeaderSyntaxError("__metadata__ must map strings to strings")
    entries = []
    for name, info in obj.items():
        what = f"tensor {name!r}"
        expect_keys(info, {"dtype", "shape", "data_offsets"}, what)
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str):
            raise HeaderSyntaxError(f"{what} dtype must be a string")
        if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(type(d) is int and d >= 0 for d in shape):
            raise HeaderSyntaxError(f"{what} shape must be a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
            raise HeaderSyntaxError(f"{what} data_offsets must be two non-negative integers")
        start, end = offsets
        if end < start:
            raise LayoutError(f"{what} ends before it starts")
        if end - start != tensor_nbytes(dtype, shape):
            raise LayoutError(f"{what} has {end - start} bytes but its shape and dtype need {tensor_nbytes(dtype, shape)}")
        entries.append(TensorEntry(name, dtype, tuple(shape), start, end))
    entries.sort(key=lambda e: (e.start, e.end, e.name))
    cursor = 0
    for e in entries:
        if e.start != cursor:
            kind = "overlaps the previous tensor" if e.start < cursor else "leaves a hole before it"
            raise LayoutError(f"tensor {e.name!r} {kind}")
        cursor = e.end
    return TensorIndex(tuple(entries), metadata, cursor, bytes(raw))


def build_index(specs: Mapping[str, tuple[str, Sequence[int]]], metadata: Mapping[str, str] | None) -> TensorIndex:
    """Build a safetensors header for ``{name: (dtype, shape)}`` the way safetensors lays
    tensors out (largest alignment first, then by name), padded with spaces to 8 bytes."""
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise HeaderSyntaxError("metadata must map strings to strings")
    order = sorted(specs, key=lambda k: (-DTYPE_BITS.get(specs[k][0], 8), k))
    obj: dict[str, object] = {}
    if metadata is not None:
        obj["__metadata__"] = dict(metadata)
    offset = 0
    for name in order:
        dtype, shape = specs[name]
        n = tensor_nbytes(dtype, shape)
        obj[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    body += b" " * (-len(body) % 8)
    return parse_index(struct.pack("<Q", len(body)) + body)
