"""Framework integrations: safetensors code reading sealed files, torch.load and
onnxruntime from memory."""

from __future__ import annotations

import os

import numpy as np
import pytest

import tensorseal
import tensorseal.numpy as tsnp
import tensorseal.torch  # noqa: F401  (tensorseal.torch as an attribute)
from tensorseal.compat import is_sealed, sealed_safetensors
from tensorseal.errors import ModelMismatchError, NoIdentityMatchError, SegmentAuthenticationError

from .conftest import assert_same, sample_tensors


def test_unchanged_safetensors_code_reads_sealed_files(tmp_path, identity):
    import safetensors
    import safetensors.numpy

    sealed, plain = tmp_path / "sealed.safetensors", tmp_path / "plain.safetensors"
    tsnp.save_file(sample_tensors(), sealed, [identity.recipient()], metadata={"m": "1"}, name="demo")
    safetensors.numpy.save_file(sample_tensors(), plain)
    assert is_sealed(sealed) and not is_sealed(plain) and not is_sealed(tmp_path / "missing")
    original = safetensors.numpy.load_file
    with sealed_safetensors([identity], expect_name="demo"):
        assert_same(sample_tensors(), safetensors.numpy.load_file(sealed))
        assert_same(sample_tensors(), safetensors.numpy.load_file(plain))  # plain files still work
        with safetensors.safe_open(sealed, framework="np") as f:
            assert f.metadata() == {"m": "1"} and sorted(f.keys()) == sorted(sample_tensors())
        with safetensors.safe_open(plain, framework="np") as f:
            assert sorted(f.keys()) == sorted(sample_tensors())
    assert safetensors.numpy.load_file is original
    with pytest.raises(Exception) as err:  # safetensors itself cannot read a sealed file
        safetensors.numpy.load_file(sealed)
    assert not isinstance(err.value, tensorseal.TensorSealError)


def test_checks_and_errors_pass_through(tmp_path, identity, other_identity):
    import safetensors.numpy

    sealed = tmp_path / "m.safetensors"
    tsnp.save_file({"w": np.ones(3)}, sealed, [identity.recipient()], name="a")
    with sealed_safetensors([identity], expect_name="b"), pytest.raises(ModelMismatchError):
        safetensors.numpy.load_file(sealed)
    with sealed_safetensors([other_identity]), pytest.raises(NoIdentityMatchError):
        safetensors.numpy.load_file(sealed)


def test_torch_entry_points(tmp_path, identity):
    torch = pytest.importorskip("torch")
    import safetensors.torch

    sealed = tmp_path / "m.safetensors"
    tensorseal.torch.save_file({"w": torch.arange(6.0).reshape(2, 3)}, sealed, [identity.recipient()])
    with sealed_safetensors([identity]):
        assert torch.equal(safetensors.torch.load_file(sealed)["w"], torch.arange(6.0).reshape(2, 3))
        assert torch.equal(safetensors.torch.load_file(sealed, device="cpu")["w"][1], torch.tensor([3.0, 4.0, 5.0]))
        with safetensors.safe_open(sealed, framework="pt", device="cpu") as f:
            assert torch.equal(f.get_slice("w")[1:], torch.tensor([[3.0, 4.0, 5.0]]))


def test_torch_load_from_memory(tmp_path, identity):
    torch = pytest.importorskip("torch")
    ckpt = {"model": {"w": torch.randn(4, 4)}, "step": 7}
    src, sealed = tmp_path / "ckpt.pt", tmp_path / "ckpt.pt.tseal"
    torch.save(ckpt, src)
    tensorseal.encrypt_file(src, sealed, [identity.recipient()])
    got = tensorseal.torch.load(sealed, [identity])
    assert got["step"] == 7 and torch.equal(got["model"]["w"], ckpt["model"]["w"])
    data = bytearray(sealed.read_bytes())
    data[-1] ^= 1
    sealed.write_bytes(bytes(data))
    with pytest.raises(SegmentAuthenticationError):
        tensorseal.torch.load(sealed, [identity])


def test_onnx_session_from_memory_matches_plain(tmp_path, identity):
    ort = pytest.importorskip("onnxruntime")
    silero_vad = pytest.importorskip("silero_vad")
    import tensorseal.onnx

    model = os.path.join(os.path.dirname(silero_vad.__file__), "data", "silero_vad.onnx")
    sealed = tmp_path / "vad.onnx.tseal"
    tensorseal.encrypt_file(model, sealed, [identity.recipient()], options=tensorseal.writer.SealOptions())
    plain = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    secret = tensorseal.onnx.InferenceSession(sealed, [identity], providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in plain.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        if inp.name == "sr":
            feeds[inp.name] = np.array(16000, dtype=np.int64)
        elif "int64" in inp.type:
            feeds[inp.name] = np.zeros(shape, dtype=np.int64)
        else:
            shape = [1, 512] if inp.name == "input" else shape
            feeds[inp.name] = rng.standard_normal(shape).astype(np.float32) * (0.1 if inp.name == "input" else 0)
    expected = plain.run(None, feeds)
    got = secret.run(None, feeds)
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        assert np.array_equal(a, b)
