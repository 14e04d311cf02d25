"""Swapping a served model for another valid sealed file: another model, an older version
of the same model, another shard of the same checkpoint. Every file here is authentic and
opens with the same identity; only the bound model identity tells them apart."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tensorseal
import tensorseal.numpy as tsnp
from safetensors.numpy import save_file

from tensorseal.cli import main
from tensorseal.format.header import ModelIdentity
from tensorseal.writer import SealOptions
from tensorseal.errors import ModelMismatchError, SignatureError, UsageError
from tensorseal.signing import SigningKey


@pytest.fixture
def models(tmp_path, identity):
    """Three authentic files for one recipient."""
    out = {}
    for key, name, version, shard in (("v2", "llama-tiny", "2.0", "model-00001-of-00002"),
                                      ("v1", "llama-tiny", "1.9.1", "model-00001-of-00002"),
                                      ("other", "mistral-tiny", "2.0", "model-00001-of-00002"),
                                      ("shard2", "llama-tiny", "2.0", "model-00002-of-00002")):  # fmt: skip
        src, path = tmp_path / f"{key}.safetensors", tmp_path / f"{key}.tseal"
        save_file({"w": np.full(8, len(key), np.float32)}, src)
        opts = SealOptions(identity=ModelIdentity(name, version, shard))
        tensorseal.encrypt_file(src, path, [identity.recipient()], options=opts)
        out[key] = path
    return out


def test_cross_model_swap_is_refused(models, identity):
    assert tsnp.load_file(models["v2"], [identity], expect_name="llama-tiny")["w"][0] == 2
    with pytest.raises(ModelMismatchError, match="name"):
        tsnp.load_file(models["other"], [identity], expect_name="llama-tiny")


def test_version_rollback_is_refused(models, identity):
    tsnp.load_file(models["v2"], [identity], min_version="2.0")
    with pytest.raises(ModelMismatchError, match="older than the minimum"):
        tsnp.load_file(models["v1"], [identity], min_version="2.0")
    with pytest.raises(ModelMismatchError):
        tsnp.load_file(models["v1"], [identity], expect_version="2.0")
    # PEP 440 ordering, not string ordering: 1.10 > 1.9
    assert tsnp.load_file(models["v2"], [identity], min_version="1.10") is not None


def test_shard_swap_is_refused(models, identity):
    tsnp.load_file(models["v2"], [identity], expect_file="model-00001-of-00002")
    with pytest.raises(ModelMismatchError, match="file"):
        tsnp.load_file(models["shard2"], [identity], expect_file="model-00001-of-00002")


def test_missing_version_and_bad_versions(tmp_path, identity):
    path = tmp_path / "noversion.tseal"
    tsnp.save_file({"w": np.ones(2)}, path, [identity.recipient()], name="x")
    with pytest.raises(ModelMismatchError, match="no model version"):
        tsnp.load_file(path, [identity], min_version="1.0")
    with pytest.raises(ModelMismatchError, match="PEP 440"):
        tsnp.load_file(path, [identity], min_version="not a version!")


def test_identity_checked_without_the_key_through_the_signature(tmp_path, identity):
    publisher = SigningKey.generate()
    path = tmp_path / "signed.tseal"
    tsnp.save_file({"w": np.ones(2)}, path, [identity.recipient()], name="a", version="3", sign_with=[publisher])
    tensorseal.verify_file(path, signers=[publisher.public_key()], expect_name="a", min_version="3")
    with pytest.raises(ModelMismatchError):
        tensorseal.verify_file(path, signers=[publisher.public_key()], expect_name="b")
    with tensorseal.safe_open(path, "np", [identity], expect_name="a") as f:
        assert f.keys() == ["w"]


def test_require_signature_uses_the_trusted_signers_file(tmp_path, identity, monkeypatch):
    publisher = SigningKey.generate()
    signed, unsigned = tmp_path / "s.tseal", tmp_path / "u.tseal"
    tsnp.save_file({"w": np.ones(2)}, signed, [identity.recipient()], sign_with=[publisher])
    tsnp.save_file({"w": np.ones(2)}, unsigned, [identity.recipient()])
    monkeypatch.delenv("TENSORSEAL_TRUSTED_SIGNERS", raising=False)
    with pytest.raises(UsageError):
        tsnp.load_file(signed, [identity], require_signature=True)
    trusted = tmp_path / "trusted"
    trusted.write_text(f"{publisher.public_key()}\n")
    monkeypatch.setenv("TENSORSEAL_TRUSTED_SIGNERS", str(trusted))
    tsnp.load_file(signed, [identity], require_signature=True)
    with pytest.raises(SignatureError):
        tsnp.load_file(unsigned, [identity], require_signature=True)


def test_cli_identity_flags(models, tmp_path, identity, capsys):
    key = tmp_path / "key.txt"
    key.write_text(f"{identity}\n")
    assert main(["verify", str(models["v2"]), "-i", str(key), "--expect-name", "llama-tiny", "--min-version", "2", "-q"]) == 0
    assert main(["verify", str(models["v1"]), "-i", str(key), "--min-version", "2.0", "-q"]) == 6
    assert main(["decrypt", str(models["shard2"]), "-i", str(key), "--expect-file", "model-00001-of-00002",
                 "-o", str(tmp_path / "o")]) == 6  # fmt: skip
    err = capsys.readouterr().err
    assert "tensorseal: error: model file is" in err and not (tmp_path / "o").exists()
    src = tmp_path / "plain.safetensors"
    tensorseal.decrypt_file(models["v2"], src, [identity])
    out = tmp_path / "cli.tseal"
    rec = str(identity.recipient())
    assert main(["encrypt", str(src), "-o", str(out), "-r", rec, "--name", "n", "--version", "1", "--file-id", "f", "-q"]) == 0
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["identity"] == {"name": "n", "version": "1", "file": "f"}
