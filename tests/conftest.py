from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import tensorseal
from tensorseal.recipients import Passphrase, SymmetricKey, X25519Identity

SMALL_SEGMENT = 4096


@pytest.fixture(scope="session")
def identity() -> X25519Identity:
    return X25519Identity.generate()


@pytest.fixture(scope="session")
def other_identity() -> X25519Identity:
    return X25519Identity.generate()


def fast_passphrase(text: str = "correct horse battery staple") -> Passphrase:
    """A passphrase with a tiny scrypt cost so tests stay fast (format is the same)."""
    return Passphrase(text, work_factor=10)


KEY_KINDS = ["x25519", "symmetric", "passphrase"]


def key_pair(kind: str) -> tuple[object, object]:
    """(recipient, identity) of one key type."""
    if kind == "x25519":
        ident = X25519Identity.generate()
        return ident.recipient(), ident
    if kind == "symmetric":
        key = SymmetricKey.generate()
        return key, key
    pw = fast_passphrase()
    return pw, pw


def sample_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Odd sizes, an empty tensor, a 0-d tensor, a tensor of exactly 3 small segments,
    one smaller than a segment, and one spanning several segments."""
    rng = np.random.default_rng(seed)
    return {
        "embed.weight": rng.standard_normal((37, 129)).astype(np.float32),  # 19092 B: 5 segments
        "exact": rng.integers(0, 255, 3 * SMALL_SEGMENT, dtype=np.uint8),
        "small.bias": rng.standard_normal(7).astype(np.float16),
        "scalar": np.array(3.25, dtype=np.float64),
        "empty": np.zeros((0, 4), dtype=np.int32),
        "mask": rng.integers(0, 2, (3, 5)).astype(bool),
        "ids": rng.integers(-(2**40), 2**40, 11, dtype=np.int64),
    }


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        assert np.array_equal(a[k], b[k]), k


@pytest.fixture
def sealed_small(tmp_path, identity):
    """A small multi-segment sealed file and its plaintext."""
    tensors = sample_tensors()
    path = tmp_path / "model.tseal"
    tensorseal.numpy.save_file(tensors, path, [identity.recipient()], metadata={"m": "1"}, segment_size=SMALL_SEGMENT)
    return path, tensors


import tensorseal.numpy  # noqa: E402  (make tensorseal.numpy reachable as an attribute)


# ---- AWS (S3, KMS): moto's server over real HTTP on loopback ----------------------------
@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("boto3", reason="boto3 is not installed")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Credentials and endpoint in the environment only, as a user would set them; no
    shared config files, no instance metadata lookups."""
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)  # every service: S3 and KMS
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_url)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return moto_url
