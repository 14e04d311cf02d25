"""Generate the format v1 test vectors in this folder (deterministic: same output every run).

    PYTHONPATH=src python tests/vectors/generate.py          # rewrite the *.json files
    PYTHONPATH=src python tests/vectors/generate.py --check  # fail if they would change

Every secret comes from SHA-256 of a fixed label, so the vectors can be rebuilt from this
script alone. Each file is sealed by the package through its deterministic entry points
(``write_sealed(_file_key=, _salt=, _stanzas=)`` and the recipients' ``_wrap_with``), then
opened both by the package and by ``spec_reader.py`` (an independent implementation of
docs/FORMAT.md); the intermediate values in the vectors come from ``spec_reader.py`` and
are checked against the package before anything is written. Negative vectors are edits of
the positive ones; the expected error is written here by hand from FORMAT.md and checked
against both implementations.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import spec_reader as S  # noqa: E402

from tensorseal import errors  # noqa: E402
from tensorseal.files import decrypt_file  # noqa: E402
from tensorseal.format import keys as K  # noqa: E402
from tensorseal.format.header import ModelIdentity, Stanza, parse_header  # noqa: E402
from tensorseal.recipients import Passphrase, SymmetricKey, X25519Identity, X25519Recipient  # noqa: E402
from tensorseal.writer import SealOptions, write_sealed  # noqa: E402

VECTOR_VERSION = 1


def det(label: str, n: int = 32) -> bytes:
    """Deterministic test secret: the first n bytes of SHA-256("tensorseal/v1 test vectors/" | label)."""
    return hashlib.sha256(b"tensorseal/v1 test vectors/" + label.encode("ascii")).digest()[:n]


def det_stream(label: str, n: int) -> bytes:
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"tensorseal/v1 test vectors/{label}/{i}".encode("ascii")).digest()
        i += 1
    return out[:n]


# ---- key material ----------------------------------------------------------------------------
X25519_IDENTITIES = {name: det(f"x25519 identity {name}") for name in ("alice", "bob", "mallory")}
SYMMETRIC_KEYS = {name: det(f"symmetric key {name}") for name in ("carol", "dave")}
PASSPHRASE = "correct horse battery staple"


def x25519_identity_obj(name: str) -> dict[str, Any]:
    return {"kind": "x25519", "secret": S.encode_key_string(S.X25519_IDENTITY_PREFIX, X25519_IDENTITIES[name])}


def symmetric_identity_obj(name: str) -> dict[str, Any]:
    return {"kind": "symmetric", "key": S.encode_key_string(S.SYMMETRIC_KEY_PREFIX, SYMMETRIC_KEYS[name])}


def passphrase_identity_obj(pw: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "passphrase", "passphrase_hex": pw.encode("utf-8").hex(), **extra}


# ---- plaintexts ----------------------------------------------------------------------------
def safetensors_file(
    tensors: list[tuple[str, str, list[int], bytes]],
    metadata: dict[str, str] | None = None,
    json_order: list[str] | None = None,
) -> bytes:
    """A safetensors file: ``tensors`` in data order; JSON keys in ``json_order``; JSON
    padded with spaces so the data buffer starts on an 8-byte boundary."""
    entries: dict[str, dict[str, Any]] = {}
    offset = 0
    for name, dtype, shape, raw in tensors:
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    obj: dict[str, Any] = {}
    if metadata is not None:
        obj["__metadata__"] = metadata
    for name in json_order or [t[0] for t in tensors]:
        obj[name] = entries[name]
    body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    body += b" " * (-len(body) % 8)
    out = struct.pack("<Q", len(body)) + body + b"".join(t[3] for t in tensors)
    # sanity: the safetensors library reads it back
    loaded = dict(safetensors.deserialize(out))
    assert sorted(loaded) == sorted(t[0] for t in tensors)
    for name, _dtype, shape, raw in tensors:
        assert bytes(loaded[name]["data"]) == raw and list(loaded[name]["shape"]) == shape
    return out


def f32(values: Any) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


# ---- vector definitions ------------------------------------------------------------------------
VECTORS: list[dict[str, Any]] = [
    {
        "name": "tensors-aes256gcm-x25519",
        "description": "tensors mode, encrypted index, AES-256-GCM, default 1 MiB segments, one X25519 "
        "recipient, model identity with name/version/file, __metadata__, a 0-d tensor and an empty tensor",
        "mode": "tensors", "cipher": "aes-256-gcm", "segment_size": 1 << 20, "public_index": False,
        "model_identity": {"name": "tiny-llm", "version": "1.0", "file": "model.safetensors"},
        "plaintext": lambda: safetensors_file(
            [
                ("embed.weight", "F32", [4, 4], f32(np.arange(16) * 0.5)),
                ("bias", "I64", [3], np.array([-1, 0, 1], dtype="<i8").tobytes()),
                ("scale", "F32", [], f32(1.5)),
                ("unused", "F16", [0, 3], b""),
            ],
            metadata={"format": "pt", "source": "tensorseal test vectors"},
        ),
        "recipients": [{"type": "X25519", "identity": "alice", "ephemeral": "v1 ephemeral"}],
        "identities": [x25519_identity_obj("alice")],
    },
    {
        "name": "tensors-public-index-symmetric",
        "description": "tensors mode with a public (unencrypted, but MAC-covered) index, AES-256-GCM, "
        "4 KiB segments, one symmetric-key recipient, no model identity",
        "mode": "tensors", "cipher": "aes-256-gcm", "segment_size": 4096, "public_index": True,
        "model_identity": {},
        "plaintext": lambda: safetensors_file(
            [
                ("layer.0.weight", "F64", [2], np.array([3.25, -2.0], dtype="<f8").tobytes()),
                ("layer.0.ids", "U8", [5], bytes([1, 2, 3, 4, 5])),
            ]
        ),
        "recipients": [{"type": "symmetric", "key": "carol", "salt": "v2 symmetric salt"}],
        "identities": [symmetric_identity_obj("carol")],
    },
    {
        "name": "tensors-chacha20poly1305-scrypt",
        "description": "tensors mode, encrypted index, ChaCha20-Poly1305, 4 KiB segments, one passphrase "
        "(scrypt, work factor 10) recipient, model identity with a name only",
        "mode": "tensors", "cipher": "chacha20-poly1305", "segment_size": 4096, "public_index": False,
        "model_identity": {"name": "scrypt-model"},
        "plaintext": lambda: safetensors_file(
            [
                ("w", "BF16", [2, 3], bytes.fromhex("803f0040404080400000a040")),
                ("ids", "I32", [4], np.array([7, 8, 9, 10], dtype="<i4").tobytes()),
            ],
            metadata={"note": "passphrase-sealed"},
        ),
        "recipients": [{"type": "scrypt", "passphrase": PASSPHRASE, "salt": "v3 scrypt salt", "work_factor": 10}],
        "identities": [passphrase_identity_obj(PASSPHRASE)],
    },
    {
        "name": "tensors-multisegment",
        "description": "tensors mode, 4 KiB segments: a 10000-byte tensor in three segments (4096, 4096, "
        "1808), empty tensors that tie on offsets (ordered by name) and still take a tensor index, a 0-d "
        "tensor, and JSON key order different from data order",
        "mode": "tensors", "cipher": "aes-256-gcm", "segment_size": 4096, "public_index": False,
        "model_identity": {"name": "multi-seg", "version": "2"},
        "plaintext": lambda: safetensors_file(
            [
                ("a.empty", "F32", [0], b""),
                ("b.empty", "F32", [0, 7], b""),
                ("big", "F32", [50, 50], f32(np.arange(2500) / 8)),
                ("mid.empty", "U8", [0], b""),
                ("small", "F32", [3], f32([1.0, 2.0, 3.0])),
                ("z", "U8", [], b"\x2a"),
            ],
            json_order=["z", "small", "mid.empty", "big", "b.empty", "a.empty"],
        ),
        "recipients": [{"type": "X25519", "identity": "bob", "ephemeral": "v4 ephemeral"}],
        "identities": [x25519_identity_obj("bob")],
    },
    {
        "name": "tensors-multi-recipient",
        "description": "tensors mode, AES-256-GCM, four stanzas: X25519 (alice), X25519 (bob), symmetric "
        "(carol) and a stanza of an unknown type that every reader must skip; each identity alone "
        "opens the file; model identity with a file field only",
        "mode": "tensors", "cipher": "aes-256-gcm", "segment_size": 4096, "public_index": False,
        "model_identity": {"file": "shard-00001-of-00002.safetensors"},
        "plaintext": lambda: safetensors_file([("x", "F32", [2, 2], f32([[1, 2], [3, 4]]))]),
        "recipients": [
            {"type": "X25519", "identity": "alice", "ephemeral": "v5 ephemeral alice"},
            {"type": "X25519", "identity": "bob", "ephemeral": "v5 ephemeral bob"},
            {"type": "symmetric", "key": "carol", "salt": "v5 symmetric salt"},
            {"type": "opaque", "stanza": {"type": "example.invalid-kms", "args": ["key-id-1234"],
                                          "body": base64.b64encode(det("v5 opaque body")).decode()}},
        ],  # fmt: skip
        "identities": [x25519_identity_obj("alice"), x25519_identity_obj("bob"), symmetric_identity_obj("carol")],
    },
    {
        "name": "tensors-selective-plain",
        "description": "selective encryption: tensors 1 ('norm', 12 bytes) and 3 ('table', 5000 bytes in two "
        "4 KiB segments) are stored in clear (data.plain = [1, 3]) with tags under plain_key (FORMAT.md 10.5); "
        "tensors 0 and 2 are encrypted; public index, AES-256-GCM, one symmetric recipient",
        "mode": "tensors", "cipher": "aes-256-gcm", "segment_size": 4096, "public_index": True,
        "model_identity": {"name": "selective", "version": "1"},
        "plain": [1, 3],
        "plaintext": lambda: safetensors_file(
            [
                ("embed", "F32", [2, 3], f32(np.arange(6) - 2.5)),
                ("norm", "F32", [3], f32([1.0, 1.0, 0.5])),
                ("secret", "F32", [4], f32([0.25, -8.0, 3.0, 1e-3])),
                ("table", "U8", [5000], det_stream("v8 table", 5000)),
            ]
        ),
        "recipients": [{"type": "symmetric", "key": "carol", "salt": "v8 symmetric salt"}],
        "identities": [symmetric_identity_obj("carol")],
    },
    {
        "name": "blob-chacha20poly1305-x25519",
        "description": "blob mode (not a safetensors file), ChaCha20-Poly1305, 4 KiB segments, a 4196-byte "
        "blob in two segments (4096, 100), one X25519 recipient",
        "mode": "blob", "cipher": "chacha20-poly1305", "segment_size": 4096, "public_index": False,
        "model_identity": {"name": "tokenizer", "file": "tokenizer.json"},
        "plaintext": lambda: det_stream("v6 blob", 4196),
        "recipients": [{"type": "X25519", "identity": "alice", "ephemeral": "v6 ephemeral"}],
        "identities": [x25519_identity_obj("alice")],
    },
    {
        "name": "blob-empty-symmetric",
        "description": "blob mode with an empty plaintext: no segments, an empty tag table, data_offset 4096",
        "mode": "blob", "cipher": "aes-256-gcm", "segment_size": 4096, "public_index": False,
        "model_identity": {},
        "plaintext": lambda: b"",
        "recipients": [{"type": "symmetric", "key": "carol", "salt": "v7 symmetric salt"}],
        "identities": [symmetric_identity_obj("carol")],
    },
]  # fmt: skip


# ---- building one vector ---------------------------------------------------------------------------
def expand_recipient(spec: dict[str, Any], file_key: bytes) -> tuple[dict[str, Any], Stanza]:
    """The recipient's inputs and intermediates (via spec_reader), and the package's stanza."""
    t = spec["type"]
    if t == "X25519":
        secret = X25519_IDENTITIES[spec["identity"]]
        public = S.x25519_public(secret)
        eph = det(spec["ephemeral"])
        w = S.x25519_wrap(file_key, eph, public)
        stanza = X25519Recipient.parse(S.encode_key_string(S.X25519_RECIPIENT_PREFIX, public))._wrap_with(
            file_key, X25519PrivateKey.from_private_bytes(eph)
        )
        entry = {
            "type": "X25519",
            "recipient": S.encode_key_string(S.X25519_RECIPIENT_PREFIX, public),
            "recipient_public_hex": public.hex(),
            "identity": S.encode_key_string(S.X25519_IDENTITY_PREFIX, secret),
            "identity_secret_hex": secret.hex(),
            "ephemeral_secret_hex": eph.hex(),
            "ephemeral_public_hex": w["ephemeral_public"].hex(),
            "shared_secret_hex": w["shared_secret"].hex(),
            "wrap_key_hex": w["wrap_key"].hex(),
            "stanza": w["stanza"],
        }
    elif t == "symmetric":
        key, salt = SYMMETRIC_KEYS[spec["key"]], det(spec["salt"], 16)
        w = S.symmetric_wrap(file_key, key, salt)
        stanza = SymmetricKey(key)._wrap_with(file_key, salt)
        entry = {
            "type": "symmetric",
            "key": S.encode_key_string(S.SYMMETRIC_KEY_PREFIX, key),
            "key_hex": key.hex(),
            "salt_hex": salt.hex(),
            "wrap_key_hex": w["wrap_key"].hex(),
            "stanza": w["stanza"],
        }
    elif t == "scrypt":
        pw, salt, wf = spec["passphrase"].encode("utf-8"), det(spec["salt"], 16), spec["work_factor"]
        w = S.scrypt_wrap(file_key, pw, salt, wf)
        stanza = Passphrase(pw, work_factor=wf)._wrap_with(file_key, salt)
        entry = {
            "type": "scrypt",
            "passphrase": spec["passphrase"],
            "passphrase_hex": pw.hex(),
            "salt_hex": salt.hex(),
            "work_factor": wf,
            "wrap_key_hex": w["wrap_key"].hex(),
            "stanza": w["stanza"],
        }
    else:  # an opaque stanza of a type no reader knows
        s = spec["stanza"]
        stanza = Stanza(s["type"], tuple(s["args"]), base64.b64decode(s["body"]))
        entry = {"type": "opaque", "stanza": s}
    assert stanza.to_json() == entry["stanza"], f"package and spec_reader disagree on a {t} stanza"
    return entry, stanza


def seal_with_package(inputs: dict[str, Any], stanzas: list[Stanza], path: Path) -> bytes:
    """Run the package's writer on a vector's inputs (the same call the tests make)."""
    plaintext = bytes.fromhex(inputs["plaintext_hex"])
    if inputs["mode"] == "tensors":
        tensors, _ = S.parse_index(plaintext[: 8 + struct.unpack("<Q", plaintext[:8])[0]])
        index = plaintext[: 8 + struct.unpack("<Q", plaintext[:8])[0]]
        lengths = [t.end - t.begin for t in tensors]
    else:
        index, lengths = b"", [len(plaintext)]
    data = memoryview(plaintext)[len(index) :]
    write_sealed(
        path, mode=inputs["mode"], lengths=lengths, recipients=[], index=index, threads=1,
        source=lambda seg, scratch: data[seg.start : seg.start + seg.length],
        options=SealOptions(cipher=inputs["cipher"], segment_size=inputs["segment_size"],
                            public_index=inputs["public_index"], identity=ModelIdentity(**inputs["model_identity"])),
        _file_key=bytes.fromhex(inputs["file_key_hex"]), _salt=bytes.fromhex(inputs["salt_hex"]), _stanzas=stanzas,
        plain=inputs.get("plain", ()),
    )  # fmt: skip
    return path.read_bytes()


def package_identity(obj: dict[str, Any]) -> Any:
    if obj["kind"] == "x25519":
        return X25519Identity.parse(obj["secret"])
    if obj["kind"] == "symmetric":
        return SymmetricKey.parse(obj["key"])
    return Passphrase(bytes.fromhex(obj["passphrase_hex"]), max_work_factor=obj.get("max_work_factor", 22))


def build_vector(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    name = spec["name"]
    file_key, salt = det(f"{name} file key"), det(f"{name} salt")
    plaintext = spec["plaintext"]()
    recipients, stanzas = zip(*(expand_recipient(r, file_key) for r in spec["recipients"]))
    inputs = {
        "mode": spec["mode"],
        "cipher": spec["cipher"],
        "segment_size": spec["segment_size"],
        "public_index": spec["public_index"],
        "model_identity": spec["model_identity"],
        "file_key_hex": file_key.hex(),
        "salt_hex": salt.hex(),
        "recipients": list(recipients),
        "plaintext_hex": plaintext.hex(),
        **({"plain": spec["plain"]} if "plain" in spec else {}),
    }
    sealed = seal_with_package(inputs, list(stanzas), tmp / f"{name}.sealed")

    # open with the independent reader and with the package, with every identity
    for ident in spec["identities"]:
        opened = S.open_sealed(sealed, [ident])
        assert opened.plaintext == plaintext, name
        src, dst = tmp / f"{name}.sealed", tmp / f"{name}.out"
        decrypt_file(src, dst, [package_identity(ident)], threads=1)
        assert dst.read_bytes() == plaintext, name

    h, hl = opened.header, opened.header_length
    area = sealed[16 : 16 + hl]  # slot 0: the JSON and its padding spaces
    header_json = area.rstrip(b" ").decode("ascii")
    # the intermediates, cross-checked with the package
    pk = K.FileKeys.derive(file_key, salt)
    assert (pk.commitment, pk.mac_key, pk.index_key, pk.data_key, pk.plain_key) == tuple(opened.keys.values())
    pheader = parse_header(area)
    assert K.associated_data(pheader) == opened.aad
    assert K.identity_digest(pheader.identity) == S.identity_digest(h.identity)
    mac_offset = 16 + hl  # slot 0's MAC; slot 1 (empty) follows it
    index_offset = 16 + 2 * (hl + 32)
    index_section = sealed[index_offset : index_offset + h.index_length]
    assert sealed[mac_offset + 32 : index_offset] == bytes(hl + 32)
    assert pk.header_mac(sealed[:16] + area + index_section) == opened.mac == sealed[mac_offset : mac_offset + 32]

    expected: dict[str, Any] = {
        "sealed_hex": sealed.hex(),
        "sealed_sha256_hex": hashlib.sha256(sealed).hexdigest(),
        "layout": {
            "header_length": hl,
            "header_padding": hl - len(header_json),
            "mac_offset": mac_offset,
            "slot1_offset": mac_offset + 32,
            "index_offset": index_offset,
            "index_length": h.index_length,
            "tags_offset": h.tags_offset,
            "segment_count": h.segment_count,
            "data_offset": h.data_offset,
            "data_length": h.data_length,
            "file_size": len(sealed),
        },
        "header_json": header_json,
        "subkeys": {f"{k}_hex": v.hex() for k, v in opened.keys.items()},
        "identity_digest_hex": S.identity_digest(h.identity).hex(),
        "aad_hex": opened.aad.hex(),
        "header_mac_hex": opened.mac.hex(),
    }
    if h.mode == "tensors":
        expected["index_plaintext_hex"] = opened.index_plaintext.hex()
        expected["index_section_hex"] = index_section.hex()
        expected["index_nonce_hex"] = bytes(12).hex() if h.index_encrypted else None
        expected["tensors"] = [
            {"tensor_index": i, "name": t.name, "dtype": t.dtype, "shape": list(t.shape),
             "begin": t.begin, "end": t.end}
            for i, t in enumerate(opened.tensors)
        ]  # fmt: skip
    expected["segments"] = [
        {
            "tensor": s.tensor, "segment": s.index, "last": s.last, "offset": s.start, "length": s.length,
            "tag_index": s.tag_index, "nonce_hex": s.nonce.hex(), "tag_hex": tag.hex(), "plain": s.tensor in h.plain,
        }
        for s, tag in zip(opened.segments, opened.tags)
    ]  # fmt: skip
    expected["first_segment_nonce_hex"] = opened.segments[0].nonce.hex() if opened.segments else None
    return {
        "vector_format": VECTOR_VERSION,
        "name": name,
        "description": spec["description"],
        "inputs": inputs,
        "identities": spec["identities"],
        "expected": expected,
    }


# ---- negative vectors --------------------------------------------------------------------------------
def _find(sealed: bytes, needle: bytes, start: int = 0, end: int | None = None) -> int:
    i = sealed.find(needle, start, end)
    assert i >= 0 and sealed.find(needle, i + 1, end) < 0, needle
    return i


def negative_cases(vectors: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def case(base: str, name: str, why: str, error: str, edits: list[dict[str, Any]], identities: Any = None) -> None:
        c: dict[str, Any] = {"name": name, "base": f"{base}.json", "description": why, "edits": edits}
        if identities is not None:
            c["identities"] = identities
        c["error"] = error
        cases.append(c)

    def put(offset: int, raw: bytes) -> dict[str, Any]:
        return {"op": "set", "offset": offset, "hex": raw.hex()}

    def flip(offset: int) -> dict[str, Any]:
        return {"op": "xor", "offset": offset, "hex": "01"}

    def swap(a: int, b: int, length: int) -> dict[str, Any]:
        return {"op": "swap", "offset": a, "other": b, "length": length}

    # --- on tensors-aes256gcm-x25519 ---
    v = vectors["tensors-aes256gcm-x25519"]
    sealed, lay = bytes.fromhex(v["expected"]["sealed_hex"]), v["expected"]["layout"]
    hl, hdr_end = lay["header_length"], 16 + lay["header_length"]
    b = "tensors-aes256gcm-x25519"
    hobj = json.loads(v["expected"]["header_json"])
    salt_b64, commit_b64 = hobj["salt"], hobj["commitment"]
    body_b64 = hobj["recipients"][0]["body"]

    def other_b64_char(c: str) -> str:
        return "B" if c != "B" else "C"

    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    salt_off = _find(sealed, f'"salt":"{salt_b64}"'.encode(), 16, hdr_end) + len('"salt":"')
    commit_off = _find(sealed, f'"commitment":"{commit_b64}"'.encode(), 16, hdr_end) + len('"commitment":"')
    body_off = _find(sealed, body_b64.encode(), 16, hdr_end)
    last = salt_b64[42]
    assert b64.index(last) & 3 == 0
    noncanon = b64[b64.index(last) | 1]

    case(b, "bad-magic", "second magic byte changed ('T' -> 't')", "NotSealedError", [flip(1) | {"hex": "20"}])
    case(b, "version-2", "prefix version field set to 2", "UnsupportedVersionError", [put(8, struct.pack("<H", 2))])
    case(b, "flags-set", "prefix flags field set to 1", "UnsupportedVersionError", [put(10, struct.pack("<H", 1))])
    case(b, "header-length-zero", "prefix header length set to 0", "LimitExceededError", [put(12, bytes(4))])
    case(b, "header-length-over-limit", "prefix header length set to 16 MiB + 1", "LimitExceededError",
         [put(12, struct.pack("<I", (16 << 20) + 1))])  # fmt: skip
    case(b, "truncated-in-prefix", "file cut to its first 12 bytes", "TruncatedError",
         [{"op": "truncate", "length": 12}])  # fmt: skip
    case(b, "truncated-in-header", "file cut in the middle of the JSON header", "TruncatedError",
         [{"op": "truncate", "length": 16 + hl // 2}])  # fmt: skip
    case(b, "header-not-json", "first header byte '{' replaced by '['", "HeaderSyntaxError", [put(16, b"[")])
    case(b, "header-duplicate-key", 'identity key "file" renamed to "name": a duplicate key', "HeaderSyntaxError",
         [put(_find(sealed, b'"file":', 16, hdr_end), b'"name":')])  # fmt: skip
    case(b, "header-unknown-field", 'identity key "file" renamed to "fila": an unknown field', "HeaderSyntaxError",
         [put(_find(sealed, b'"file":', 16, hdr_end), b'"fila":')])  # fmt: skip
    seg_off = _find(sealed, b'"segment_size":1048576', 16, hdr_end) + len('"segment_size":')
    case(b, "header-nan", "segment_size 1048576 replaced by 'NaN' and spaces", "HeaderSyntaxError",
         [put(seg_off, b"NaN    ")])  # fmt: skip
    case(b, "header-noncanonical-base64", "last data character of the salt given non-zero padding bits",
         "HeaderSyntaxError", [put(salt_off + 42, noncanon.encode())])  # fmt: skip
    case(b, "header-unknown-cipher", 'cipher "aes-256-gcm" changed to "aes-256-gcx"', "UnsupportedVersionError",
         [put(_find(sealed, b'"aes-256-gcm"', 16, hdr_end), b'"aes-256-gcx"')])  # fmt: skip
    case(b, "header-segment-size-not-power-of-two", "segment_size 1048576 changed to 1048577", "HeaderSyntaxError",
         [put(seg_off, b"1048577")])  # fmt: skip
    assert len(str(lay["tags_offset"])) == len(str(lay["tags_offset"] - 1))
    case(b, "header-tags-offset-overlaps", "data.tags_offset lowered by one (overlaps the header MAC)", "LayoutError",
         [put(_find(sealed, f'"tags_offset":{lay["tags_offset"]}'.encode(), 16, hdr_end),
              f'"tags_offset":{lay["tags_offset"] - 1}'.encode())])  # fmt: skip
    case(b, "header-identity-modified", 'model identity name "tiny-llm" changed to "tiny-llM"',
         "HeaderAuthenticationError", [put(_find(sealed, b'"tiny-llm"', 16, hdr_end), b'"tiny-llM"')])  # fmt: skip
    case(b, "header-salt-modified", "first character of the salt changed", "KeyCommitmentError",
         [put(salt_off, other_b64_char(salt_b64[0]).encode())])  # fmt: skip
    case(b, "header-commitment-modified", "first character of the commitment changed", "KeyCommitmentError",
         [put(commit_off, other_b64_char(commit_b64[0]).encode())])  # fmt: skip
    case(b, "stanza-body-modified", "a character in the middle of the X25519 stanza body changed",
         "NoIdentityMatchError", [put(body_off + 20, other_b64_char(body_b64[20]).encode())])  # fmt: skip
    case(b, "index-modified", "one bit of the encrypted index flipped", "HeaderAuthenticationError",
         [flip(lay["index_offset"] + 10)])  # fmt: skip
    case(b, "mac-modified", "one bit of the header MAC flipped", "HeaderAuthenticationError", [flip(lay["mac_offset"])])
    case(b, "header-padding-modified", "the last padding space of the header area replaced by 'x'", "HeaderSyntaxError",
         [put(lay["mac_offset"] - 1, b"x")])  # fmt: skip
    case(b, "both-slots-empty", "head slot 0 overwritten with zeros (slot 1 is empty)", "LayoutError",
         [put(16, bytes(lay["header_length"] + 32))])  # fmt: skip
    case(b, "spare-slot-garbage-and-header-modified", "a byte of the empty slot 1 set (a damaged slot is skipped) "
         "and the model name in slot 0 changed: slot 0's error is reported", "HeaderAuthenticationError",
         [put(lay["slot1_offset"] + 5, b"\x07"), put(_find(sealed, b'"tiny-llm"', 16, hdr_end), b'"tiny-llM"')])  # fmt: skip
    case(b, "padding-nonzero", "a byte of the zero gap before the data region set to 1", "LayoutError",
         [put(lay["data_offset"] - 1, b"\x01")])  # fmt: skip
    case(b, "tag-modified", "one bit of the first tag flipped", "SegmentAuthenticationError",
         [flip(lay["tags_offset"])])  # fmt: skip
    case(b, "data-modified", "one bit of the first data byte flipped", "SegmentAuthenticationError",
         [flip(lay["data_offset"])])  # fmt: skip
    case(b, "truncated-by-one", "last byte removed", "TruncatedError", [{"op": "truncate", "length": len(sealed) - 1}])
    case(b, "trailing-byte", "one zero byte appended", "TrailingDataError", [{"op": "append", "hex": "00"}])
    case(b, "wrong-identity", "opened with an X25519 identity that is not a recipient", "NoIdentityMatchError", [],
         [x25519_identity_obj("mallory")])  # fmt: skip
    case(b, "wrong-identity-kind", "opened with a symmetric key while the only stanza is X25519",
         "NoIdentityMatchError", [], [symmetric_identity_obj("carol")])  # fmt: skip

    # --- on tensors-public-index-symmetric ---
    v = vectors["tensors-public-index-symmetric"]
    sealed, lay = bytes.fromhex(v["expected"]["sealed_hex"]), v["expected"]["layout"]
    b = "tensors-public-index-symmetric"
    case(b, "public-index-modified", 'tensor name "layer.0.ids" changed to "layer.0.idz" in the public index',
         "HeaderAuthenticationError",
         [put(_find(sealed, b'"layer.0.ids"', lay["index_offset"], lay["index_offset"] + lay["index_length"]),
               b'"layer.0.idz"')])  # fmt: skip
    case(b, "wrong-symmetric-key", "opened with another symmetric key", "NoIdentityMatchError", [],
         [symmetric_identity_obj("dave")])  # fmt: skip

    # --- on tensors-chacha20poly1305-scrypt ---
    b = "tensors-chacha20poly1305-scrypt"
    case(b, "wrong-passphrase", "opened with another passphrase", "NoIdentityMatchError", [],
         [passphrase_identity_obj("correct horse battery stapler")])  # fmt: skip
    case(b, "work-factor-over-limit", "opened with a reader whose scrypt work-factor limit (9) is below the "
         "stanza's (10)", "WorkFactorError", [], [passphrase_identity_obj(PASSPHRASE, max_work_factor=9)])  # fmt: skip

    # --- on tensors-multisegment ---
    v = vectors["tensors-multisegment"]
    sealed, lay = bytes.fromhex(v["expected"]["sealed_hex"]), v["expected"]["layout"]
    segs = v["expected"]["segments"]
    b = "tensors-multisegment"
    t0, t1 = lay["tags_offset"], lay["tags_offset"] + 16
    case(b, "tags-swapped", "the tags of segments 0 and 1 of tensor 'big' swapped", "SegmentAuthenticationError",
         [swap(t0, t1, 16)])  # fmt: skip
    d0, d1 = lay["data_offset"] + segs[0]["offset"], lay["data_offset"] + segs[1]["offset"]
    case(b, "segments-swapped", "segments 0 and 1 of tensor 'big' (4096 bytes each) swapped together with "
         "their tags: each is a valid ciphertext, but at the wrong position (nonce)", "SegmentAuthenticationError",
         [swap(d0, d1, 4096), swap(t0, t1, 16)])  # fmt: skip
    case(b, "last-segment-modified", "one bit of the last (1808-byte) segment of tensor 'big' flipped",
         "SegmentAuthenticationError", [flip(lay["data_offset"] + segs[2]["offset"] + 1807)])  # fmt: skip
    case(b, "last-tensor-modified", "the one byte of the 0-d tensor 'z' flipped", "SegmentAuthenticationError",
         [flip(lay["file_size"] - 1)])  # fmt: skip

    # --- on tensors-multi-recipient ---
    case("tensors-multi-recipient", "multi-recipient-wrong-identity", "opened with identities that are not "
         "recipients", "NoIdentityMatchError", [], [x25519_identity_obj("mallory"), symmetric_identity_obj("dave")])

    # --- on blob-chacha20poly1305-x25519 ---
    v = vectors["blob-chacha20poly1305-x25519"]
    lay = v["expected"]["layout"]
    b = "blob-chacha20poly1305-x25519"
    case(b, "blob-second-segment-modified", "one bit of the second segment flipped", "SegmentAuthenticationError",
         [flip(lay["data_offset"] + 4096)])  # fmt: skip
    case(b, "blob-truncated", "the last 100-byte segment removed", "TruncatedError",
         [{"op": "truncate", "length": lay["file_size"] - 100}])  # fmt: skip

    # --- on blob-empty-symmetric ---
    case("blob-empty-symmetric", "empty-blob-trailing-byte", "one byte appended to an empty blob",
         "TrailingDataError", [{"op": "append", "hex": "00"}])  # fmt: skip
    # --- on tensors-selective-plain (FORMAT.md 10.5) ---
    v = vectors["tensors-selective-plain"]
    sealed, lay = bytes.fromhex(v["expected"]["sealed_hex"]), v["expected"]["layout"]
    b, hdr_end = "tensors-selective-plain", 16 + lay["header_length"]
    segs = v["expected"]["segments"]
    table = [s for s in segs if s["tensor"] == 3]
    assert [s["plain"] for s in segs] == [False, True, False, True, True]
    plain_off = _find(sealed, b'"plain":[1,3]', 16, hdr_end)
    case(b, "plain-tensor-byte-flipped", "one byte of the second plain segment of 'table' flipped", "SegmentAuthenticationError",
         [flip(lay["data_offset"] + table[1]["offset"] + 7)])  # fmt: skip
    case(b, "plain-tensor-first-byte-flipped", "first byte of the plain tensor 'norm' flipped", "SegmentAuthenticationError",
         [flip(lay["data_offset"] + segs[1]["offset"])])  # fmt: skip
    case(b, "plain-tags-swapped", "the tags of the two plain segments of 'table' swapped", "SegmentAuthenticationError",
         [swap(lay["tags_offset"] + 16 * table[0]["tag_index"], lay["tags_offset"] + 16 * table[1]["tag_index"], 16)])  # fmt: skip
    case(b, "plain-list-changed", "data.plain [1,3] changed to [1,2]: the encrypted tensor 2 claimed plain",
         "HeaderAuthenticationError", [put(plain_off, b'"plain":[1,2]')])  # fmt: skip
    case(b, "plain-list-not-increasing", "data.plain [1,3] changed to [3,1]", "HeaderSyntaxError",
         [put(plain_off, b'"plain":[3,1]')])  # fmt: skip
    case(b, "plain-list-empty", "data.plain [1,3] changed to [   ] (empty)", "HeaderSyntaxError",
         [put(plain_off, b'"plain":[   ]')])  # fmt: skip
    case(b, "plain-list-not-integers", 'data.plain [1,3] changed to ["1"]', "HeaderSyntaxError",
         [put(plain_off, b'"plain":["1"]')])  # fmt: skip

    return cases


def apply_edits(sealed: bytes, edits: list[dict[str, Any]]) -> bytes:
    out = bytearray(sealed)
    for e in edits:
        if e["op"] == "set":
            raw = bytes.fromhex(e["hex"])
            out[e["offset"] : e["offset"] + len(raw)] = raw
        elif e["op"] == "xor":
            for i, x in enumerate(bytes.fromhex(e["hex"])):
                out[e["offset"] + i] ^= x
        elif e["op"] == "truncate":
            del out[e["length"] :]
        elif e["op"] == "swap":
            a, b, n = e["offset"], e["other"], e["length"]
            out[a : a + n], out[b : b + n] = out[b : b + n], out[a : a + n]
        elif e["op"] == "append":
            out += bytes.fromhex(e["hex"])
        else:
            raise ValueError(e["op"])
    return bytes(out)


def check_negative(case: dict[str, Any], vectors: dict[str, dict[str, Any]], tmp: Path) -> None:
    base = vectors[case["base"].removesuffix(".json")]
    data = apply_edits(bytes.fromhex(base["expected"]["sealed_hex"]), case["edits"])
    idents = case.get("identities", base["identities"])
    try:
        S.open_sealed(data, idents)
    except S.SpecError as e:
        assert e.name == case["error"], (case["name"], e)
    else:
        raise AssertionError(f"{case['name']}: spec_reader opened it")
    src, dst = tmp / "neg.sealed", tmp / "neg.out"
    src.write_bytes(data)
    try:
        decrypt_file(src, dst, [package_identity(i) for i in idents], threads=1)
    except errors.TensorSealError as e:
        assert type(e).__name__ == case["error"], (case["name"], type(e).__name__, e)
    else:
        raise AssertionError(f"{case['name']}: the package opened it")


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=True) + "\n"


def main() -> int:
    check = "--check" in sys.argv[1:]
    outputs: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        vectors = {spec["name"]: build_vector(spec, tmp) for spec in VECTORS}
        for name, vec in vectors.items():
            outputs[f"{name}.json"] = dump(vec)
        cases = negative_cases(vectors)
        for c in cases:
            check_negative(c, vectors, tmp)
        outputs["negative.json"] = dump({"vector_format": VECTOR_VERSION, "cases": cases})
    stale = []
    for fname, text in outputs.items():
        path = HERE / fname
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(fname)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent.parent)} ({len(text)} bytes)")
    if stale:
        print("out of date:", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TENSORSEAL_THREADS", "1")
    sys.exit(main())
