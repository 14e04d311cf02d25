"""Key rotation with key services, from the CLI: a rotated Transit key keeps old files
readable until `rewrap` moves them to the latest version; `rewrap --remove awskms:A
--add -r awskms:B` moves a file from one KMS key to another, with no identity flag (the
key services the file names are used with the credentials in the environment)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from tensorseal.cli import main
from tensorseal.reader import SealedFile
from tensorseal.recipients import X25519Identity
from tensorseal.recipients.vault_transit import key_version


def _model(tmp_path):
    from safetensors.numpy import save_file

    src = tmp_path / "model.safetensors"
    save_file({"w": np.arange(3000, dtype=np.float32)}, src)
    return src


def _stanzas(path):
    with SealedFile(path) as f:
        return list(f.header.recipients)


def test_transit_rotation_then_rewrap_to_the_latest_version(vault_env, vault_admin, tmp_path, capsys):
    pytest.importorskip("hvac")
    name = f"model-kek-{uuid.uuid4().hex[:8]}"
    vault_admin.secrets.transit.create_key(name=name)
    src, sealed = _model(tmp_path), tmp_path / "m.tseal"
    assert main(["encrypt", str(src), "-o", str(sealed), "-r", f"vault:transit/{name}", "--name", "m", "-q"]) == 0
    vault_admin.secrets.transit.rotate_key(name=name)
    out = tmp_path / "out.safetensors"
    assert main(["decrypt", str(sealed), "-o", str(out), "-q"]) == 0  # old version still decrypts
    assert out.read_bytes() == src.read_bytes()
    assert key_version(_stanzas(sealed)[0]) == 1
    assert main(["rewrap", str(sealed), "-r", f"vault:transit/{name}", "-q"]) == 0  # no -i: the file names the key
    assert key_version(_stanzas(sealed)[0]) == 2
    vault_admin.secrets.transit.update_key_configuration(name=name, min_decryption_version=2)
    assert main(["verify", str(sealed), "-q"]) == 0
    capsys.readouterr()


def test_move_a_file_from_one_kms_key_to_another(aws_env, tmp_path, capsys):
    boto3 = pytest.importorskip("boto3")
    kms = boto3.client("kms")
    a, b = (kms.create_key()["KeyMetadata"]["Arn"] for _ in range(2))
    recovery = X25519Identity.generate()
    src, sealed = _model(tmp_path), tmp_path / "m.tseal"
    assert main(["encrypt", str(src), "-o", str(sealed), "-r", f"awskms:{a}", "-r", str(recovery.recipient()), "-q"]) == 0
    assert main(["rewrap", str(sealed), "--remove", f"awskms:{a}", "--add", "-r", f"awskms:{b}"]) == 0
    assert "1 kept, 1 added, 1 removed" in capsys.readouterr().err
    kinds = [(s.type, s.args[0] if s.type == "aws-kms" else None) for s in _stanzas(sealed)]
    assert kinds == [("X25519", None), ("aws-kms", b)]
    assert main(["verify", str(sealed), "-q"]) == 0  # no flag: opens through key B
    ident = tmp_path / "recovery.txt"
    ident.write_text(f"{recovery}\n")
    assert main(["verify", str(sealed), "-i", str(ident), "-q"]) == 0  # the offline recovery key still opens it
