"""tensorseal.torch: round trips for every torch dtype, safe_open, device argument."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tensorseal  # noqa: E402
import tensorseal.torch as tspt  # noqa: E402
from tensorseal.errors import NoIdentityMatchError  # noqa: E402

from .conftest import KEY_KINDS, SMALL_SEGMENT, key_pair  # noqa: E402

DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.uint16, torch.float16, torch.bfloat16,
          torch.int32, torch.uint32, torch.float32, torch.int64, torch.uint64, torch.float64, torch.complex64,
          torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e8m0fnu]  # fmt: skip


def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(33, 65, generator=g),
        "b": torch.randn(7, generator=g).to(torch.bfloat16),
        "s": torch.tensor(1.5),
        "e": torch.zeros(0, 3),
        "f8": torch.randn(40, generator=g).to(torch.float8_e4m3fn),
        "t": torch.randn(4, 6, generator=g).t(),  # non-contiguous
    }


def same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        if a[k].numel():  # compare bytes: works for every dtype, NaN included
            assert torch.equal(a[k].reshape(-1).view(torch.uint8), b[k].reshape(-1).view(torch.uint8)), k


@pytest.mark.parametrize("kind", KEY_KINDS)
@pytest.mark.parametrize("cipher", ["aes-256-gcm", "chacha20-poly1305"])
def test_round_trip(tmp_path, kind, cipher):
    recipient, identity = key_pair(kind)
    path = tmp_path / "m.tseal"
    tspt.save_file(tensors(), path, [recipient], metadata={"x": "y"}, cipher=cipher, segment_size=SMALL_SEGMENT)
    same(tensors(), tspt.load_file(path, [identity]))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_dtype(tmp_path, identity, dtype):
    src = (torch.randn(6, 5) * 4).to(dtype) if dtype != torch.complex64 else torch.randn(6, 5, dtype=dtype)
    path = tmp_path / "m.tseal"
    tspt.save_file({"x": src}, path, [identity.recipient()])
    same({"x": src}, tspt.load_file(path, identity))


def test_loaded_tensors_are_writable_and_own_their_memory(tmp_path, identity):
    path = tmp_path / "m.tseal"
    tspt.save_file({"w": torch.ones(100)}, path, [identity.recipient()])
    w = tspt.load_file(path, [identity], device="cpu")["w"]
    w += 1
    assert float(w.sum()) == 200.0


def test_interop_with_numpy_api_and_safetensors(tmp_path, identity):
    from safetensors.torch import load_file as st_load

    path, back = tmp_path / "m.tseal", tmp_path / "back.safetensors"
    t = {k: v for k, v in tensors().items() if k != "t"}
    tspt.save_file(t, path, [identity.recipient()])
    tensorseal.decrypt_file(path, back, [identity])
    same(t, st_load(back))


def test_safe_open_torch(tmp_path, identity):
    path = tmp_path / "m.tseal"
    tspt.save_file(tensors(), path, [identity.recipient()], segment_size=SMALL_SEGMENT)
    with tensorseal.safe_open(path, framework="pt", identities=[identity]) as f:
        assert f.keys() == sorted(tensors())
        assert torch.equal(f.get_tensor("w"), tensors()["w"])
        assert torch.equal(f.get_slice("w")[10:20, 3:], tensors()["w"][10:20, 3:])
        assert f.get_slice("b").get_dtype() == "BF16"


def test_wrong_identity(tmp_path, identity, other_identity):
    path = tmp_path / "m.tseal"
    tspt.save_file(tensors(), path, [identity.recipient()])
    with pytest.raises(NoIdentityMatchError):
        tspt.load_file(path, [other_identity])


def test_rejects_non_tensors(tmp_path, identity):
    with pytest.raises(tensorseal.UsageError):
        tspt.save_file({"x": np.ones(3)}, tmp_path / "m", [identity.recipient()])
