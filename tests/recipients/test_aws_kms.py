"""AWS KMS recipients against moto's KMS, a real HTTP server on loopback (see conftest)."""

from __future__ import annotations

import numpy as np
import pytest

import tensorseal.numpy as tsnp
from tensorseal.errors import (
    FormatError,
    HeaderAuthenticationError,
    IncorrectIdentityError,
    InvalidKeyError,
    KeyServiceError,
    NoIdentityMatchError,
)
from tensorseal.format.header import Stanza
from tensorseal.reader import SealedFile
from tensorseal.recipients import AwsKmsKey, X25519Identity, ambient_identities, parse_recipient

from .conftest import CONTEXT, FILE_KEY, OTHER_CONTEXT, replace_in_header

boto3 = pytest.importorskip("boto3", reason="boto3 is not installed")


@pytest.fixture
def kms(aws_env):
    return boto3.client("kms")  # endpoint, region and credentials from the environment only


@pytest.fixture
def kms_key(kms) -> dict:
    return kms.create_key(Description="tensorseal test KEK")["KeyMetadata"]


def test_round_trip_binds_the_encryption_context(kms, kms_key):
    key = parse_recipient(f"awskms:{kms_key['Arn']}")
    assert isinstance(key, AwsKmsKey) and str(key) == f"awskms:{kms_key['Arn']}"
    stanzas = key.wrap(FILE_KEY, CONTEXT)
    assert [(s.type, s.args) for s in stanzas] == [("aws-kms", (kms_key["Arn"],))]
    assert FILE_KEY not in stanzas[0].body
    assert key.unwrap(stanzas, CONTEXT) == FILE_KEY
    # KMS itself holds the binding: the blob does not decrypt without the model's context
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(CiphertextBlob=stanzas[0].body, KeyId=kms_key["Arn"])
    expected = {"tensorseal": "v1", "name": "llama-3-8b", "version": "2024-05", "file": CONTEXT.identity.file}
    assert CONTEXT.encryption_context() == expected
    assert kms.decrypt(CiphertextBlob=stanzas[0].body, EncryptionContext=expected)["Plaintext"] == FILE_KEY


def test_wrong_encryption_context_is_refused(kms_key):
    key = AwsKmsKey(kms_key["Arn"])
    stanzas = key.wrap(FILE_KEY, CONTEXT)
    with pytest.raises(HeaderAuthenticationError, match="model identity"):
        key.unwrap(stanzas, OTHER_CONTEXT)
    with pytest.raises(HeaderAuthenticationError):
        key.unwrap(stanzas)  # no context at all


def test_alias_and_key_id_forms(kms, kms_key):
    kms.create_alias(AliasName="alias/tensorseal-model", TargetKeyId=kms_key["KeyId"])
    alias_arn = kms_key["Arn"].replace(f":key/{kms_key['KeyId']}", ":alias/tensorseal-model")
    by_alias = parse_recipient("awskms:alias/tensorseal-model")
    stanzas = by_alias.wrap(FILE_KEY, CONTEXT)
    assert stanzas[0].args == (kms_key["Arn"],)  # the alias is resolved to the key when wrapping
    for form in ("alias/tensorseal-model", alias_arn, kms_key["KeyId"], kms_key["Arn"]):
        assert AwsKmsKey(form).unwrap(stanzas, CONTEXT) == FILE_KEY, form
    other = kms.create_key()["KeyMetadata"]
    with pytest.raises(IncorrectIdentityError):  # a stanza for another key is "not mine"
        AwsKmsKey(other["Arn"]).unwrap(stanzas, CONTEXT)
    with pytest.raises(IncorrectIdentityError):
        AwsKmsKey(other["KeyId"]).unwrap(stanzas, CONTEXT)


def test_unknown_key_is_a_key_service_error(kms_key):
    unknown = kms_key["Arn"].rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
    with pytest.raises(KeyServiceError, match="NotFoundException"):
        AwsKmsKey(unknown).wrap(FILE_KEY, CONTEXT)
    with pytest.raises(KeyServiceError, match="NotFoundException"):
        parse_recipient("awskms:alias/no-such-alias").wrap(FILE_KEY, CONTEXT)
    body = AwsKmsKey(kms_key["Arn"]).wrap(FILE_KEY, CONTEXT)[0].body
    with pytest.raises(KeyServiceError):  # a stanza naming a key that does not exist
        AwsKmsKey(unknown).unwrap([Stanza("aws-kms", (unknown,), body)], CONTEXT)


def test_disabled_key_is_a_key_service_error():
    """moto does not enforce key state (a disabled key still decrypts there), so this
    checks the error mapping at the SDK boundary with botocore's own Stubber."""
    from botocore.stub import Stubber

    arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    client = boto3.client("kms", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    stanza = Stanza("aws-kms", (arn,), b"\x01" * 120)
    with Stubber(client) as stub:
        stub.add_client_error("decrypt", "DisabledException", f"{arn} is disabled.", 400)
        stub.add_client_error("encrypt", "KMSInvalidStateException", f"{arn} is pending deletion.", 400)
        with pytest.raises(KeyServiceError, match="DisabledException") as info:
            AwsKmsKey(arn, client=client).unwrap([stanza], CONTEXT)
        assert "disabled" in (info.value.hint or "")
        with pytest.raises(KeyServiceError, match="KMSInvalidStateException"):
            AwsKmsKey(arn, client=client).wrap(FILE_KEY, CONTEXT)
        stub.assert_no_pending_responses()


def test_no_credentials_is_a_key_service_error(aws_env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(KeyServiceError, match="credentials"):
        AwsKmsKey("alias/anything").wrap(FILE_KEY, CONTEXT)


def test_malformed_stanzas_and_strings(kms_key):
    key = AwsKmsKey(kms_key["Arn"])
    with pytest.raises(FormatError):
        key.unwrap([Stanza("aws-kms", (), b"x")], CONTEXT)
    with pytest.raises(FormatError):
        key.unwrap([Stanza("aws-kms", (kms_key["Arn"], "extra"), b"x")], CONTEXT)
    for bad in ("awskms:", "awskms:has space", "awskms:" + "a" * 1025):
        with pytest.raises(InvalidKeyError):
            parse_recipient(bad)


def test_sealed_file_opens_with_no_flags_and_refuses_a_changed_identity(aws_env, kms_key, tmp_path):
    tensors = {"w": np.arange(5000, dtype=np.float32)}
    path = tmp_path / "m.tseal"
    tsnp.save_file(tensors, path, [f"awskms:{kms_key['Arn']}"], name="model-a", version="1")
    with SealedFile(path) as sealed:
        assert [s.type for s in sealed.header.recipients] == ["aws-kms"]
        assert [str(i) for i in ambient_identities(sealed.header.recipients)] == [f"awskms:{kms_key['Arn']}"]
    out = tsnp.load_file(path, None)  # credentials from the environment, no identity given
    assert np.array_equal(out["w"], tensors["w"])
    tampered = replace_in_header(path, b'"name":"model-a"', b'"name":"model-b"')
    with pytest.raises(HeaderAuthenticationError):
        tsnp.load_file(tampered, None)
    with pytest.raises(HeaderAuthenticationError):  # with a (wrong) explicit identity too
        tsnp.load_file(tampered, [X25519Identity.generate()])


def test_unreachable_service_after_explicit_identities(aws_env, kms_key, tmp_path, monkeypatch):
    from .conftest import free_port

    path = tmp_path / "m.tseal"
    tsnp.save_file({"w": np.ones(3)}, path, [AwsKmsKey(kms_key["Arn"])])
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(KeyServiceError):
        tsnp.load_file(path, [X25519Identity.generate()])
    with pytest.raises(NoIdentityMatchError):  # a file without key-service stanzas: nothing is contacted
        other = tmp_path / "x.tseal"
        tsnp.save_file({"w": np.ones(3)}, other, [X25519Identity.generate().recipient()])
        tsnp.load_file(other, None)


def test_cli_end_to_end(aws_env, kms_key, tmp_path, capsys):
    from safetensors.numpy import save_file

    from tensorseal.cli import main

    src, sealed, back = tmp_path / "model.safetensors", tmp_path / "m.tseal", tmp_path / "back.safetensors"
    save_file({"w": np.arange(3000, dtype=np.float32)}, src)
    assert main(["encrypt", str(src), "-o", str(sealed), "-r", f"awskms:{kms_key['Arn']}", "--name", "m", "-q"]) == 0
    assert main(["decrypt", str(sealed), "-o", str(back), "-q"]) == 0  # credentials from the environment only
    assert back.read_bytes() == src.read_bytes()
    capsys.readouterr()
    assert main(["inspect", str(sealed), "--json"]) == 0
    assert '"aws-kms"' in capsys.readouterr().out
    assert main(["encrypt", str(src), "-o", str(tmp_path / "x.tseal"), "-r", "awskms:"]) == 4  # unknown/empty key
    assert main(["encrypt", str(src), "-o", str(tmp_path / "y.tseal"), "-r", "notakey:abc"]) == 4
    assert "unknown recipient" in capsys.readouterr().err
