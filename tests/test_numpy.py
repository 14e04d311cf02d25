"""tensorseal.numpy: round trips, dtypes, layouts, safe_open / get_slice."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import tensorseal
import tensorseal.numpy as tsnp
from tensorseal.errors import NoIdentityMatchError, UsageError

from .conftest import KEY_KINDS, SMALL_SEGMENT, assert_same, key_pair, sample_tensors


@pytest.mark.parametrize("kind", KEY_KINDS)
@pytest.mark.parametrize("cipher", ["aes-256-gcm", "chacha20-poly1305"])
def test_round_trip_every_key_type_and_cipher(tmp_path, kind, cipher):
    recipient, identity = key_pair(kind)
    tensors = sample_tensors()
    path = tmp_path / "m.tseal"
    tsnp.save_file(tensors, path, [recipient], cipher=cipher, segment_size=SMALL_SEGMENT)
    assert_same(tensors, tsnp.load_file(path, [identity]))


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_parallel_paths_agree(tmp_path, identity, threads):
    tensors = sample_tensors(seed=threads)
    path = tmp_path / "m.tseal"
    tsnp.save_file(tensors, path, [identity.recipient()], segment_size=SMALL_SEGMENT, threads=threads)
    assert_same(tensors, tsnp.load_file(path, [identity], threads=threads))


def test_default_segment_size_large_tensor(tmp_path, identity):
    # 2.5 MiB + 3 bytes: three 1 MiB segments, the last one short
    t = {"w": np.frombuffer(np.random.default_rng(1).bytes(5 * 2**19 + 3), dtype=np.uint8)}
    path = tmp_path / "m.tseal"
    tsnp.save_file(t, path, [identity.recipient()])
    assert_same(t, tsnp.load_file(path, [identity]))


NATIVE = [np.bool_, np.uint8, np.int8, np.int16, np.uint16, np.float16, np.int32, np.uint32,
          np.float32, np.int64, np.uint64, np.float64, np.complex64]  # fmt: skip
ML = [ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2]


@pytest.mark.parametrize("dtype", NATIVE + ML, ids=lambda d: np.dtype(d).name)
def test_every_dtype(tmp_path, identity, dtype):
    rng = np.random.default_rng(2)
    arr = rng.standard_normal((5, 3)).astype(np.float32).astype(dtype)
    path = tmp_path / "m.tseal"
    tsnp.save_file({"x": arr}, path, [identity.recipient()])
    out = tsnp.load_file(path, identity)["x"]
    assert out.dtype == np.dtype(dtype) and out.shape == arr.shape
    assert out.tobytes() == arr.tobytes()


def test_big_endian_and_non_contiguous_inputs_are_stored_little_endian(tmp_path, identity):
    base = np.arange(24, dtype=">i4").reshape(4, 6)
    t = {"be": base, "strided": np.arange(40, dtype=np.float32).reshape(5, 8)[:, ::3]}
    path = tmp_path / "m.tseal"
    tsnp.save_file(t, path, [identity.recipient()])
    out = tsnp.load_file(path, [identity])
    assert np.array_equal(out["be"], base) and out["be"].dtype == np.dtype("<i4")
    assert np.array_equal(out["strided"], t["strided"])


def test_metadata_and_public_index(tmp_path, identity):
    path = tmp_path / "m.tseal"
    tsnp.save_file(sample_tensors(), path, [identity.recipient()], metadata={"a": "b"}, public_index=True)
    from tensorseal.reader import SealedFile

    with SealedFile(path) as f:
        public = f.public_index()
        assert public is not None and {e.name for e in public.entries} == set(sample_tensors())
        assert public.metadata == {"a": "b"}
    with tensorseal.safe_open(path, "np", [identity]) as f:
        assert f.metadata() == {"a": "b"}


def test_private_index_hides_names(tmp_path, identity):
    path = tmp_path / "m.tseal"
    tsnp.save_file({"secret_layer_name.weight": np.ones(3)}, path, [identity.recipient()])
    assert b"secret_layer_name" not in path.read_bytes()
    from tensorseal.reader import SealedFile

    with SealedFile(path) as f:
        assert f.public_index() is None


def test_several_recipients_any_opens(tmp_path):
    pairs = [key_pair("x25519"), key_pair("x25519"), key_pair("symmetric")]
    path = tmp_path / "m.tseal"
    tensors = sample_tensors()
    tsnp.save_file(tensors, path, [r for r, _ in pairs])
    for _, ident in pairs:
        assert_same(tensors, tsnp.load_file(path, [ident]))


def test_wrong_identity(tmp_path, identity, other_identity):
    path = tmp_path / "m.tseal"
    tsnp.save_file(sample_tensors(), path, [identity.recipient()])
    with pytest.raises(NoIdentityMatchError):
        tsnp.load_file(path, [other_identity])
    # the right one after a wrong one still works (wrong identity means "try the next")
    assert "scalar" in tsnp.load_file(path, [other_identity, identity])


def test_recipient_strings_and_identity_files(tmp_path, identity):
    id_file = tmp_path / "key.txt"
    id_file.write_text(f"# comment\n{identity}\n")
    path = tmp_path / "m.tseal"
    tsnp.save_file(sample_tensors(), path, [str(identity.recipient())])
    assert_same(sample_tensors(), tsnp.load_file(path, str(id_file)))
    assert_same(sample_tensors(), tsnp.load_file(path, [id_file]))


def test_save_rejects_bad_input(tmp_path, identity):
    with pytest.raises(UsageError):
        tsnp.save_file({"x": [1, 2]}, tmp_path / "a", [identity.recipient()])
    with pytest.raises(UsageError):
        tsnp.save_file({"x": np.ones(2)}, tmp_path / "a", [])
    with pytest.raises(tensorseal.errors.UnsupportedDtypeError):
        tsnp.save_file({"x": np.array(["a"])}, tmp_path / "a", [identity.recipient()])
    assert not (tmp_path / "a").exists()


def test_safe_open_get_tensor_and_slices(sealed_small, identity):
    path, tensors = sealed_small
    with tensorseal.safe_open(path, framework="np", identities=[identity]) as f:
        assert f.keys() == sorted(tensors)
        assert f.metadata() == {"m": "1"}
        for name, arr in tensors.items():
            assert np.array_equal(f.get_tensor(name), arr)
        s = f.get_slice("embed.weight")
        assert s.get_shape() == [37, 129] and s.get_dtype() == "F32"
        ref = tensors["embed.weight"]
        for key in [slice(3, 9), slice(None), slice(30, None, 2), slice(20, 2, -3), slice(None, None, -1),
                    (slice(5, 6), slice(1, 4)), 0, -1, 36, (4, slice(0, 3)), slice(10, 10), Ellipsis, ([1, 4],)]:  # fmt: skip
            assert np.array_equal(s[key], ref[key]), key
        with pytest.raises(IndexError):
            s[37]
        with pytest.raises(UsageError):
            f.get_tensor("nope")
        assert np.array_equal(f.get_slice("scalar")[()], tensors["scalar"])
        assert f.get_slice("empty")[:].shape == (0, 4)


def test_blob_file_is_not_tensors(tmp_path, identity):
    blob = tmp_path / "model.onnx"
    blob.write_bytes(b"not safetensors" * 100)
    tensorseal.encrypt_file(blob, tmp_path / "b.tseal", [identity.recipient()])
    with pytest.raises(UsageError):
        tsnp.load_file(tmp_path / "b.tseal", [identity])
