"""`tensorseal pull https://...`: verified before the rename, resumable, no half file."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tensorseal import client
from tensorseal.cli import main
from tensorseal.errors import AuthenticationError, ModelMismatchError, ServerError, SignatureError
from tensorseal.files import sign_file
from tensorseal.signing import SigningKey

from .conftest import client_args, make_model, start_server


def _url(server) -> str:
    return server.url + "/models/acme-llm/1.0"


def _kw(certs) -> dict:
    return {"cert": certs.client_cert, "key": certs.client_key, "ca": certs.ca}


def test_cli_pull_verifies_and_renames(server, certs, vendor, tmp_path, capsys):
    out = tmp_path / "m.tseal"
    signer = str(vendor.key.public_key())
    assert main(["pull", _url(server), "-o", str(out), *client_args(certs), "--signer", signer,
                 "--expect-name", "acme-llm", "--min-version", "1.0", "-i", str(vendor.master_file)]) == 0  # fmt: skip
    assert out.read_bytes() == vendor.model_file.read_bytes()
    err = capsys.readouterr().err
    assert "publisher signature (manifest)" in err and "segment tag(s)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tseal"]
    assert main(["pull", _url(server), "-o", str(out), *client_args(certs)]) == 2  # exists: --force
    assert main(["pull", _url(server), "-o", str(out), *client_args(certs), "--force", "-q"]) == 0


def test_default_output_name(server, certs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["pull", _url(server), *client_args(certs), "-q"]) == 0
    assert (tmp_path / "acme-llm-1.0.tseal").exists()


def test_untrusted_signer_leaves_no_file(server, certs, tmp_path):
    other = str(SigningKey.generate().public_key())
    out = tmp_path / "m.tseal"
    assert main(["pull", _url(server), "-o", str(out), *client_args(certs), "--signer", other]) == 5
    assert not list(tmp_path.iterdir())
    with pytest.raises(SignatureError, match="neither the manifest nor the file"):
        client.pull(_url(server), out, signers=[other], **_kw(certs))
    assert not list(tmp_path.iterdir())


def test_wrong_model_identity_leaves_no_file(server, certs, vendor, tmp_path):
    signer = vendor.key.public_key()
    with pytest.raises(ModelMismatchError, match="older than the minimum"):
        client.pull(_url(server), tmp_path / "m.tseal", signers=[signer], min_version="2.0", **_kw(certs))
    assert not list(tmp_path.iterdir())


def test_file_signature_counts_when_manifests_are_unsigned(certs, vendor, tmp_path):
    """A server without --sign-key serves unsigned manifests: the file's own publisher
    signature is what --signer checks then; an unsigned file is refused."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(vendor.model_file, models / "signed.tseal")
    # a second model, unsigned
    from tensorseal.recipients.master import MasterKey

    make_model(models / "unsigned.tseal", MasterKey.generate("other", "2"), None)
    srv = start_server(certs, vendor, tmp_path, models=models, activation=False, sign=False)
    try:
        signer = [vendor.key.public_key()]
        r = client.pull(srv.url + "/models/acme-llm/1.0", tmp_path / "a.tseal", signers=signer, **_kw(certs))
        assert r.signed_by == "file"
        with pytest.raises(SignatureError):
            client.pull(srv.url + "/models/other/2", tmp_path / "b.tseal", signers=signer, **_kw(certs))
        assert not (tmp_path / "b.tseal").exists() and not (tmp_path / "b.tseal.partial").exists()
        assert client.pull(srv.url + "/models/other/2", tmp_path / "b.tseal", **_kw(certs)).signed_by is None
    finally:
        srv.stop()


class Interrupt(Exception):
    pass


def test_interrupted_pull_resumes(server, certs, vendor, tmp_path, monkeypatch):
    monkeypatch.setattr(client, "SYNC_EVERY", 64 << 10)
    out = tmp_path / "m.tseal"
    seen = [0]

    def stop_midway(n: int) -> None:
        seen[0] += n
        if seen[0] > 600_000:
            raise Interrupt

    with pytest.raises(Interrupt):
        client.pull(_url(server), out, progress=stop_midway, **_kw(certs))
    assert not out.exists()
    side = json.loads((tmp_path / "m.tseal.partial.json").read_text())
    assert 0 < side["done"] < vendor.model_file.stat().st_size
    result = client.pull(_url(server), out, signers=[vendor.key.public_key()], **_kw(certs))
    assert result.resumed_bytes == side["done"] and result.digest_checked
    assert out.read_bytes() == vendor.model_file.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tseal"]


def test_stale_etag_starts_over(server, certs, vendor, tmp_path):
    """The sidecar's ETag is not the server's: If-Range gets the whole file, written from 0."""
    out = tmp_path / "m.tseal"
    data = vendor.model_file.read_bytes()
    client.pull(_url(server), out, **_kw(certs))
    side = tmp_path / "m.tseal.partial.json"
    (tmp_path / "m.tseal.partial").write_bytes(b"\xff" * 100_000)
    import base64

    from tensorseal.reader import SealedFile

    with SealedFile(vendor.model_file) as f:
        digest = base64.b64encode(f.digest()).decode()
    side.write_text(json.dumps({"version": 1, "url": _url(server), "etag": '"stale"', "size": len(data),
                                "digest": digest, "done": 100_000}))  # fmt: skip
    os.unlink(out)
    result = client.pull(_url(server), out, **_kw(certs))
    assert result.resumed_bytes == 0 and out.read_bytes() == data


def test_corrupted_partial_is_caught_and_discarded(server, certs, vendor, tmp_path):
    """Garbage in the bytes a sidecar calls done: the digests catch it, nothing is renamed,
    and the partial download is discarded."""
    out = tmp_path / "m.tseal"
    data = vendor.model_file.read_bytes()
    etag = '"' + __import__("blake3").blake3(data).hexdigest()[:32] + '"'
    import base64

    from tensorseal.reader import SealedFile

    with SealedFile(vendor.model_file) as f:
        digest = base64.b64encode(f.digest()).decode()
    (tmp_path / "m.tseal.partial").write_bytes(data[:1000] + b"\x00" * 299_000)
    (tmp_path / "m.tseal.partial.json").write_text(json.dumps(
        {"version": 1, "url": _url(server), "etag": etag, "size": len(data), "digest": digest, "done": 300_000}))  # fmt: skip
    with pytest.raises(ServerError, match="BLAKE3"):
        client.pull(_url(server), out, **_kw(certs))
    assert not list(tmp_path.iterdir())


def test_model_changed_in_place_on_the_server_is_refused(certs, vendor, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(vendor.model_file, models / "m.tseal")
    srv = start_server(certs, vendor, tmp_path, models=models, activation=False)
    try:
        with open(models / "m.tseal", "r+b") as f:  # tamper in place after the catalogue was built
            f.seek(5000)
            f.write(b"\x00" * 16)
        with pytest.raises(ServerError, match="changed on disk"):
            client.pull(_url(srv), tmp_path / "out.tseal", **_kw(certs))
        assert not (tmp_path / "out.tseal").exists()
    finally:
        srv.stop()


def test_tampered_file_is_caught_by_the_manifest_digest(certs, vendor, tmp_path):
    """A server whose file was tampered with before it started signs a manifest of the bad
    bytes, but the file's own digest still fails... unless checked against a trusted
    signature: the manifest is signed by the server key only."""
    models = tmp_path / "models"
    models.mkdir()
    raw = bytearray(vendor.model_file.read_bytes())
    raw[len(raw) // 2] ^= 1
    (models / "m.tseal").write_bytes(bytes(raw))
    rogue = SigningKey.generate()
    (tmp_path / "rogue.key").write_text(f"{rogue}\n")
    from dataclasses import replace

    srv = start_server(certs, replace(vendor, key_file=tmp_path / "rogue.key"), tmp_path, models=models, activation=False)
    try:
        # the vendor's key: the rogue manifest does not count, and the file's signature fails
        with pytest.raises(SignatureError):
            client.pull(_url(srv), tmp_path / "out.tseal", signers=[vendor.key.public_key()], **_kw(certs))
        # with the master key, the tags catch it too
        from tensorseal.recipients.master import MasterKey

        with pytest.raises(AuthenticationError):
            client.pull(_url(srv), tmp_path / "out.tseal", identities=[MasterKey.from_file(vendor.master_file)], **_kw(certs))
        assert not (tmp_path / "out.tseal").exists() and not (tmp_path / "out.tseal.partial").exists()
    finally:
        srv.stop()


def test_resigned_file_changes_the_etag(vendor, tmp_path):
    """Re-signing changes bytes but not the file digest: the ETag covers every byte."""
    from tensorseal.server.catalogue import Catalogue

    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(vendor.model_file, d / "m.tseal")
    a = Catalogue(d)
    etag_a = next(iter(a)).etag
    a.close()
    sign_file(d / "m.tseal", [SigningKey.generate()])
    b = Catalogue(d)
    assert next(iter(b)).etag != etag_a
    b.close()


def test_url_and_option_refusals(server, certs, tmp_path):
    assert main(["pull", "http://127.0.0.1:1/models/a/1", "-o", str(tmp_path / "x"), "--ca", str(certs.ca)]) == 2
    assert main(["pull", server.url + "/models/../x", "-o", str(tmp_path / "x"), *client_args(certs)]) == 2
    assert main(["pull", _url(server), "-o", str(tmp_path / "x")]) == 2  # no --ca
    assert main(["pull", "s3://bucket/key", "-o", str(tmp_path / "x"), "--ca", str(certs.ca)]) == 2
    with pytest.raises(ServerError, match="cannot connect"):
        client.pull("https://127.0.0.1:1/models/a/1", tmp_path / "x", **_kw(certs))
    assert not list(tmp_path.iterdir())
