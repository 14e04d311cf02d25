"""Strict parsing of the prefix and JSON header: each malformation has its own error."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import tensorseal.numpy as tsnp
from tensorseal.errors import (
    HeaderSyntaxError,
    LayoutError,
    LimitExceededError,
    NotSealedError,
    TruncatedError,
    UnsupportedVersionError,
)
from tensorseal.format import constants as C
from tensorseal.format.header import encode_prefix, parse_header, parse_prefix
from tensorseal.format.safetensors_index import build_index, parse_index
from tensorseal.reader import SealedFile


@pytest.fixture
def header_json(tmp_path, identity):
    p = tmp_path / "m.tseal"
    tsnp.save_file({"a": np.ones(10, np.float32)}, p, [identity.recipient()])
    raw = p.read_bytes()
    (n,) = struct.unpack("<I", raw[12:16])
    return json.loads(raw[16 : 16 + n])


def enc(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def test_prefix_checks():
    with pytest.raises(NotSealedError):
        parse_prefix(b"PK\x03\x04" + bytes(12))
    with pytest.raises(NotSealedError):
        parse_prefix(b"")
    with pytest.raises(TruncatedError):
        parse_prefix(C.MAGIC + b"\x01")
    with pytest.raises(UnsupportedVersionError):
        parse_prefix(C.MAGIC + struct.pack("<HHI", 2, 0, 10))
    with pytest.raises(UnsupportedVersionError):
        parse_prefix(C.MAGIC + struct.pack("<HHI", 1, 1, 10))
    with pytest.raises(LimitExceededError):
        parse_prefix(C.MAGIC + struct.pack("<HHI", 1, 0, C.MAX_HEADER_SIZE + 1))
    with pytest.raises(LimitExceededError):
        parse_prefix(encode_prefix(0))
    assert parse_prefix(encode_prefix(123)) == 123


def test_oversized_header_length_is_refused_before_reading(tmp_path):
    p = tmp_path / "big.tseal"
    p.write_bytes(C.MAGIC + struct.pack("<HHI", 1, 0, 0xFFFFFFFF))
    with pytest.raises(LimitExceededError):
        SealedFile(p)


def test_round_trip(header_json):
    h = parse_header(enc(header_json))
    assert h.cipher == "aes-256-gcm" and h.mode == "tensors" and h.index_encrypted


@pytest.mark.parametrize(
    "mutate, error",
    [
        (lambda h: h.update(extra=1), HeaderSyntaxError),
        (lambda h: h.pop("salt"), HeaderSyntaxError),
        (lambda h: h.update(cipher="aes-128-cbc"), UnsupportedVersionError),
        (lambda h: h.update(mode="zip"), UnsupportedVersionError),
        (lambda h: h.update(features=["signatures-v9"]), UnsupportedVersionError),
        (lambda h: h.update(segment_size=5000), HeaderSyntaxError),
        (lambda h: h.update(segment_size=1 << 30), LimitExceededError),
        (lambda h: h.update(segment_size="4096"), HeaderSyntaxError),
        (lambda h: h.update(salt=h["salt"][:-4]), HeaderSyntaxError),
        (lambda h: h.update(salt=h["salt"].replace("=", "")), HeaderSyntaxError),
        (lambda h: h.update(recipients=[]), HeaderSyntaxError),
        (lambda h: h["recipients"][0].update(type="bad type!"), HeaderSyntaxError),
        (lambda h: h["recipients"][0].update(args=["x"] * 9), LimitExceededError),
        (lambda h: h["recipients"][0].update(body="A" * 40000), LimitExceededError),
        (lambda h: h.update(recipients=h["recipients"] * (C.MAX_STANZAS + 1)), LimitExceededError),
        (lambda h: h["identity"].update(name=""), HeaderSyntaxError),
        (lambda h: h["identity"].update(name="x" * 300), LimitExceededError),
        (lambda h: h["identity"].update(owner="me"), HeaderSyntaxError),
        (lambda h: h["index"].update(length=0), LayoutError),
        (lambda h: h["index"].update(encrypted=1), HeaderSyntaxError),
        (lambda h: h["data"].update(tags_offset=10), LayoutError),
        (lambda h: h["data"].update(data_offset=h["data"]["tags_offset"]), LayoutError),
        (lambda h: h["data"].update(segments=10**6), LayoutError),
        (lambda h: h["data"].update(length=-1), LimitExceededError),
        (lambda h: h["data"].update(length=True), HeaderSyntaxError),
    ],
)
def test_malformed_fields(header_json, mutate, error):
    mutate(header_json)
    with pytest.raises(error):
        parse_header(enc(header_json))


def test_gaps_between_sections_are_bounded(header_json):
    from dataclasses import replace

    from tensorseal.format.header import check_layout, encode_header

    h = parse_header(enc(header_json))
    n = len(encode_header(h))
    check_layout(h, n)
    with pytest.raises(LimitExceededError):
        check_layout(replace(h, data_offset=h.data_offset + C.MAX_GAP + 4096), n)
    with pytest.raises(LimitExceededError):
        check_layout(replace(h, tags_offset=h.tags_offset + C.MAX_GAP + 1, data_offset=h.data_offset + C.MAX_GAP + 1), n)


@pytest.mark.parametrize(
    "raw",
    [b"", b"[]", b"{", b'{"a":1,"a":2}', b'{"x": NaN}', b"\xff\xfe", b"[" * 100000 + b"]" * 100000],
)
def test_bad_json(raw):
    with pytest.raises(HeaderSyntaxError):
        parse_header(raw)


def test_safetensors_index_rules():
    good = build_index({"a": ("F32", (2, 3)), "b": ("U8", (5,))}, {"k": "v"})
    assert [e.name for e in good.entries] == ["a", "b"] and good.data_length == 29
    assert parse_index(good.raw) == good

    def raw(obj) -> bytes:
        body = json.dumps(obj).encode()
        return struct.pack("<Q", len(body)) + body

    with pytest.raises(LayoutError):  # hole
        parse_index(raw({"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]}}))
    with pytest.raises(LayoutError):  # size mismatch
        parse_index(raw({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}))
    with pytest.raises(HeaderSyntaxError):
        parse_index(raw({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}))
    with pytest.raises(tensorseal_errors().UnsupportedDtypeError):
        parse_index(raw({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}))
    with pytest.raises(HeaderSyntaxError):
        parse_index(raw({"__metadata__": {"k": 1}}))
    with pytest.raises(LayoutError):
        parse_index(raw({}) + b" ")
    with pytest.raises(LimitExceededError):
        parse_index(struct.pack("<Q", 200_000_000) + b"{}")


def tensorseal_errors():
    import tensorseal.errors

    return tensorseal.errors


@pytest.mark.parametrize("where", ["type", "arg", "identity"])
def test_lone_surrogates_are_syntax_errors(header_json, where):
    if where == "type":
        header_json["recipients"][0]["type"] = "\ud800"
    elif where == "arg":
        header_json["recipients"][0]["args"] = ["\ud800"]
    else:
        header_json["identity"]["name"] = "\ud800"
    raw = json.dumps(header_json, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    with pytest.raises(HeaderSyntaxError):
        parse_header(raw)


def test_huge_integer_literals_are_syntax_errors(header_json):
    raw = enc(header_json).replace(b'"segment_size":', b'"segment_size":' + b"9" * 5000 + b",\"x\":", 1)
    with pytest.raises(HeaderSyntaxError):
        parse_header(raw)
    with pytest.raises(HeaderSyntaxError):
        parse_index(struct.pack("<Q", 5011) + b'{"a":' + b"1" * 5005 + b"}")


def test_null_metadata_is_refused():
    body = b'{"__metadata__":null}'
    with pytest.raises(HeaderSyntaxError):
        parse_index(struct.pack("<Q", len(body)) + body)


def test_writer_refuses_identities_its_reader_would_reject(tmp_path, identity):
    from tensorseal.errors import UsageError

    for kwargs in ({"name": ""}, {"version": "v" * 257}, {"name": "\ud800"}):
        with pytest.raises(UsageError):
            tsnp.save_file({"a": np.ones(1)}, tmp_path / "m", [identity.recipient()], **kwargs)
    assert not (tmp_path / "m").exists()
    tsnp.save_file({"a": np.ones(1)}, tmp_path / "m", [identity.recipient()], name="n" * 256, version="ü")
