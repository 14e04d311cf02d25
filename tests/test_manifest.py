"""Signed manifests of model directories: shards removed, added, renamed, swapped or
rolled back, and plain files changed, are all detected without the decryption key."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

import tensorseal
from tensorseal.cli import main
from tensorseal.errors import ManifestError, NotSealedError, SignatureError, UsageError
from tensorseal.format.header import ModelIdentity
from tensorseal.manifest import MANIFEST_NAME
from tensorseal.signing import SigningKey
from tensorseal.writer import SealOptions


def _shard(tmp, identity, name, value, version="1.0"):
    src = tmp / f"{name}.plain"
    save_file({"w": np.full(1000, value, np.float32)}, src)
    return src, SealOptions(identity=ModelIdentity("tiny", version, name))


@pytest.fixture
def model_dir(tmp_path, identity):
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    for i, name in enumerate(("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")):
        src, opts = _shard(tmp_path, identity, name, i)
        tensorseal.encrypt_file(src, d / name, [identity.recipient()], options=opts)
    (d / "config.json").write_text('{"hidden_size": 8}')
    (d / "sub" / "tokenizer.json").write_text("{}")
    return d


@pytest.fixture(scope="module")
def publisher():
    return SigningKey.generate()


def test_sign_and_verify_a_directory(model_dir, publisher):
    path = tensorseal.sign_directory(model_dir, [publisher])
    assert os.path.basename(path) == MANIFEST_NAME
    result = tensorseal.verify_directory(model_dir, [publisher.public_key()])
    assert result.identity.name == "tiny" and len(result.files) == 4
    assert {f.path for f in result.files} >= {"sub/tokenizer.json", "config.json"}


@pytest.mark.parametrize("attack", ["remove", "add", "rename", "swap", "edit_plain", "flip_shard", "rollback"])
def test_directory_attacks(model_dir, publisher, identity, tmp_path, attack):
    tensorseal.sign_directory(model_dir, [publisher])
    a, b = model_dir / "model-00001-of-00002.safetensors", model_dir / "model-00002-of-00002.safetensors"
    if attack == "remove":
        a.unlink()
    elif attack == "add":
        shutil.copyfile(b, model_dir / "model-00003-of-00002.safetensors")
    elif attack == "rename":
        a.rename(model_dir / "model-renamed.safetensors")
    elif attack == "swap":
        tmp = model_dir / "t"
        a.rename(tmp)
        b.rename(a)
        tmp.rename(b)
    elif attack == "edit_plain":
        (model_dir / "config.json").write_text('{"hidden_size": 9}')
    elif attack == "flip_shard":
        data = bytearray(a.read_bytes())
        data[-10] ^= 1
        a.write_bytes(bytes(data))
    elif attack == "rollback":  # an older, authentic build of the same shard, same size
        src, opts = _shard(tmp_path, identity, a.name, 0, version="0.9")
        tensorseal.encrypt_file(src, a, [identity.recipient()], options=opts)
    with pytest.raises(ManifestError):
        tensorseal.verify_directory(model_dir, [publisher.public_key()])


def test_untrusted_or_missing_manifest(model_dir, publisher):
    with pytest.raises(ManifestError, match="no tensorseal.manifest.json"):
        tensorseal.verify_directory(model_dir, [publisher.public_key()])
    tensorseal.sign_directory(model_dir, [publisher])
    with pytest.raises(SignatureError):
        tensorseal.verify_directory(model_dir, [SigningKey.generate().public_key()])
    text = (model_dir / MANIFEST_NAME).read_text()
    (model_dir / MANIFEST_NAME).write_text(text.replace('"tiny"', '"huge"'))
    with pytest.raises(SignatureError):
        tensorseal.verify_directory(model_dir, [publisher.public_key()])


def test_shards_must_agree_on_the_identity(model_dir, identity, tmp_path, publisher):
    src, _ = _shard(tmp_path, identity, "x", 5)
    tensorseal.encrypt_file(src, model_dir / "model-00002-of-00002.safetensors", [identity.recipient()],
                            options=SealOptions(identity=ModelIdentity("other", "1.0")))  # fmt: skip
    with pytest.raises(UsageError, match="disagree"):
        tensorseal.sign_directory(model_dir, [publisher])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="no sealed file"):
        tensorseal.sign_directory(empty, [publisher])


def test_cli_directory(model_dir, tmp_path, capsys):
    key = tmp_path / "pub.key"
    assert main(["keygen", "--signing", "-o", str(key)]) == 0
    capsys.readouterr()
    assert main(["keygen", "-y", str(key)]) == 0
    pub = capsys.readouterr().out.strip()
    assert main(["sign", str(model_dir), "--sign-key", str(key)]) == 0
    assert main(["verify", str(model_dir), "--signer", pub]) == 0
    (model_dir / "model-00002-of-00002.safetensors").unlink()
    assert main(["verify", str(model_dir), "--signer", pub]) == 5
    assert "missing: model-00002-of-00002.safetensors" in capsys.readouterr().err
    assert main(["verify", str(model_dir)]) == 2


def test_require_encrypted_refuses_a_signed_directory_with_a_plain_shard(model_dir, publisher, tmp_path, capsys):
    """A publisher (or a build script) signing a directory that holds a plain shard: the
    manifest is valid, so only --require-encrypted stops it."""
    save_file({"w": np.ones(10, np.float32)}, model_dir / "model-00002-of-00002.safetensors")  # plain replaces sealed
    tensorseal.sign_directory(model_dir, [publisher])
    tensorseal.verify_directory(model_dir, [publisher.public_key()])  # authentic, but plain
    with pytest.raises(NotSealedError, match="model-00002-of-00002.safetensors is not sealed"):
        tensorseal.verify_directory(model_dir, [publisher.public_key()], require_encrypted=True)
    pub = str(publisher.public_key())
    assert main(["verify", str(model_dir), "--signer", pub, "-q"]) == 0
    assert main(["verify", str(model_dir), "--signer", pub, "--require-encrypted", "-q"]) == 3
    assert "encryption is required" in capsys.readouterr().err
