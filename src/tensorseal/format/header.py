"""The fixed prefix and the JSON header: strict parsing and canonical writing.

Parsing never trusts the header: it checks sizes and shapes only. Authenticity is
established later by the header MAC (see ``keys.py``), after a file key is unwrapped.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    HeaderSyntaxError,
    LayoutError,
    LimitExceededError,
    NotSealedError,
    TruncatedError,
    UnsupportedVersionError,
    UsageError,
)
from . import constants as C

_PREFIX = struct.Struct("<8sHHI")


@dataclass(frozen=True)
class Stanza:
    """One wrapped copy of the file key: ``{type, args, body}`` as in age."""

    type: str
    args: tuple[str, ...]
    body: bytes

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "args": list(self.args), "body": b64encode(self.body)}


@dataclass(frozen=True)
class ModelIdentity:
    """Model identity bound into every segment's associated data."""

    name: str | None = None
    version: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        for key, value in (("name", self.name), ("version", self.version), ("file", self.file)):
            if value is None:
                continue
            if not isinstance(value, str) or not value:
                raise UsageError(f"model {key} must be a non-empty string")
            try:
                size = len(value.encode("utf-8"))
            except UnicodeEncodeError:
                raise UsageError(f"model {key} is not valid Unicode") from None
            if size > C.MAX_IDENTITY_FIELD:
                raise UsageError(f"model {key} is longer than {C.MAX_IDENTITY_FIELD} bytes")

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in (("name", self.name), ("version", self.version), ("file", self.file)) if v is not None}


@dataclass(frozen=True)
class Header:
    cipher: str
    mode: str
    salt: bytes
    commitment: bytes
    segment_size: int
    recipients: tuple[Stanza, ...]
    index_length: int
    index_encrypted: bool
    data_length: int
    segment_count: int
    tags_offset: int
    data_offset: int
    identity: ModelIdentity = field(default_factory=ModelIdentity)
    features: tuple[str, ...] = ()
    plain: tuple[int, ...] = ()  # tensors stored unencrypted but authenticated (data order)
    generation: int = 0  # bumped by every rewrap: the newer of the two head slots wins

    # ---- derived layout -----------------------------------------------------------
    def index_offset(self, header_len: int) -> int:
        return index_offset(header_len)

    def index_end(self, header_len: int) -> int:
        return index_offset(header_len) + self.index_length

    @property
    def tags_length(self) -> int:
        return self.segment_count * C.TAG_SIZE

    @property
    def file_size(self) -> int:
        return self.data_offset + self.data_length

    def to_json(self) -> dict[str, Any]:
        return {
            "cipher": self.cipher,
            "mode": self.mode,
            "salt": b64encode(self.salt),
            "commitment": b64encode(self.commitment),
            "segment_size": self.segment_size,
            "identity": self.identity.to_json(),
            "features": list(self.features),
            "generation": self.generation,
            "recipients": [s.to_json() for s in self.recipients],
            "index": {"length": self.index_length, "encrypted": self.index_encrypted},
            "data": {
                "length": self.data_length,
                "segments": self.segment_count,
                "tags_offset": self.tags_offset,
                "data_offset": self.data_offset,
                **({"plain": list(self.plain)} if self.plain else {}),
            },
        }


# ---- base64 ------------------------------------------------------------------------
def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: Any, what: str, size: int | None = None, max_size: int | None = None) -> bytes:
    """Strict standard base64 (padded, canonical); optional exact or maximum size."""
    if not isinstance(text, str):
        raise HeaderSyntaxError(f"{what} must be a base64 string")
    if max_size is not None and len(text) > (max_size + 2) // 3 * 4:
        raise LimitExceededError(f"{what} is longer than {max_size} bytes")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise HeaderSyntaxError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise HeaderSyntaxError(f"{what} is not canonical base64")
    if size is not None and len(raw) != size:
        raise HeaderSyntaxError(f"{what} must be {size} bytes, got {len(raw)}")
    return raw


# ---- head slots ----------------------------------------------------------------------
def slot_offset(slot: int, header_len: int) -> int:
    """Where head slot 0 or 1 starts: each is the header area (``header_len`` bytes, JSON
    padded with spaces) and its 32-byte MAC; slot 1 follows slot 0, the index follows both."""
    return C.PREFIX_SIZE + slot * (header_len + C.MAC_SIZE)


def index_offset(header_len: int) -> int:
    return slot_offset(C.HEAD_SLOTS, header_len)


def pad_header(raw: bytes, header_len: int) -> bytes:
    """The header area: the JSON text, then spaces up to ``header_len`` bytes."""
    if len(raw) > header_len:
        raise LimitExceededError(f"header of {len(raw)} bytes does not fit its {header_len}-byte slot")
    return raw + b" " * (header_len - len(raw))


# ---- prefix ------------------------------------------------------------------------
def encode_prefix(header_len: int) -> bytes:
    return _PREFIX.pack(C.MAGIC, C.VERSION, 0, header_len)


def parse_prefix(prefix: bytes) -> int:
    """Check magic, version and flags; return the header length (bounded)."""
    if len(prefix) < len(C.MAGIC) or prefix[: len(C.MAGIC)] != C.MAGIC:
        raise NotSealedError("not a tensorseal file (bad magic)")
    if len(prefix) < C.PREFIX_SIZE:
        raise TruncatedError("file ends inside the prefix")
    _, version, flags, header_len = _PREFIX.unpack(prefix[: C.PREFIX_SIZE])
    if version != C.VERSION:
        raise UnsupportedVersionError(f"unsupported format version {version} (this reader knows {C.VERSION})")
    if flags != 0:
        raise UnsupportedVersionError(f"unknown prefix flags {flags:#06x}")
    if header_len == 0 or header_len > C.MAX_HEADER_SIZE:
        raise LimitExceededError(f"header length {header_len} outside 1..{C.MAX_HEADER_SIZE}")
    return header_len


# ---- JSON --------------------------------------------------------------------------
def encode_header(header: Header) -> bytes:
    """Canonical JSON: sorted keys, no spaces, ASCII only."""
    return json.dumps(header.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise HeaderSyntaxError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise HeaderSyntaxError(f"invalid JSON number {name}")


def loads_strict(raw: bytes, what: str) -> Any:
    """JSON with duplicate keys, NaN/Infinity and non-UTF-8 rejected."""
    try:
        text = raw.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise HeaderSyntaxError(f"{what} is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise HeaderSyntaxError(f"{what} is not valid JSON ({e.msg} at {e.pos})") from None
    except RecursionError:
        raise HeaderSyntaxError(f"{what} is nested too deeply") from None
    except ValueError:  # e.g. an integer literal beyond Python's digit limit
        raise HeaderSyntaxError(f"{what} holds an out-of-range number") from None


def expect_keys(obj: Any, required: set[str], what: str, optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise HeaderSyntaxError(f"{what} must be a JSON object")
    missing = required - obj.keys()
    if missing:
        raise HeaderSyntaxError(f"{what} is missing {sorted(missing)}")
    unknown = obj.keys() - required - optional
    if unknown:
        raise HeaderSyntaxError(f"{what} has unknown fields {sorted(unknown)}")
    return obj


def expect_int(v: Any, what: str, lo: int, hi: int) -> int:
    if type(v) is not int:
        raise HeaderSyntaxError(f"{what} must be an integer")
    if not lo <= v <= hi:
        raise LimitExceededError(f"{what} {v} outside {lo}..{hi}")
    return v


def expect_str(v: Any, what: str, max_len: int) -> str:
    if not isinstance(v, str):
        raise HeaderSyntaxError(f"{what} must be a string")
    try:
        size = len(v.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800"
        raise HeaderSyntaxError(f"{what} is not valid Unicode") from None
    if size > max_len:
        raise LimitExceededError(f"{what} is longer than {max_len} bytes")
    return v


def _parse_stanza(obj: Any, i: int) -> Stanza:
    what = f"recipient {i}"
    expect_keys(obj, {"type", "args", "body"}, what)
    type_ = expect_str(obj["type"], f"{what} type", C.MAX_STANZA_TYPE_SIZE)
    if not type_ or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in type_):
        raise HeaderSyntaxError(f"{what} type {type_!r} is not a simple ASCII name")
    args = obj["args"]
    if not isinstance(args, list):
        raise HeaderSyntaxError(f"{what} args must be a list")
    if len(args) > C.MAX_STANZA_ARGS:
        raise LimitExceededError(f"{what} has more than {C.MAX_STANZA_ARGS} args")
    args_t = tuple(expect_str(a, f"{what} arg", C.MAX_STANZA_ARG_SIZE) for a in args)
    body = b64decode(obj["body"], f"{what} body", max_size=C.MAX_STANZA_BODY_SIZE)
    return Stanza(type_, args_t, body)


def _parse_identity(obj: Any) -> ModelIdentity:
    expect_keys(obj, set(), "identity", frozenset({"name", "version", "file"}))
    vals = {}
    for k, v in obj.items():
        s = expect_str(v, f"identity {k}", C.MAX_IDENTITY_FIELD)
        if not s:
            raise HeaderSyntaxError(f"identity {k} must not be empty")
        vals[k] = s
    return ModelIdentity(**vals)


def _parse_plain(obj: Any) -> tuple[int, ...]:
    """``data.plain``: a non-empty, strictly increasing list of tensor numbers."""
    if not isinstance(obj, list) or not obj:
        raise HeaderSyntaxError("data plain must be a non-empty list")
    numbers = tuple(expect_int(v, "plain tensor number", 0, C.MAX_TENSOR_NUMBER) for v in obj)
    if any(a >= b for a, b in zip(numbers, numbers[1:])):
        raise HeaderSyntaxError("data plain must be strictly increasing")
    return numbers


def parse_header(raw: bytes) -> Header:
    """Parse the JSON header strictly. Raises HeaderSyntaxError / LimitExceededError."""
    obj = expect_keys(
        loads_strict(raw, "header"),
        {"cipher", "mode", "salt", "commitment", "segment_size", "identity", "features", "generation", "recipients",
         "index", "data"},
        "header",
    )  # fmt: skip
    cipher = obj["cipher"]
    if cipher not in C.CIPHERS:
        raise UnsupportedVersionError(f"unknown cipher {cipher!r}")
    mode = obj["mode"]
    if mode not in C.MODES:
        raise UnsupportedVersionError(f"unknown mode {mode!r}")
    features = obj["features"]
    if not isinstance(features, list):
        raise HeaderSyntaxError("features must be a list")
    if features:
        raise UnsupportedVersionError(f"file needs features this reader lacks: {features!r}")
    seg = expect_int(obj["segment_size"], "segment_size", C.MIN_SEGMENT_SIZE, C.MAX_SEGMENT_SIZE)
    if seg & (seg - 1):
        raise HeaderSyntaxError(f"segment_size {seg} is not a power of two")
    recipients = obj["recipients"]
    if not isinstance(recipients, list) or not recipients:
        raise HeaderSyntaxError("recipients must be a non-empty list")
    if len(recipients) > C.MAX_STANZAS:
        raise LimitExceededError(f"more than {C.MAX_STANZAS} recipients")
    stanzas = tuple(_parse_stanza(s, i) for i, s in enumerate(recipients))
    index = expect_keys(obj["index"], {"length", "encrypted"}, "index")
    index_length = expect_int(index["length"], "index length", 0, C.MAX_INDEX_SIZE)
    if not isinstance(index["encrypted"], bool):
        raise HeaderSyntaxError("index encrypted must be true or false")
    data = expect_keys(obj["data"], {"length", "segments", "tags_offset", "data_offset"}, "data", frozenset({"plain"}))
    header = Header(
        cipher=cipher,
        mode=mode,
        salt=b64decode(obj["salt"], "salt", C.SALT_SIZE),
        commitment=b64decode(obj["commitment"], "commitment", C.KEY_SIZE),
        segment_size=seg,
        recipients=stanzas,
        index_length=index_length,
        index_encrypted=index["encrypted"],
        data_length=expect_int(data["length"], "data length", 0, C.MAX_DATA_LENGTH),
        segment_count=expect_int(data["segments"], "segment count", 0, C.MAX_DATA_LENGTH),
        tags_offset=expect_int(data["tags_offset"], "tags_offset", 0, C.MAX_DATA_LENGTH),
        data_offset=expect_int(data["data_offset"], "data_offset", 0, C.MAX_DATA_LENGTH),
        identity=_parse_identity(obj["identity"]),
        plain=_parse_plain(data["plain"]) if "plain" in data else (),
        generation=expect_int(obj["generation"], "generation", 0, C.MAX_DATA_LENGTH),
    )
    check_layout(header, len(raw))
    return header


def check_layout(h: Header, header_len: int) -> None:
    """Sections in order, no overlaps, bounded gaps, counts consistent with sizes."""
    if h.mode == "blob":
        if h.index_length != 0 or h.index_encrypted:
            raise LayoutError("a blob file has no index")
        if h.segment_count != -(-h.data_length // h.segment_size):
            raise LayoutError("segment count does not match the blob length")
    elif h.index_length == 0:
        raise LayoutError("a tensors file needs an index")
    elif h.index_encrypted and h.index_length <= C.TAG_SIZE:
        raise LayoutError("encrypted index is shorter than its tag")
    if h.segment_count > h.data_length:
        raise LayoutError("more segments than data bytes")
    if h.data_length and h.segment_count < -(-h.data_length // h.segment_size):
        raise LayoutError("too few segments for the data length")
    index_end = h.index_end(header_len)
    if h.tags_offset < index_end:
        raise LayoutError("tag table overlaps the header or index")
    if h.tags_offset - index_end > C.MAX_GAP:
        raise LimitExceededError("gap before the tag table is too large")
    tags_end = h.tags_offset + h.tags_length
    if h.data_offset < tags_end:
        raise LayoutError("data region overlaps the tag table")
    if h.data_offset - tags_end > C.MAX_GAP:
        raise LimitExceededError("gap before the data region is too large")
    if h.plain and h.mode == "blob":
        raise LayoutError("a blob file cannot have plain tensors")
    if h.plain and len(h.plain) >= h.segment_count:
        raise LayoutError("more plain tensors than the file's segments allow: at least one segment must be encrypted")
