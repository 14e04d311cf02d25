"""encrypt_file / decrypt_file / verify_file: byte-identical round trips, both modes."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file as st_save

import tensorseal
from tensorseal.errors import FormatError, LayoutError, UsageError
from tensorseal.reader import SealedFile
from tensorseal.writer import SealOptions

from .conftest import KEY_KINDS, SMALL_SEGMENT, key_pair, sample_tensors


@pytest.mark.parametrize("kind", KEY_KINDS)
@pytest.mark.parametrize("public", [False, True])
def test_safetensors_file_decrypts_byte_for_byte(tmp_path, kind, public):
    recipient, identity = key_pair(kind)
    src = tmp_path / "model.safetensors"
    st_save(sample_tensors(), src, metadata={"format": "np", "note": "ünïcode"})
    sealed, back = tmp_path / "model.tseal", tmp_path / "back.safetensors"
    header = tensorseal.encrypt_file(src, sealed, [recipient], options=SealOptions(public_index=public, segment_size=SMALL_SEGMENT))
    assert header.mode == "tensors" and header.index_encrypted is not public
    tensorseal.verify_file(sealed, [identity])
    tensorseal.decrypt_file(sealed, back, [identity])
    assert back.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("cipher", ["aes-256-gcm", "chacha20-poly1305"])
@pytest.mark.parametrize("size", [0, 1, SMALL_SEGMENT - 1, SMALL_SEGMENT, 3 * SMALL_SEGMENT, 3 * SMALL_SEGMENT + 5])
def test_blob_round_trip(tmp_path, identity, cipher, size):
    src = tmp_path / "model.onnx"
    src.write_bytes(np.random.default_rng(size).bytes(size))
    sealed, back = tmp_path / "model.onnx.tseal", tmp_path / "back.onnx"
    header = tensorseal.encrypt_file(src, sealed, [identity.recipient()], options=SealOptions(cipher=cipher, segment_size=SMALL_SEGMENT))
    assert header.mode == "blob" and header.data_length == size
    assert src.read_bytes()[:64] not in sealed.read_bytes() or size < 64
    tensorseal.decrypt_file(sealed, back, [identity])
    assert back.read_bytes() == src.read_bytes()


def test_torch_pickle_as_blob(tmp_path, identity):
    torch = pytest.importorskip("torch")
    src = tmp_path / "state.pt"
    torch.save({"w": torch.arange(10.0)}, src)
    sealed, back = tmp_path / "s.tseal", tmp_path / "back.pt"
    assert tensorseal.encrypt_file(src, sealed, [identity.recipient()]).mode == "blob"
    tensorseal.decrypt_file(sealed, back, [identity])
    assert back.read_bytes() == src.read_bytes()


def test_forced_modes(tmp_path, identity):
    src = tmp_path / "m.safetensors"
    st_save({"a": np.ones(3, np.float32)}, src)
    assert tensorseal.encrypt_file(src, tmp_path / "b", [identity.recipient()], mode="blob").mode == "blob"
    other = tmp_path / "x.bin"
    other.write_bytes(b"hello")
    with pytest.raises(FormatError):
        tensorseal.encrypt_file(other, tmp_path / "c", [identity.recipient()], mode="tensors")
    with pytest.raises(UsageError):
        tensorseal.encrypt_file(other, tmp_path / "c", [identity.recipient()], mode="zip")


def test_broken_safetensors_input_is_refused(tmp_path, identity):
    src = tmp_path / "m.safetensors"
    st_save({"a": np.ones(3, np.float32)}, src)
    (tmp_path / "short.safetensors").write_bytes(src.read_bytes()[:-1])
    with pytest.raises(FormatError):
        tensorseal.encrypt_file(tmp_path / "short.safetensors", tmp_path / "o", [identity.recipient()])
    assert not (tmp_path / "o").exists()


def test_overlapping_tensors_in_input_are_refused(tmp_path, identity):
    import json
    import struct

    body = json.dumps({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                       "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}).encode()  # fmt: skip
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", len(body)) + body + bytes(6))
    with pytest.raises(LayoutError):
        tensorseal.encrypt_file(tmp_path / "bad.safetensors", tmp_path / "o", [identity.recipient()])


def test_same_path_refused(tmp_path, identity):
    src = tmp_path / "x.bin"
    src.write_bytes(b"abc")
    with pytest.raises(UsageError):
        tensorseal.encrypt_file(src, src, [identity.recipient()])
    assert src.read_bytes() == b"abc"


def test_nonces_never_repeat_and_every_file_has_fresh_keys(tmp_path, identity):
    """Within a file each segment has its own (tensor, segment) nonce; across files the
    salt and file key are fresh, so the same plaintext never gives the same ciphertext."""
    tensors = sample_tensors()
    paths = [tmp_path / f"{i}.tseal" for i in range(2)]
    for p in paths:
        tensorseal.numpy.save_file(tensors, p, [identity.recipient()], segment_size=SMALL_SEGMENT)
    seen_nonces = []
    data_regions, salts = [], []
    for p in paths:
        with SealedFile(p) as f:
            f.unlock([identity])
            nonces = [s.nonce for s in f.all_segments()]
            assert len(nonces) == len(set(nonces)) == f.header.segment_count
            seen_nonces.append(nonces)
            salts.append(f.header.salt)
            data_regions.append(p.read_bytes()[f.header.data_offset :])
    assert seen_nonces[0] == seen_nonces[1]  # same layout, so the nonces repeat across files...
    assert salts[0] != salts[1]  # ...but under different keys: the salt and file key are new
    assert data_regions[0] != data_regions[1]
    block = 16
    assert not set(data_regions[0][i : i + block] for i in range(0, 4096, block)) & set(
        data_regions[1][i : i + block] for i in range(0, 4096, block)
    )


def test_read_blob_into_memory(tmp_path, identity):
    src = tmp_path / "m.onnx"
    src.write_bytes(np.random.default_rng(9).bytes(10_000))
    tensorseal.encrypt_file(src, tmp_path / "b", [identity.recipient()], options=SealOptions(segment_size=SMALL_SEGMENT))
    assert tensorseal.read_blob(tmp_path / "b", [identity]) == src.read_bytes()
    st_save({"a": np.ones(2)}, tmp_path / "t.safetensors")
    tensorseal.encrypt_file(tmp_path / "t.safetensors", tmp_path / "t", [identity.recipient()])
    with pytest.raises(UsageError):
        tensorseal.read_blob(tmp_path / "t", [identity])
    data = bytearray((tmp_path / "b").read_bytes())
    data[-1] ^= 1
    (tmp_path / "b").write_bytes(bytes(data))
    with pytest.raises(tensorseal.AuthenticationError):
        tensorseal.read_blob(tmp_path / "b", [identity])


def test_dtypes_no_framework_can_hold_still_round_trip_as_files(tmp_path, identity):
    """Sub-byte dtypes (F4, F6) and F8_E8M0: sealed and decrypted byte for byte; the
    numpy loader says clearly that it cannot represent F4."""
    from tensorseal.format.safetensors_index import build_index

    index = build_index({"f4": ("F4", (6,)), "f6": ("F6_E2M3", (8,)), "e8": ("F8_E8M0", (3,))}, None)
    src = tmp_path / "odd.safetensors"
    src.write_bytes(index.raw + np.random.default_rng(0).bytes(index.data_length))
    tensorseal.encrypt_file(src, tmp_path / "o.tseal", [identity.recipient()])
    tensorseal.decrypt_file(tmp_path / "o.tseal", tmp_path / "back", [identity])
    assert (tmp_path / "back").read_bytes() == src.read_bytes()
    with pytest.raises(tensorseal.errors.UnsupportedDtypeError):
        tensorseal.numpy.load_file(tmp_path / "o.tseal", [identity])


@pytest.mark.parametrize("exc", [OSError("disk went away"), KeyboardInterrupt()])
def test_interrupted_write_leaves_no_file_and_keeps_the_old_one(tmp_path, identity, exc):
    """A failure or Ctrl-C in the middle of sealing removes the temp file and leaves an
    existing target as it was."""
    from tensorseal.writer import write_sealed

    target = tmp_path / "out.tseal"
    target.write_bytes(b"previous version")
    calls = []

    def source(seg, scratch):
        calls.append(seg)
        if len(calls) == 3:
            raise exc
        scratch[:] = bytes(len(scratch))
        return scratch

    with pytest.raises(type(exc)):
        write_sealed(target, mode="blob", lengths=[10 * SMALL_SEGMENT], source=source,
                     recipients=[identity.recipient()], options=SealOptions(segment_size=SMALL_SEGMENT), threads=1)  # fmt: skip
    assert target.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tseal"]
