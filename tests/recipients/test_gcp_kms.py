"""GCP KMS recipients, tested at the SDK's transport boundary: the real
``KeyManagementServiceClient`` over real gRPC to the fake service in fake_gcp_kms.py
(no Cloud KMS emulator exists)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("google.cloud.kms", reason="google-cloud-kms is not installed")
pytest.importorskip("grpc", reason="grpcio is not installed")

import tensorseal.numpy as tsnp
from tensorseal.errors import (
    FormatError,
    HeaderAuthenticationError,
    IncorrectIdentityError,
    InvalidKeyError,
    KeyServiceError,
)
from tensorseal.format.header import ModelIdentity, Stanza
from tensorseal.recipients import GcpKmsKey, KeyContext, X25519Identity, parse_recipient

from .conftest import CONTEXT, FILE_KEY, OTHER_CONTEXT
from .fake_gcp_kms import FakeKms

NAME = "projects/acme/locations/europe-west4/keyRings/models/cryptoKeys/llama-kek"


@pytest.fixture
def fake():
    with FakeKms() as server:
        server.create_key(NAME)
        yield server


def test_round_trip_sends_the_context_as_aad(fake):
    key = parse_recipient(f"gcpkms:{NAME}")
    assert isinstance(key, GcpKmsKey) and str(key) == f"gcpkms:{NAME}"
    key = GcpKmsKey(NAME, client=fake.client())
    stanzas = key.wrap(FILE_KEY, CONTEXT)
    assert [(s.type, s.args) for s in stanzas] == [("gcp-kms", (NAME,))]
    assert key.unwrap(stanzas, CONTEXT) == FILE_KEY
    (op1, enc), (op2, dec) = fake.requests
    assert (op1, enc.name, enc.plaintext, enc.additional_authenticated_data) == (
        "Encrypt",
        NAME,
        FILE_KEY,
        CONTEXT.aad(),
    )
    assert (op2, dec.name, dec.ciphertext, dec.additional_authenticated_data) == (
        "Decrypt", NAME, stanzas[0].body, CONTEXT.aad(),
    )  # fmt: skip


def test_wrong_context_and_changed_stanza_are_refused(fake):
    key = GcpKmsKey(NAME, client=fake.client())
    stanzas = key.wrap(FILE_KEY, CONTEXT)
    with pytest.raises(HeaderAuthenticationError, match="model identity"):
        key.unwrap(stanzas, OTHER_CONTEXT)
    body = bytearray(stanzas[0].body)
    body[-1] ^= 1
    with pytest.raises(HeaderAuthenticationError):
        key.unwrap([Stanza("gcp-kms", (NAME,), bytes(body))], CONTEXT)


def test_rotation_and_service_errors(fake):
    key = GcpKmsKey(NAME, client=fake.client())
    old = key.wrap(FILE_KEY, CONTEXT)
    fake.keys[NAME].rotate()
    new = key.wrap(FILE_KEY, CONTEXT)
    assert key.unwrap(old, CONTEXT) == key.unwrap(new, CONTEXT) == FILE_KEY  # old versions still decrypt
    fake.keys[NAME].disabled.add(1)
    with pytest.raises(KeyServiceError, match="FailedPrecondition"):
        key.unwrap(old, CONTEXT)
    assert key.unwrap([*old, *new], CONTEXT) == FILE_KEY  # a refused stanza moves on to the next
    missing = NAME.replace("llama-kek", "missing")
    with pytest.raises(KeyServiceError, match="NotFound"):
        GcpKmsKey(missing, client=fake.client()).wrap(FILE_KEY, CONTEXT)


def test_not_mine_malformed_and_strings(fake):
    stanzas = GcpKmsKey(NAME, client=fake.client()).wrap(FILE_KEY, CONTEXT)
    other = GcpKmsKey(NAME.replace("llama-kek", "other"), client=fake.client())
    with pytest.raises(IncorrectIdentityError):
        other.unwrap(stanzas, CONTEXT)
    with pytest.raises(FormatError):
        other.unwrap([Stanza("gcp-kms", (), b"x")], CONTEXT)
    for bad in ("gcpkms:", "gcpkms:projects/p/locations/l/keyRings/r", f"gcpkms:{NAME}/cryptoKeyVersions/1"):
        with pytest.raises(InvalidKeyError):
            parse_recipient(bad)


def test_sealed_file_with_gcp_and_x25519(fake, tmp_path):
    recovery = X25519Identity.generate()
    key = GcpKmsKey(NAME, client=fake.client())
    tensors = {"w": np.arange(1000, dtype=np.float32)}
    path = tmp_path / "m.tseal"
    tsnp.save_file(tensors, path, [key, recovery.recipient()], name="model-a", version="7")
    assert fake.requests[0][1].additional_authenticated_data == KeyContext(ModelIdentity("model-a", "7")).aad()
    assert np.array_equal(tsnp.load_file(path, [key])["w"], tensors["w"])
    assert np.array_equal(tsnp.load_file(path, [recovery])["w"], tensors["w"])
