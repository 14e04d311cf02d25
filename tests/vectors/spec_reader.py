"""An independent implementation of tensorseal format v1, written from docs/FORMAT.md.

It imports nothing from ``tensorseal``: only the standard library and the primitives of
``cryptography`` (HKDF, HMAC, scrypt, X25519, AES-256-GCM, ChaCha20-Poly1305). The test
vectors are checked against it as well as against the package, so a vector that passes
both says that the package and the written specification agree.

Errors are reported as :class:`SpecError` carrying the name of the error class that
FORMAT.md assigns to the failure (``"HeaderAuthenticationError"`` and so on).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class SpecError(Exception):
    """A failure, named by the error class FORMAT.md gives it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


class _NotMine(Exception):
    """An identity found no stanza of its own (IncorrectIdentityError): try the next."""


# ---- constants (FORMAT.md section "Limits") --------------------------------------------
MAGIC = b"\x89TSEAL\r\n"
PREFIX_SIZE = 16
MAC_SIZE = 32
TAG_SIZE = 16
MAX_HEADER_SIZE = 16 << 20
MAX_INDEX_SIZE = 100_000_000 + 16
MAX_STANZAS = 1024
MAX_STANZA_ARGS = 8
MAX_STANZA_ARG_SIZE = 1024
MAX_STANZA_BODY_SIZE = 16 << 10
MAX_STANZA_TYPE_SIZE = 64
MAX_GAP = 16 << 20
MAX_IDENTITY_FIELD = 256
MAX_DATA_LENGTH = 1 << 53
MAX_SEGMENTS_PER_TENSOR = 1 << 32
MAX_SAFETENSORS_HEADER = 100_000_000
MAX_RANK = 64
CIPHER_IDS = {"aes-256-gcm": 1, "chacha20-poly1305": 2}
MODE_IDS = {"tensors": 1, "blob": 2}
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip
HEADER_FIELDS = {
    "cipher", "mode", "salt", "commitment", "segment_size", "identity", "features", "generation", "recipients",
    "index", "data",
}  # fmt: skip


# ---- primitives ----------------------------------------------------------------------
def hkdf(ikm: bytes, salt: bytes, label: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt, b"tensorseal/v1/" + label.encode("ascii")).derive(ikm)


def subkeys(file_key: bytes, salt: bytes) -> dict[str, bytes]:
    return {
        "commitment": hkdf(file_key, salt, "commitment"),
        "mac_key": hkdf(file_key, salt, "header-mac"),
        "index_key": hkdf(file_key, salt, "index"),
        "data_key": hkdf(file_key, salt, "data"),
        "plain_key": hkdf(file_key, salt, "plain"),
    }


def identity_digest(identity: dict[str, str]) -> bytes:
    out = b""
    for k in ("name", "version", "file"):
        raw = identity.get(k, "").encode("utf-8")
        out += struct.pack(">I", len(raw)) + raw
    return hashlib.sha256(out).digest()


def associated_data(cipher: str, mode: str, segment_size: int, salt: bytes, identity: dict[str, str]) -> bytes:
    return (
        b"tensorseal/v1"
        + bytes([CIPHER_IDS[cipher], MODE_IDS[mode]])
        + struct.pack(">I", segment_size)
        + salt
        + identity_digest(identity)
    )


def segment_nonce(tensor: int, segment: int, last: bool) -> bytes:
    return struct.pack(">III", tensor, segment, int(last))


def aead(cipher: str, key: bytes) -> AESGCM | ChaCha20Poly1305:
    return AESGCM(key) if cipher == "aes-256-gcm" else ChaCha20Poly1305(key)


# ---- key strings -----------------------------------------------------------------------
X25519_RECIPIENT_PREFIX = "tseal1"
X25519_IDENTITY_PREFIX = "TSEAL-SECRET-KEY-1"
SYMMETRIC_KEY_PREFIX = "TSEAL-SYMMETRIC-KEY-1"


def encode_key_string(prefix: str, payload: bytes) -> str:
    check = hashlib.sha256(prefix.lower().encode("ascii") + payload).digest()[:4]
    text = base64.b32encode(payload + check).decode("ascii").rstrip("=")
    return prefix + (text.lower() if prefix == X25519_RECIPIENT_PREFIX else text)


def decode_key_string(prefix: str, text: str) -> bytes:
    text = text.strip()
    if not text.lower().startswith(prefix.lower()):
        raise SpecError("InvalidKeyError", f"key string must start with {prefix}")
    body = text[len(prefix) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise SpecError("InvalidKeyError", "not base32") from None
    if len(raw) != 36:
        raise SpecError("InvalidKeyError", "wrong length")
    payload, check = raw[:32], raw[32:]
    if hashlib.sha256(prefix.lower().encode("ascii") + payload).digest()[:4] != check:
        raise SpecError("InvalidKeyError", "checksum mismatch")
    return payload


def x25519_public(secret: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# ---- stanzas -----------------------------------------------------------------------------
ZERO_NONCE = bytes(12)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _b64_arg(text: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise SpecError("FormatError", "stanza argument is not base64") from None
    if len(raw) != size or _b64(raw) != text:
        raise SpecError("FormatError", f"stanza argument must be {size} bytes of canonical base64")
    return raw


def _open_body(wrap_key: bytes, body: bytes) -> bytes | None:
    if len(body) != 48:
        raise SpecError("FormatError", "wrapped key must be 48 bytes")
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(ZERO_NONCE, body, None)
    except InvalidTag:
        return None


def x25519_wrap(file_key: bytes, ephemeral_secret: bytes, recipient_public: bytes) -> dict[str, Any]:
    eph = X25519PrivateKey.from_private_bytes(ephemeral_secret)
    eph_pub = x25519_public(ephemeral_secret)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    wrap_key = hkdf(shared, eph_pub + recipient_public, "X25519")
    body = ChaCha20Poly1305(wrap_key).encrypt(ZERO_NONCE, file_key, None)
    return {"ephemeral_public": eph_pub, "shared_secret": shared, "wrap_key": wrap_key,
            "stanza": {"type": "X25519", "args": [_b64(eph_pub)], "body": _b64(body)}}  # fmt: skip


def symmetric_wrap(file_key: bytes, key: bytes, salt: bytes) -> dict[str, Any]:
    wrap_key = hkdf(key, salt, "symmetric")
    body = ChaCha20Poly1305(wrap_key).encrypt(ZERO_NONCE, file_key, None)
    return {"wrap_key": wrap_key, "stanza": {"type": "symmetric", "args": [_b64(salt)], "body": _b64(body)}}


def scrypt_wrap_key(passphrase: bytes, salt: bytes, log_n: int) -> bytes:
    return Scrypt(b"tensorseal/v1/scrypt" + salt, 32, 1 << log_n, 8, 1).derive(passphrase)


def scrypt_wrap(file_key: bytes, passphrase: bytes, salt: bytes, log_n: int) -> dict[str, Any]:
    wrap_key = scrypt_wrap_key(passphrase, salt, log_n)
    body = ChaCha20Poly1305(wrap_key).encrypt(ZERO_NONCE, file_key, None)
    return {"wrap_key": wrap_key, "stanza": {"type": "scrypt", "args": [_b64(salt), str(log_n)], "body": _b64(body)}}


def unwrap(identity: dict[str, Any], stanzas: list[dict[str, Any]]) -> bytes:
    """The file key from the stanzas, for one identity (see vectors/README.md for the
    identity objects). Raises _NotMine if none of the stanzas is for this identity."""
    kind = identity["kind"]
    if kind == "x25519":
        secret = decode_key_string(X25519_IDENTITY_PREFIX, identity["secret"])
        own = x25519_public(secret)
        for s in stanzas:
            if s["type"] != "X25519":
                continue
            if len(s["args"]) != 1:
                raise SpecError("FormatError", "X25519 stanza needs one argument")
            eph_pub = _b64_arg(s["args"][0], 32)
            try:
                share = X25519PublicKey.from_public_bytes(eph_pub)
                shared = X25519PrivateKey.from_private_bytes(secret).exchange(share)
            except ValueError:  # all-zero shared secret
                raise SpecError("FormatError", "low-order ephemeral share") from None
            if shared == bytes(32):
                raise SpecError("FormatError", "low-order ephemeral share")
            key = _open_body(hkdf(shared, eph_pub + own, "X25519"), s["body"])
            if key is not None:
                return key
        raise _NotMine
    if kind == "symmetric":
        sym = decode_key_string(SYMMETRIC_KEY_PREFIX, identity["key"])
        for s in stanzas:
            if s["type"] != "symmetric":
                continue
            if len(s["args"]) != 1:
                raise SpecError("FormatError", "symmetric stanza needs one argument")
            key = _open_body(hkdf(sym, _b64_arg(s["args"][0], 16), "symmetric"), s["body"])
            if key is not None:
                return key
        raise _NotMine
    if kind == "passphrase":
        pw = bytes.fromhex(identity["passphrase_hex"])
        max_wf = identity.get("max_work_factor", 22)
        for s in stanzas:
            if s["type"] != "scrypt":
                continue
            if len(stanzas) != 1:
                raise SpecError("FormatError", "a scrypt stanza must be alone")
            if len(s["args"]) != 2:
                raise SpecError("FormatError", "scrypt stanza needs two arguments")
            salt = _b64_arg(s["args"][0], 16)
            text = s["args"][1]
            if not re.fullmatch(r"[1-9][0-9]?", text) or not 1 <= int(text) <= 30:
                raise SpecError("FormatError", "scrypt work factor must be a decimal integer in 1..30")
            if int(text) > max_wf:
                raise SpecError("WorkFactorError", "work factor above the limit")
            key = _open_body(scrypt_wrap_key(pw, salt, int(text)), s["body"])
            if key is None:
                raise _NotMine
            return key
        raise _NotMine
    raise ValueError(f"unknown identity kind {kind!r}")


# ---- strict JSON -------------------------------------------------------------------------
def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise SpecError("HeaderSyntaxError", f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise SpecError("HeaderSyntaxError", f"{name} is not allowed")


def loads_strict(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("HeaderSyntaxError", "not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constants)
    except SpecError:
        raise
    except (ValueError, RecursionError) as e:
        raise SpecError("HeaderSyntaxError", f"invalid JSON: {e}") from None


def _keys(obj: Any, required: set[str], optional: set[str] = set()) -> dict[str, Any]:
    if not isinstance(obj, dict) or not required <= obj.keys() or obj.keys() - required - optional:
        raise SpecError("HeaderSyntaxError", f"expected an object with fields {sorted(required)}")
    return obj


def _int(v: Any, lo: int, hi: int) -> int:
    if type(v) is not int:
        raise SpecError("HeaderSyntaxError", "expected an integer")
    if not lo <= v <= hi:
        raise SpecError("LimitExceededError", f"{v} outside {lo}..{hi}")
    return v


def _str(v: Any, max_bytes: int) -> str:
    if not isinstance(v, str):
        raise SpecError("HeaderSyntaxError", "expected a string")
    try:
        n = len(v.encode("utf-8"))
    except UnicodeEncodeError:
        raise SpecError("HeaderSyntaxError", "string holds a lone surrogate") from None
    if n > max_bytes:
        raise SpecError("LimitExceededError", f"string longer than {max_bytes} bytes")
    return v


def _b64_field(v: Any, size: int | None = None, max_size: int | None = None) -> bytes:
    if not isinstance(v, str):
        raise SpecError("HeaderSyntaxError", "expected a base64 string")
    if max_size is not None and len(v) > (max_size + 2) // 3 * 4:
        raise SpecError("LimitExceededError", "base64 value too long")
    if not re.fullmatch(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", v):
        raise SpecError("HeaderSyntaxError", "not padded standard base64")
    raw = base64.b64decode(v)
    if _b64(raw) != v:
        raise SpecError("HeaderSyntaxError", "non-canonical base64")
    if size is not None and len(raw) != size:
        raise SpecError("HeaderSyntaxError", f"expected {size} bytes")
    return raw


@dataclass
class Header:
    cipher: str
    mode: str
    salt: bytes
    commitment: bytes
    segment_size: int
    stanzas: list[dict[str, Any]]
    index_length: int
    index_encrypted: bool
    data_length: int
    segment_count: int
    tags_offset: int
    data_offset: int
    identity: dict[str, str] = field(default_factory=dict)
    plain: list[int] = field(default_factory=list)
    generation: int = 0


def parse_header(raw: bytes) -> Header:
    obj = _keys(loads_strict(raw), HEADER_FIELDS)
    if obj["cipher"] not in CIPHER_IDS:
        raise SpecError("UnsupportedVersionError", "unknown cipher")
    if obj["mode"] not in MODE_IDS:
        raise SpecError("UnsupportedVersionError", "unknown mode")
    if not isinstance(obj["features"], list):
        raise SpecError("HeaderSyntaxError", "features must be a list")
    if obj["features"]:
        raise SpecError("UnsupportedVersionError", "unknown features")
    seg = _int(obj["segment_size"], 1 << 12, 1 << 26)
    if seg & (seg - 1):
        raise SpecError("HeaderSyntaxError", "segment_size is not a power of two")
    recipients = obj["recipients"]
    if not isinstance(recipients, list) or not recipients:
        raise SpecError("HeaderSyntaxError", "recipients must be a non-empty list")
    if len(recipients) > MAX_STANZAS:
        raise SpecError("LimitExceededError", "too many recipients")
    stanzas = []
    for s in recipients:
        _keys(s, {"type", "args", "body"})
        type_ = _str(s["type"], MAX_STANZA_TYPE_SIZE)
        if not re.fullmatch(r"[A-Za-z0-9._-]+", type_):
            raise SpecError("HeaderSyntaxError", "bad stanza type")
        if not isinstance(s["args"], list):
            raise SpecError("HeaderSyntaxError", "args must be a list")
        if len(s["args"]) > MAX_STANZA_ARGS:
            raise SpecError("LimitExceededError", "too many stanza args")
        args = [_str(a, MAX_STANZA_ARG_SIZE) for a in s["args"]]
        body = _b64_field(s["body"], max_size=MAX_STANZA_BODY_SIZE)
        stanzas.append({"type": type_, "args": args, "body": body})
    index = _keys(obj["index"], {"length", "encrypted"})
    index_length = _int(index["length"], 0, MAX_INDEX_SIZE)
    if not isinstance(index["encrypted"], bool):
        raise SpecError("HeaderSyntaxError", "index.encrypted must be a boolean")
    data = _keys(obj["data"], {"length", "segments", "tags_offset", "data_offset"}, {"plain"})
    salt = _b64_field(obj["salt"], 32)
    commitment = _b64_field(obj["commitment"], 32)
    nums = [_int(data[k], 0, MAX_DATA_LENGTH) for k in ("length", "segments", "tags_offset", "data_offset")]
    ident = _keys(obj["identity"], set(), {"name", "version", "file"})
    for v in ident.values():
        if not _str(v, MAX_IDENTITY_FIELD):
            raise SpecError("HeaderSyntaxError", "identity fields must not be empty")
    plain: list[int] = []
    if "plain" in data:
        if not isinstance(data["plain"], list) or not data["plain"]:
            raise SpecError("HeaderSyntaxError", "data.plain must be a non-empty array")
        plain = [_int(v, 0, 2**32 - 1) for v in data["plain"]]
        if any(a >= b for a, b in zip(plain, plain[1:])):
            raise SpecError("HeaderSyntaxError", "data.plain must be strictly increasing")
    generation = _int(obj["generation"], 0, MAX_DATA_LENGTH)
    h = Header(obj["cipher"], obj["mode"], salt, commitment, seg, stanzas, index_length, index["encrypted"],
               *nums, identity=dict(ident), plain=plain, generation=generation)  # fmt: skip
    _check_layout(h, len(raw))
    return h


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_layout(h: Header, header_len: int) -> None:
    if h.mode == "blob":
        if h.index_length != 0 or h.index_encrypted:
            raise SpecError("LayoutError", "a blob has no index")
        if h.segment_count != _ceil_div(h.data_length, h.segment_size):
            raise SpecError("LayoutError", "blob segment count")
    elif h.index_length == 0:
        raise SpecError("LayoutError", "tensors mode needs an index")
    elif h.index_encrypted and h.index_length <= TAG_SIZE:
        raise SpecError("LayoutError", "encrypted index shorter than its tag")
    if h.segment_count > h.data_length:
        raise SpecError("LayoutError", "more segments than bytes")
    if h.data_length and h.segment_count < _ceil_div(h.data_length, h.segment_size):
        raise SpecError("LayoutError", "too few segments")
    index_end = PREFIX_SIZE + 2 * (header_len + MAC_SIZE) + h.index_length
    if h.tags_offset < index_end:
        raise SpecError("LayoutError", "tags overlap the index")
    if h.tags_offset - index_end > MAX_GAP:
        raise SpecError("LimitExceededError", "gap before tags")
    tags_end = h.tags_offset + TAG_SIZE * h.segment_count
    if h.data_offset < tags_end:
        raise SpecError("LayoutError", "data overlaps tags")
    if h.data_offset - tags_end > MAX_GAP:
        raise SpecError("LimitExceededError", "gap before data")
    if h.plain and (h.mode != "tensors" or len(h.plain) >= h.segment_count):
        raise SpecError("LayoutError", "data.plain in a blob, or nothing left encrypted")


# ---- safetensors index -------------------------------------------------------------------
@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def parse_index(raw: bytes) -> tuple[list[Tensor], int]:
    """Tensors in data order, and the data buffer length."""
    if len(raw) < 8:
        raise SpecError("TruncatedError", "index shorter than 8 bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_SAFETENSORS_HEADER:
        raise SpecError("LimitExceededError", "safetensors header over 100 MB")
    if n != len(raw) - 8:
        raise SpecError("LayoutError", "safetensors header length mismatch")
    if raw[8:9] != b"{":
        raise SpecError("HeaderSyntaxError", "safetensors header must start with {")
    obj = loads_strict(raw[8:])
    if not isinstance(obj, dict):
        raise SpecError("HeaderSyntaxError", "index must be an object")
    meta = obj.pop("__metadata__", None)
    if meta is not None and (not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values())):
        raise SpecError("HeaderSyntaxError", "__metadata__ must map strings to strings")
    tensors = []
    for name, info in obj.items():
        _keys(info, {"dtype", "shape", "data_offsets"})
        dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str):
            raise SpecError("HeaderSyntaxError", "dtype")
        if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(type(d) is int and d >= 0 for d in shape):
            raise SpecError("HeaderSyntaxError", "shape")
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int and o >= 0 for o in offs)):
            raise SpecError("HeaderSyntaxError", "data_offsets")
        begin, end = offs
        if end < begin:
            raise SpecError("LayoutError", "end before begin")
        if dtype not in DTYPE_BITS:
            raise SpecError("UnsupportedDtypeError", dtype)
        bits = DTYPE_BITS[dtype]
        for d in shape:
            bits *= d
        if bits % 8 or bits // 8 != end - begin:
            raise SpecError("LayoutError", "size does not match shape and dtype")
        tensors.append(Tensor(name, dtype, tuple(shape), begin, end))
    tensors.sort(key=lambda t: (t.begin, t.end, t.name))
    cursor = 0
    for t in tensors:
        if t.begin != cursor:
            raise SpecError("LayoutError", "hole or overlap")
        cursor = t.end
    return tensors, cursor


# ---- segments ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    tensor: int
    index: int
    last: bool
    start: int  # offset in the data region
    length: int
    tag_index: int

    @property
    def nonce(self) -> bytes:
        return segment_nonce(self.tensor, self.index, self.last)


def plan_segments(lengths: list[int], segment_size: int) -> list[Segment]:
    out: list[Segment] = []
    start = 0
    for t, length in enumerate(lengths):
        n = _ceil_div(length, segment_size)
        if n > MAX_SEGMENTS_PER_TENSOR:
            raise SpecError("LimitExceededError", "too many segments in one tensor")
        for i in range(n):
            off = i * segment_size
            out.append(Segment(t, i, i == n - 1, start + off, min(segment_size, length - off), len(out)))
        start += length
    return out


# ---- the reader ----------------------------------------------------------------------------
def _parse_slot(data: bytes, raw: bytes, header_len: int) -> Header:
    """Steps 5-8 for one head slot."""
    h = parse_header(raw[:header_len])
    file_size = h.data_offset + h.data_length
    if len(data) < file_size:
        raise SpecError("TruncatedError", "file shorter than its layout")
    if len(data) > file_size:
        raise SpecError("TrailingDataError", "bytes after the data region")
    index_end = PREFIX_SIZE + 2 * (header_len + MAC_SIZE) + h.index_length
    tags_end = h.tags_offset + TAG_SIZE * h.segment_count
    if any(data[index_end : h.tags_offset]) or any(data[tags_end : h.data_offset]):
        raise SpecError("LayoutError", "non-zero padding")
    return h


def _unlock(data: bytes, slot: int, h: Header, header_len: int, identities: list[dict[str, Any]]) -> tuple[bytes, dict[str, bytes], bytes]:
    """Steps 9-10 for one candidate slot: the file key, subkeys and the slot's MAC."""
    if any(s["type"] == "scrypt" for s in h.stanzas) and len(h.stanzas) != 1:
        raise SpecError("FormatError", "a scrypt stanza must be alone")
    file_key = None
    for ident in identities:
        try:
            file_key = unwrap(ident, h.stanzas)
            break
        except _NotMine:
            continue
    if file_key is None:
        raise SpecError("NoIdentityMatchError", "no identity opens the file")
    keys = subkeys(file_key, h.salt)
    if not hmac.compare_digest(keys["commitment"], h.commitment):
        raise SpecError("KeyCommitmentError", "commitment")
    area_off = PREFIX_SIZE + slot * (header_len + MAC_SIZE)
    index_off = PREFIX_SIZE + 2 * (header_len + MAC_SIZE)
    authenticated = data[:PREFIX_SIZE] + data[area_off : area_off + header_len] + data[index_off : index_off + h.index_length]
    mac = hmac.new(keys["mac_key"], authenticated, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, data[area_off + header_len : area_off + header_len + MAC_SIZE]):
        raise SpecError("HeaderAuthenticationError", "header MAC")
    return file_key, keys, mac

@dataclass
class Opened:
    plaintext: bytes
    header: Header
    header_length: int
    keys: dict[str, bytes]
    aad: bytes
    mac: bytes
    index_plaintext: bytes
    tensors: list[Tensor]
    segments: list[Segment]
    tags: list[bytes]


def open_sealed(data: bytes, identities: list[dict[str, Any]]) -> Opened:
    """Open a sealed file held in memory, following FORMAT.md "Reading a file" step by step."""
    # 1-2: prefix
    if len(data) < 8 or data[:8] != MAGIC:
        raise SpecError("NotSealedError", "bad magic")
    if len(data) < PREFIX_SIZE:
        raise SpecError("TruncatedError", "file ends inside the prefix")
    version, flags, header_len = struct.unpack("<HHI", data[8:16])
    if version != 1 or flags != 0:
        raise SpecError("UnsupportedVersionError", "version or flags")
    if not 1 <= header_len <= MAX_HEADER_SIZE:
        raise SpecError("LimitExceededError", "header length")
    slot_size = header_len + MAC_SIZE
    if len(data) < PREFIX_SIZE + 2 * slot_size:
        raise SpecError("TruncatedError", "file ends inside the header slots")
    # 4-8, per slot; 8b: the candidates, newest first
    candidates, damaged = [], []
    for slot in (0, 1):
        raw = data[PREFIX_SIZE + slot * slot_size : PREFIX_SIZE + (slot + 1) * slot_size]
        if not any(raw):
            continue  # empty
        try:
            candidates.append((slot, _parse_slot(data, raw, header_len)))
        except SpecError as exc:
            damaged.append(exc)
    if not candidates:
        raise damaged[0] if damaged else SpecError("LayoutError", "both header slots are empty")
    candidates.sort(key=lambda c: -c[1].generation)
    first_error = None
    for slot, h in candidates:
        try:
            file_key, keys, mac = _unlock(data, slot, h, header_len, identities)
            break
        except SpecError as exc:
            first_error = first_error or exc
    else:
        raise first_error
    index_off = PREFIX_SIZE + 2 * slot_size
    index_end = index_off + h.index_length
    # 9: index
    aad = associated_data(h.cipher, h.mode, h.segment_size, h.salt, h.identity)
    index_plain, tensors = b"", []
    if h.mode == "tensors":
        index_plain = data[index_off:index_end]
        if h.index_encrypted:
            try:
                index_plain = aead(h.cipher, keys["index_key"]).decrypt(bytes(12), index_plain, aad)
            except InvalidTag:
                raise SpecError("AuthenticationError", "index does not decrypt") from None
        tensors, _ = parse_index(index_plain)
        lengths = [t.end - t.begin for t in tensors]
    else:
        lengths = [h.data_length]
    segments = plan_segments(lengths, h.segment_size)
    if sum(lengths) != h.data_length or len(segments) != h.segment_count:
        raise SpecError("LayoutError", "index disagrees with the header")
    if h.plain:  # 10.5
        if h.plain[-1] >= len(lengths) or any(lengths[t] == 0 for t in h.plain):
            raise SpecError("LayoutError", "data.plain names no tensor or an empty one")
        if sum(lengths[t] for t in h.plain) == h.data_length:
            raise SpecError("LayoutError", "nothing is encrypted")
    # 10: segments
    box = aead(h.cipher, keys["data_key"])
    plain_box = aead(h.cipher, keys["plain_key"])
    out = bytearray(h.data_length)
    tags = []
    for s in segments:
        ct = data[h.data_offset + s.start : h.data_offset + s.start + s.length]
        tag = data[h.tags_offset + TAG_SIZE * s.tag_index : h.tags_offset + TAG_SIZE * (s.tag_index + 1)]
        tags.append(tag)
        try:
            if s.tensor in h.plain:
                plain_box.decrypt(s.nonce, tag, aad + ct)  # returns b"" when the tag is right
                out[s.start : s.start + s.length] = ct
            else:
                out[s.start : s.start + s.length] = box.decrypt(s.nonce, ct + tag, aad)
        except InvalidTag:
            raise SpecError("SegmentAuthenticationError", f"segment {s.index} of tensor {s.tensor}") from None
    return Opened(index_plain + bytes(out), h, header_len, keys, aad, mac, index_plain, tensors, segments, tags)
