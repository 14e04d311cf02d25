"""One file, several recipients of mixed kinds (a KMS key plus an offline X25519 recovery
key): any one of them opens it, and each way is checked."""

from __future__ import annotations

import numpy as np
import pytest

import tensorseal.numpy as tsnp
from tensorseal.errors import NoIdentityMatchError
from tensorseal.reader import SealedFile
from tensorseal.recipients import AwsKmsKey, VaultTransitKey, X25519Identity

from .conftest import free_port

pytest.importorskip("boto3", reason="boto3 is not installed")


@pytest.fixture
def kms_arn(aws_env) -> str:
    import boto3

    return boto3.client("kms").create_key()["KeyMetadata"]["Arn"]


def test_kms_plus_x25519_opens_either_way(kms_arn, tmp_path, monkeypatch):
    recovery = X25519Identity.generate()
    tensors = {"embed": np.arange(4096, dtype=np.float32).reshape(64, 64), "bias": np.ones(7, dtype=np.float16)}
    path = tmp_path / "model.tseal"
    tsnp.save_file(tensors, path, recipients=[AwsKmsKey(kms_arn), recovery.recipient()], name="m", version="1")
    with SealedFile(path) as sealed:
        assert [s.type for s in sealed.header.recipients] == ["aws-kms", "X25519"]

    def same(out):
        return all(np.array_equal(out[k], tensors[k]) for k in tensors)

    assert same(tsnp.load_file(path, None))  # the KMS key, found from the stanza, credentials from the env
    assert same(tsnp.load_file(path, [AwsKmsKey(kms_arn)]))  # the KMS key, named
    assert same(tsnp.load_file(path, [X25519Identity.generate(), recovery]))  # a wrong key is skipped
    assert same(tsnp.load_file(path, [X25519Identity.generate()]))  # falls back to the KMS key
    # offline: KMS unreachable, the recovery key alone opens it and KMS is never asked
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert same(tsnp.load_file(path, [recovery]))


def test_three_kinds_and_no_match(kms_arn, vault_env, vault_admin, tmp_path, monkeypatch):
    vault_admin.secrets.transit.create_key(name="mixed-kek")
    recovery = X25519Identity.generate()
    path = tmp_path / "model.tseal"
    recipients = [f"awskms:{kms_arn}", "vault:transit/mixed-kek", recovery.recipient()]
    tsnp.save_file({"w": np.arange(10.0)}, path, recipients)
    assert np.array_equal(tsnp.load_file(path, [VaultTransitKey("transit", "mixed-kek")])["w"], np.arange(10.0))
    # AWS credentials gone: the Vault stanza, tried next, still opens it with no flags
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert np.array_equal(tsnp.load_file(path, None)["w"], np.arange(10.0))
    # an X25519-only file with a wrong key: nothing to ask, NoIdentityMatchError as before
    other = tmp_path / "other.tseal"
    tsnp.save_file({"w": np.arange(3.0)}, other, [recovery.recipient()])
    with pytest.raises(NoIdentityMatchError):
        tsnp.load_file(other, [X25519Identity.generate()])
