"""Tampering: every modification gives a typed error, and nothing is returned or written.

Threat: an attacker who can write the sealed file (storage, network path) but holds no
identity. They may flip bytes, truncate, append, reorder segments or tensors, or graft
another file's header. The file must then fail to open with an AuthenticationError or
FormatError, never yield data.
"""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

import tensorseal
import tensorseal.numpy as tsnp
from tensorseal.errors import (
    AuthenticationError,
    FormatError,
    HeaderAuthenticationError,
    LayoutError,
    NoIdentityMatchError,
    SegmentAuthenticationError,
    TensorSealError,
    TrailingDataError,
    TruncatedError,
)
from tensorseal.reader import SealedFile

from tensorseal.format.header import index_offset, slot_offset

from ..conftest import SMALL_SEGMENT, assert_same

EXPECTED = (AuthenticationError, FormatError, NoIdentityMatchError)


def _layout(path):
    with SealedFile(path) as f:
        return f.header, f.header_len


def _fails(path, identity, tmp_path) -> type[TensorSealError]:
    """Open the file every way a user can; each must raise, and no output may appear."""
    out = tmp_path / "out.bin"
    with pytest.raises(TensorSealError) as load_err:
        tsnp.load_file(path, [identity])
    with pytest.raises(TensorSealError) as dec_err:
        tensorseal.decrypt_file(path, out, [identity])
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert isinstance(load_err.value, EXPECTED) and isinstance(dec_err.value, EXPECTED)
    return type(load_err.value)


def _write(tmp_path, data: bytes):
    p = tmp_path / "tampered.tseal"
    p.write_bytes(data)
    return p


def test_every_single_byte_flip_before_the_data(tmp_path, sealed_small, identity):
    path, _ = sealed_small
    original = path.read_bytes()
    header, hlen = _layout(path)
    spare = range(slot_offset(1, hlen), index_offset(hlen))  # the empty second header slot
    expected = tsnp.load_file(path, [identity])
    seen = set()
    for pos in range(header.data_offset):
        data = bytearray(original)
        data[pos] ^= 0x01
        p = _write(tmp_path, bytes(data))
        if pos in spare:  # redundancy for crash-safe rewrap: loads ignore it, verify reports it
            if pos % 97 == 0:  # a sample: a full load per byte of the slot would be slow
                assert_same(tsnp.load_file(p, [identity]), expected)
                with pytest.raises(LayoutError, match="slot 1 is damaged"):
                    tensorseal.verify_file(p, [identity])
            continue
        with pytest.raises(EXPECTED) as err:
            tsnp.load_file(p, [identity])
        seen.add(type(err.value))
    # every region was reached: the parser, the stanza, the MAC, the tags, the padding
    assert HeaderAuthenticationError in seen
    assert SegmentAuthenticationError in seen
    assert any(issubclass(t, FormatError) for t in seen)


def test_byte_flips_in_every_region_leave_no_output(tmp_path, sealed_small, identity):
    path, _ = sealed_small
    original = path.read_bytes()
    header, hlen = _layout(path)
    positions = [0, 9, 20, hlen // 2, 16 + hlen + 3, header.tags_offset - 1, header.tags_offset + 5,
                 header.data_offset - 1, header.data_offset, len(original) - 1]  # fmt: skip
    for pos in positions:
        data = bytearray(original)
        data[pos] ^= 0x80
        _fails(_write(tmp_path, bytes(data)), identity, tmp_path)


def test_random_data_byte_flips(tmp_path, sealed_small, identity):
    path, _ = sealed_small
    original = path.read_bytes()
    header, _ = _layout(path)
    rng = random.Random(7)
    for _ in range(60):
        pos = rng.randrange(header.data_offset, len(original))
        data = bytearray(original)
        data[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(SegmentAuthenticationError):
            tsnp.load_file(_write(tmp_path, bytes(data)), [identity])


@pytest.mark.parametrize("keep", [0, 5, 15, 16, 100, -1, -16, -4096, -5000])
def test_truncation(tmp_path, sealed_small, identity, keep):
    data = sealed_small[0].read_bytes()
    cut = data[:keep] if keep >= 0 else data[:keep]
    err = _fails(_write(tmp_path, cut), identity, tmp_path)
    assert issubclass(err, FormatError)


def test_truncation_is_named(tmp_path, sealed_small):
    data = sealed_small[0].read_bytes()
    with pytest.raises(TruncatedError):
        SealedFile(_write(tmp_path, data[:-1]))


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 17, bytes(4096)])
def test_appended_bytes(tmp_path, sealed_small, identity, extra):
    p = _write(tmp_path, sealed_small[0].read_bytes() + extra)
    with pytest.raises(TrailingDataError):
        SealedFile(p)
    _fails(p, identity, tmp_path)


def _segments(path, identity):
    with SealedFile(path) as f:
        f.unlock([identity])
        return f.header, f.index, f.all_segments()


def test_swapping_two_segments_of_one_tensor(tmp_path, sealed_small, identity):
    path, _ = sealed_small
    header, index, segs = _segments(path, identity)
    big = index.by_name()["embed.weight"]
    a, b = [s for s in segs if s.tensor == big and s.length == SMALL_SEGMENT][:2]
    data = bytearray(path.read_bytes())
    A = slice(header.data_offset + a.start, header.data_offset + a.start + a.length)
    B = slice(header.data_offset + b.start, header.data_offset + b.start + b.length)
    data[A], data[B] = data[B], data[A]
    with pytest.raises(SegmentAuthenticationError):
        tsnp.load_file(_write(tmp_path, bytes(data)), [identity])
    # swapping the tags along with the data does not help: the nonce binds the position
    ta, tb = (slice(header.tags_offset + 16 * s.tag_index, header.tags_offset + 16 * s.tag_index + 16) for s in (a, b))
    data[ta], data[tb] = data[tb], data[ta]
    _fails(_write(tmp_path, bytes(data)), identity, tmp_path)


def test_swapping_two_tensors_ciphertexts(tmp_path, identity):
    rng = np.random.default_rng(3)
    t = {"a": rng.standard_normal(1000).astype(np.float32), "b": rng.standard_normal(1000).astype(np.float32)}
    path = tmp_path / "m.tseal"
    tsnp.save_file(t, path, [identity.recipient()], segment_size=SMALL_SEGMENT)
    header, index, segs = _segments(path, identity)
    ea, eb = index.entries
    data = bytearray(path.read_bytes())
    A = slice(header.data_offset + ea.start, header.data_offset + ea.end)
    B = slice(header.data_offset + eb.start, header.data_offset + eb.end)
    data[A], data[B] = data[B], data[A]
    tags = slice(header.tags_offset, header.tags_offset + 16 * header.segment_count)
    data[tags] = data[tags][16:] + data[tags][:16]  # swap the (single) tags too
    _fails(_write(tmp_path, bytes(data)), identity, tmp_path)


def test_header_of_another_file_is_rejected(tmp_path, identity):
    """Graft file A's front (header, index, MAC, tags) onto file B's data: same sizes,
    same recipient, both valid on their own."""
    t = {"w": np.arange(3000, dtype=np.float32)}
    a, b = tmp_path / "a.tseal", tmp_path / "b.tseal"
    tsnp.save_file(t, a, [identity.recipient()], segment_size=SMALL_SEGMENT)
    tsnp.save_file({"w": t["w"] + 1}, b, [identity.recipient()], segment_size=SMALL_SEGMENT)
    ha, _ = _layout(a)
    hb, _ = _layout(b)
    assert ha.data_offset == hb.data_offset
    graft = a.read_bytes()[: ha.data_offset] + b.read_bytes()[hb.data_offset :]
    err = _fails(_write(tmp_path, graft), identity, tmp_path)
    assert issubclass(err, SegmentAuthenticationError)
    # and B's header with A's tag table
    graft = b.read_bytes()[: hb.tags_offset] + a.read_bytes()[ha.tags_offset :]
    _fails(_write(tmp_path, graft), identity, tmp_path)


def test_stanza_from_another_file_breaks_the_commitment(tmp_path, identity):
    """Replace file B's stanza with file A's (a valid stanza for the same identity)."""
    import json

    a, b = tmp_path / "a.tseal", tmp_path / "b.tseal"
    for p in (a, b):
        tsnp.save_file({"w": np.ones(10)}, p, [identity.recipient()])

    def header_json(p):
        raw = p.read_bytes()
        (n,) = struct.unpack("<I", raw[12:16])
        return raw, n, json.loads(raw[16 : 16 + n])

    raw_a, _, ja = header_json(a)
    raw_b, nb, jb = header_json(b)
    jb["recipients"] = ja["recipients"]
    new = json.dumps(jb, sort_keys=True, separators=(",", ":")).encode()
    assert len(new) == len(raw_b[16 : 16 + nb].rstrip(b" "))  # same-size stanza: the layout is unchanged
    new = new.ljust(nb)  # the header area's space padding
    p = _write(tmp_path, raw_b[:16] + new + raw_b[16 + nb :])
    with pytest.raises(tensorseal.errors.KeyCommitmentError):
        tsnp.load_file(p, [identity])


def test_a_failed_load_returns_nothing_and_decrypt_leaves_no_file(tmp_path, sealed_small, identity):
    path, _ = sealed_small
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # only the very last segment is bad
    p = _write(tmp_path, bytes(data))
    _fails(p, identity, tmp_path)
    # an existing output file is left untouched on failure
    target = tmp_path / "existing.safetensors"
    target.write_bytes(b"keep me")
    with pytest.raises(SegmentAuthenticationError):
        tensorseal.decrypt_file(p, target, [identity])
    assert target.read_bytes() == b"keep me"


def test_blob_tampering(tmp_path, identity):
    blob = tmp_path / "model.gguf"
    blob.write_bytes(np.random.default_rng(5).bytes(3 * SMALL_SEGMENT + 11))
    sealed = tmp_path / "b.tseal"
    tensorseal.encrypt_file(blob, sealed, [identity.recipient()], options=tensorseal.writer.SealOptions(segment_size=SMALL_SEGMENT))
    original = sealed.read_bytes()
    header, _ = _layout(sealed)
    for pos in (20, header.tags_offset, header.data_offset + 5, len(original) - 1):
        data = bytearray(original)
        data[pos] ^= 4
        p = _write(tmp_path, bytes(data))
        with pytest.raises(EXPECTED):
            tensorseal.decrypt_file(p, tmp_path / "o", [identity])
        assert not (tmp_path / "o").exists()
    with pytest.raises(TruncatedError):
        tensorseal.decrypt_file(_write(tmp_path, original[:-SMALL_SEGMENT]), tmp_path / "o", [identity])
