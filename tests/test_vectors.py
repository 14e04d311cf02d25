"""Format v1 test vectors (tests/vectors/*.json, made by tests/vectors/generate.py).

For every positive vector: (a) the writer, given the vector's inputs, produces exactly the
expected bytes; (b) the expected bytes decrypt, with each listed identity, to exactly the
plaintext; (c) the intermediate values (subkeys, AAD, MAC, nonces, tags, wrap keys, key
strings) match the package's own functions; (d) spec_reader.py, an implementation written
from docs/FORMAT.md alone, opens the bytes and derives the same intermediates.
For every negative vector: the edited file raises exactly the named error class, in the
package and in spec_reader.py, and no output file appears.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tensorseal import errors
from tensorseal.files import decrypt_file, verify_file
from tensorseal.format import constants as C
from tensorseal.format import keys as K
from tensorseal.format import segments as SEG
from tensorseal.format.header import ModelIdentity, Stanza, parse_header, parse_prefix
from tensorseal.format.safetensors_index import parse_index
from tensorseal.reader import SealedFile
from tensorseal.recipients import Passphrase, SymmetricKey, X25519Identity, X25519Recipient
from tensorseal.recipients import scrypt as scrypt_mod
from tensorseal.recipients import x25519 as x25519_mod
from tensorseal.recipients.base import open_key
from tensorseal.writer import SealOptions, write_sealed

VECTORS = Path(__file__).resolve().parent / "vectors"
POSITIVE = sorted(p for p in VECTORS.glob("*.json") if p.name != "negative.json")
NEGATIVE = json.loads((VECTORS / "negative.json").read_text())["cases"]


def _load_spec_reader() -> Any:
    spec = importlib.util.spec_from_file_location("tensorseal_vectors_spec_reader", VECTORS / "spec_reader.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


SPEC = _load_spec_reader()


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def package_identity(obj: dict[str, Any]) -> Any:
    if obj["kind"] == "x25519":
        return X25519Identity.parse(obj["secret"])
    if obj["kind"] == "symmetric":
        return SymmetricKey.parse(obj["key"])
    if obj["kind"] == "passphrase":
        return Passphrase(h(obj["passphrase_hex"]), max_work_factor=obj.get("max_work_factor", 22))
    raise AssertionError(obj["kind"])


def package_stanza(r: dict[str, Any], file_key: bytes) -> Stanza:
    """The stanza, rebuilt from the vector's inputs through the deterministic entry points."""
    if r["type"] == "X25519":
        recipient = X25519Recipient.parse(r["recipient"])
        return recipient._wrap_with(file_key, X25519PrivateKey.from_private_bytes(h(r["ephemeral_secret_hex"])))
    if r["type"] == "symmetric":
        return SymmetricKey(h(r["key_hex"]))._wrap_with(file_key, h(r["salt_hex"]))
    if r["type"] == "scrypt":
        return Passphrase(h(r["passphrase_hex"]), work_factor=r["work_factor"])._wrap_with(file_key, h(r["salt_hex"]))
    s = r["stanza"]
    return Stanza(s["type"], tuple(s["args"]), base64.b64decode(s["body"]))


def seal(inputs: dict[str, Any], path: Path) -> bytes:
    file_key = h(inputs["file_key_hex"])
    plaintext = h(inputs["plaintext_hex"])
    if inputs["mode"] == "tensors":
        (n,) = struct.unpack("<Q", plaintext[:8])
        index = plaintext[: 8 + n]
        lengths = [e.nbytes for e in parse_index(index).entries]
    else:
        index, lengths = b"", [len(plaintext)]
    data = memoryview(plaintext)[len(index) :]
    options = SealOptions(
        cipher=inputs["cipher"],
        segment_size=inputs["segment_size"],
        public_index=inputs["public_index"],
        identity=ModelIdentity(**inputs["model_identity"]),
    )
    write_sealed(
        path,
        mode=inputs["mode"],
        lengths=lengths,
        source=lambda seg, scratch: data[seg.start : seg.start + seg.length],
        recipients=[],
        index=index,
        options=options,
        threads=2,
        _file_key=file_key,
        _salt=h(inputs["salt_hex"]),
        _stanzas=[package_stanza(r, file_key) for r in inputs["recipients"]],
        plain=inputs.get("plain", ()),
    )
    return path.read_bytes()


# ---- (a) the writer reproduces the vector byte for byte -------------------------------------
@pytest.mark.parametrize("path", POSITIVE, ids=lambda p: p.stem)
def test_writer_reproduces_vector(path: Path, tmp_path: Path) -> None:
    v = load(path)
    expected = h(v["expected"]["sealed_hex"])
    assert hashlib.sha256(expected).hexdigest() == v["expected"]["sealed_sha256_hex"]
    for r in v["inputs"]["recipients"]:
        assert package_stanza(r, h(v["inputs"]["file_key_hex"])).to_json() == r["stanza"]
    got = seal(v["inputs"], tmp_path / "out.sealed")
    assert len(got) == len(expected)
    if got != expected:
        first = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
        pytest.fail(f"sealed bytes differ from the vector, first at byte {first}")


# ---- (b) the expected bytes decrypt to the plaintext -------------------------------------------
@pytest.mark.parametrize("path", POSITIVE, ids=lambda p: p.stem)
def test_vector_decrypts_to_plaintext(path: Path, tmp_path: Path) -> None:
    v = load(path)
    src = tmp_path / "in.sealed"
    src.write_bytes(h(v["expected"]["sealed_hex"]))
    plaintext = h(v["inputs"]["plaintext_hex"])
    assert v["identities"], "a vector must name at least one identity"
    for i, ident in enumerate(v["identities"]):
        dst = tmp_path / f"out{i}"
        header = decrypt_file(src, dst, [package_identity(ident)], threads=2)
        assert dst.read_bytes() == plaintext
        assert header.mode == v["inputs"]["mode"] and header.cipher == v["inputs"]["cipher"]
        verify_file(src, [package_identity(ident)], threads=1)


# ---- (c) the intermediates match the package's functions ---------------------------------------
@pytest.mark.parametrize("path", POSITIVE, ids=lambda p: p.stem)
def test_intermediate_values(path: Path) -> None:
    v = load(path)
    inp, exp, lay = v["inputs"], v["expected"], v["expected"]["layout"]
    sealed = h(exp["sealed_hex"])
    file_key, salt = h(inp["file_key_hex"]), h(inp["salt_hex"])

    # prefix and header
    assert sealed[:8] == C.MAGIC == b"\x89TSEAL\r\n"
    assert struct.unpack("<HHI", sealed[8:16]) == (1, 0, lay["header_length"])
    assert parse_prefix(sealed[:16]) == lay["header_length"]
    raw_header = sealed[16 : 16 + lay["header_length"]]  # head slot 0: JSON, then padding spaces
    assert raw_header.decode("ascii") == exp["header_json"] + " " * lay["header_padding"]
    assert lay["header_padding"] == C.HEADER_RESERVE
    header = parse_header(raw_header)
    assert header.generation == 0
    assert header.salt == salt
    assert header.index_length == lay["index_length"]
    assert (header.tags_offset, header.data_offset) == (lay["tags_offset"], lay["data_offset"])
    assert (header.data_length, header.segment_count) == (lay["data_length"], lay["segment_count"])
    assert header.file_size == lay["file_size"] == len(sealed)
    assert lay["mac_offset"] == 16 + lay["header_length"] and lay["slot1_offset"] == lay["mac_offset"] + C.MAC_SIZE
    assert header.index_offset(lay["header_length"]) == lay["index_offset"] == lay["slot1_offset"] + lay["header_length"] + 32
    assert sealed[lay["slot1_offset"] : lay["index_offset"]] == bytes(lay["header_length"] + 32)  # slot 1 empty
    assert header.identity == ModelIdentity(**inp["model_identity"])
    # the writer's layout rules: tags right after the index, data on a 4096-byte boundary
    assert lay["tags_offset"] == lay["index_offset"] + lay["index_length"]
    assert lay["data_offset"] % C.DATA_ALIGNMENT == 0
    assert lay["data_offset"] - (lay["tags_offset"] + 16 * lay["segment_count"]) < C.DATA_ALIGNMENT

    # key schedule
    keys = K.FileKeys.derive(file_key, salt)
    assert keys.commitment.hex() == exp["subkeys"]["commitment_hex"] == header.commitment.hex()
    assert keys.mac_key.hex() == exp["subkeys"]["mac_key_hex"]
    assert keys.index_key.hex() == exp["subkeys"]["index_key_hex"]
    assert keys.data_key.hex() == exp["subkeys"]["data_key_hex"]
    assert keys.plain_key.hex() == exp["subkeys"]["plain_key_hex"]
    assert len({keys.commitment, keys.mac_key, keys.index_key, keys.data_key, keys.plain_key}) == 5
    assert K.hkdf(file_key, salt, "data").hex() == exp["subkeys"]["data_key_hex"]
    assert K.identity_digest(header.identity).hex() == exp["identity_digest_hex"]
    aad = K.associated_data(header)
    assert aad.hex() == exp["aad_hex"]
    assert len(aad) == 13 + 1 + 1 + 4 + 32 + 32
    mac_off = lay["mac_offset"]
    index_section = sealed[lay["index_offset"] : lay["index_offset"] + lay["index_length"]]
    authenticated = sealed[:16] + raw_header + index_section  # prefix, header area, index (8.4)
    assert keys.header_mac(authenticated).hex() == exp["header_mac_hex"] == sealed[mac_off : mac_off + 32].hex()

    # index
    plaintext = h(inp["plaintext_hex"])
    if inp["mode"] == "tensors":
        assert index_section.hex() == exp["index_section_hex"]
        index_plain = h(exp["index_plaintext_hex"])
        assert plaintext.startswith(index_plain)
        if header.index_encrypted:
            assert K.INDEX_NONCE.hex() == exp["index_nonce_hex"] == "00" * 12
            assert K.make_aead(header.cipher, keys.index_key).decrypt(K.INDEX_NONCE, index_section, aad) == index_plain
            assert len(index_section) == len(index_plain) + C.TAG_SIZE
        else:
            assert exp["index_nonce_hex"] is None and index_section == index_plain
        index = parse_index(index_plain)
        got = [{"tensor_index": i, "name": e.name, "dtype": e.dtype, "shape": list(e.shape), "begin": e.start,
                "end": e.end} for i, e in enumerate(index.entries)]  # fmt: skip
        assert got == exp["tensors"]
        lengths = [e.nbytes for e in index.entries]
        data_plain = plaintext[len(index_plain) :]
    else:
        assert index_section == b"" and "tensors" not in exp
        lengths, data_plain = [len(plaintext)], plaintext

    # segments, nonces, tags
    runs, count = SEG.plan_runs(lengths, header.segment_size)
    assert count == lay["segment_count"] == len(exp["segments"])
    segs = [s for t, run in enumerate(runs) for s in SEG.run_segments(t, run, header.segment_size)]
    aead = K.make_aead(header.cipher, keys.data_key)
    for s, e in zip(segs, exp["segments"], strict=True):
        assert (s.tensor, s.index, s.last, s.start, s.length, s.tag_index) == (
            e["tensor"], e["segment"], e["last"], e["offset"], e["length"], e["tag_index"],
        )  # fmt: skip
        assert SEG.nonce(s.tensor, s.index, s.last).hex() == e["nonce_hex"]
        assert h(e["nonce_hex"]) == struct.pack(">III", e["tensor"], e["segment"], int(e["last"]))
        tag = sealed[lay["tags_offset"] + 16 * s.tag_index : lay["tags_offset"] + 16 * (s.tag_index + 1)]
        assert tag.hex() == e["tag_hex"]
        stored = sealed[lay["data_offset"] + s.start : lay["data_offset"] + s.start + s.length]
        want = data_plain[s.start : s.start + s.length]
        assert e["plain"] == (s.tensor in header.plain)
        if e["plain"]:  # stored in clear, tagged under plain_key over AAD | segment (FORMAT.md 10.5)
            assert stored == want
            assert K.make_aead(header.cipher, keys.plain_key).decrypt(h(e["nonce_hex"]), tag, aad + stored) == b""
        else:
            assert aead.decrypt(h(e["nonce_hex"]), stored + tag, aad) == want
    assert exp["first_segment_nonce_hex"] == (exp["segments"][0]["nonce_hex"] if segs else None)

    # stanzas: key strings, shared secrets and wrap keys
    assert [s.to_json() for s in header.recipients] == [r["stanza"] for r in inp["recipients"]]
    for r in inp["recipients"]:
        body = base64.b64decode(r["stanza"]["body"])
        if r["type"] == "X25519":
            ident = X25519Identity.parse(r["identity"])
            assert str(ident) == r["identity"] and str(ident.recipient()) == r["recipient"]
            secret = X25519PrivateKey.from_private_bytes(h(r["identity_secret_hex"]))
            assert str(X25519Identity(secret)) == r["identity"]
            eph = X25519PrivateKey.from_private_bytes(h(r["ephemeral_secret_hex"]))
            eph_pub = x25519_mod._raw_public(eph.public_key())
            assert eph_pub.hex() == r["ephemeral_public_hex"] == base64.b64decode(r["stanza"]["args"][0]).hex()
            shared = eph.exchange(X25519Recipient.parse(r["recipient"])._key)
            assert shared.hex() == r["shared_secret_hex"]
            assert secret.exchange(eph.public_key()) == shared
            wrap_key = x25519_mod._wrap_key(shared, eph_pub, h(r["recipient_public_hex"]))
        elif r["type"] == "symmetric":
            assert str(SymmetricKey(h(r["key_hex"]))) == r["key"]
            assert SymmetricKey.parse(r["key"])._key.hex() == r["key_hex"]
            assert r["stanza"]["args"] == [base64.b64encode(h(r["salt_hex"])).decode()]
            wrap_key = K.hkdf(h(r["key_hex"]), h(r["salt_hex"]), "symmetric")
        elif r["type"] == "scrypt":
            assert h(r["passphrase_hex"]) == r["passphrase"].encode("utf-8")
            assert r["stanza"]["args"] == [base64.b64encode(h(r["salt_hex"])).decode(), str(r["work_factor"])]
            wrap_key = scrypt_mod._derive(h(r["passphrase_hex"]), h(r["salt_hex"]), r["work_factor"])
        else:
            continue
        assert wrap_key.hex() == r["wrap_key_hex"]
        assert len(body) == 48
        assert open_key(wrap_key, body) == file_key


# ---- (d) an implementation written from FORMAT.md agrees -----------------------------------------
@pytest.mark.parametrize("path", POSITIVE, ids=lambda p: p.stem)
def test_spec_reader_opens_vector(path: Path) -> None:
    v = load(path)
    exp = v["expected"]
    sealed = h(exp["sealed_hex"])
    for ident in v["identities"]:
        opened = SPEC.open_sealed(sealed, [ident])
        assert opened.plaintext.hex() == v["inputs"]["plaintext_hex"]
        assert {f"{k}_hex": x.hex() for k, x in opened.keys.items()} == exp["subkeys"]
        assert opened.aad.hex() == exp["aad_hex"]
        assert opened.mac.hex() == exp["header_mac_hex"]
        assert [s.nonce.hex() for s in opened.segments] == [s["nonce_hex"] for s in exp["segments"]]
        assert [t.hex() for t in opened.tags] == [s["tag_hex"] for s in exp["segments"]]
    for r in v["inputs"]["recipients"]:
        file_key = h(v["inputs"]["file_key_hex"])
        if r["type"] == "X25519":
            w = SPEC.x25519_wrap(file_key, h(r["ephemeral_secret_hex"]), h(r["recipient_public_hex"]))
            assert SPEC.encode_key_string(SPEC.X25519_RECIPIENT_PREFIX, h(r["recipient_public_hex"])) == r["recipient"]
            assert SPEC.decode_key_string(SPEC.X25519_IDENTITY_PREFIX, r["identity"]).hex() == r["identity_secret_hex"]
        elif r["type"] == "symmetric":
            w = SPEC.symmetric_wrap(file_key, h(r["key_hex"]), h(r["salt_hex"]))
            assert SPEC.decode_key_string(SPEC.SYMMETRIC_KEY_PREFIX, r["key"]).hex() == r["key_hex"]
        elif r["type"] == "scrypt":
            w = SPEC.scrypt_wrap(file_key, h(r["passphrase_hex"]), h(r["salt_hex"]), r["work_factor"])
        else:
            continue
        assert w["wrap_key"].hex() == r["wrap_key_hex"] and w["stanza"] == r["stanza"]


# ---- negative vectors ---------------------------------------------------------------------------
def apply_edits(sealed: bytes, edits: list[dict[str, Any]]) -> bytes:
    out = bytearray(sealed)
    for e in edits:
        op = e["op"]
        if op == "set":
            raw = h(e["hex"])
            assert e["offset"] + len(raw) <= len(out)
            out[e["offset"] : e["offset"] + len(raw)] = raw
        elif op == "xor":
            for i, x in enumerate(h(e["hex"])):
                out[e["offset"] + i] ^= x
        elif op == "swap":
            a, b, n = e["offset"], e["other"], e["length"]
            out[a : a + n], out[b : b + n] = out[b : b + n], out[a : a + n]
        elif op == "truncate":
            assert e["length"] < len(out)
            del out[e["length"] :]
        elif op == "append":
            out += h(e["hex"])
        else:
            raise AssertionError(f"unknown edit {op!r}")
    return bytes(out)


def test_negative_vectors_are_well_formed() -> None:
    names = [c["name"] for c in NEGATIVE]
    assert len(names) == len(set(names))
    for c in NEGATIVE:
        assert (VECTORS / c["base"]).exists(), c["base"]
        cls = getattr(errors, c["error"], None)
        assert isinstance(cls, type) and issubclass(cls, errors.TensorSealError), c["error"]
        base = h(load(VECTORS / c["base"])["expected"]["sealed_hex"])
        # a case either changes the bytes or opens them with other identities
        assert apply_edits(base, c["edits"]) != base or "identities" in c, c["name"]


@pytest.mark.parametrize("case", NEGATIVE, ids=lambda c: c["name"])
def test_negative_vector(case: dict[str, Any], tmp_path: Path) -> None:
    base = load(VECTORS / case["base"])
    data = apply_edits(h(base["expected"]["sealed_hex"]), case["edits"])
    identities = case.get("identities", base["identities"])
    expected = getattr(errors, case["error"])
    src, dst = tmp_path / "in.sealed", tmp_path / "out"
    src.write_bytes(data)
    with pytest.raises(errors.TensorSealError) as info:
        decrypt_file(src, dst, [package_identity(i) for i in identities], threads=2)
    assert type(info.value) is expected, f"{case['name']}: got {type(info.value).__name__}: {info.value}"
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.sealed"]  # no temp file left behind
    with pytest.raises(SPEC.SpecError) as spec_info:
        SPEC.open_sealed(data, identities)
    assert spec_info.value.name == case["error"]


def test_sealed_file_object_agrees_with_multisegment_vector() -> None:
    """The SealedFile API exposes the same layout the vector records."""
    v = load(VECTORS / "tensors-multisegment.json")
    lay = v["expected"]["layout"]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.sealed"
        p.write_bytes(h(v["expected"]["sealed_hex"]))
        with SealedFile(p) as f:
            assert f.header_len == lay["header_length"]
            f.unlock([package_identity(v["identities"][0])])
            assert [s.tag_index for s in f.all_segments()] == [s["tag_index"] for s in v["expected"]["segments"]]
            want = [(t["begin"], t["end"] - t["begin"]) for t in v["expected"]["tensors"]]
            assert [(r.start, r.length) for r in f.runs] == want


def test_generator_is_up_to_date() -> None:
    """The committed vectors are exactly what generate.py writes."""
    pytest.importorskip("safetensors")
    env_path = str(Path(__file__).resolve().parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": env_path + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, str(VECTORS / "generate.py"), "--check"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
