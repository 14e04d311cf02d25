"""KeyContext, recipient strings of the key services, and ambient identities (no service
is contacted by anything here)."""

from __future__ import annotations

import struct
import sys

import pytest

from tensorseal.errors import InvalidKeyError, UsageError
from tensorseal.format.header import ModelIdentity, Stanza
from tensorseal.recipients import (
    AwsKmsKey,
    AzureKeyVaultKey,
    GcpKmsKey,
    KeyContext,
    KeyringKey,
    VaultTransitKey,
    X25519Identity,
    ambient_identities,
    parse_recipient,
)

from ..conftest import key_pair
from .conftest import CONTEXT, FILE_KEY, OTHER_CONTEXT

GCP = "projects/p/locations/global/keyRings/r/cryptoKeys/k"
AZURE = "https://v.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef"
ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_encryption_context_omits_absent_members():
    assert KeyContext().encryption_context() == {"tensorseal": "v1"}
    assert KeyContext(ModelIdentity(name="m")).encryption_context() == {"tensorseal": "v1", "name": "m"}
    assert CONTEXT.encryption_context() == {
        "tensorseal": "v1", "name": "llama-3-8b", "version": "2024-05", "file": "model-00001-of-00002.safetensors",
    }  # fmt: skip


def test_aad_is_canonical_and_unambiguous():
    def field(s: bytes) -> bytes:
        return struct.pack(">I", len(s)) + s

    assert KeyContext().aad() == b"tensorseal/v1/key-context" + bytes(12)
    assert KeyContext(ModelIdentity(name="m", file="f\u00e9")).aad() == (
        b"tensorseal/v1/key-context" + field(b"m") + field(b"") + field("f\u00e9".encode())
    )
    # moving bytes between members changes the AAD
    assert KeyContext(ModelIdentity(name="ab")).aad() != KeyContext(ModelIdentity(name="a", version="b")).aad()
    assert KeyContext(ModelIdentity(version="x")).aad() != KeyContext(ModelIdentity(file="x")).aad()
    assert CONTEXT.aad() != OTHER_CONTEXT.aad() and CONTEXT == KeyContext(CONTEXT.identity)


@pytest.mark.parametrize("kind", ["x25519", "symmetric", "passphrase"])
def test_offline_key_types_accept_and_ignore_the_context(kind):
    recipient, identity = key_pair(kind)
    stanzas = recipient.wrap(FILE_KEY, CONTEXT)
    assert identity.unwrap(stanzas, OTHER_CONTEXT) == FILE_KEY  # bound by the header MAC instead
    assert identity.unwrap(recipient.wrap(FILE_KEY)) == FILE_KEY


@pytest.mark.parametrize(
    "text, cls",
    [
        (f"awskms:{ARN}", AwsKmsKey),
        ("awskms:alias/models", AwsKmsKey),
        ("vault:transit/models", VaultTransitKey),
        (f"gcpkms:{GCP}", GcpKmsKey),
        (f"azurekv:{AZURE}", AzureKeyVaultKey),
        ("keyring:tensorseal/models", KeyringKey),
    ],
)
def test_service_recipient_strings_round_trip(text, cls):
    key = parse_recipient(f"  {text}\n")
    assert type(key) is cls and str(key) == text


def test_unknown_recipient_hint_lists_the_services():
    with pytest.raises(InvalidKeyError) as info:
        parse_recipient("kms:whatever")
    assert "awskms:" in info.value.hint and "keyring:" in info.value.hint


def test_ambient_identities_come_from_the_stanzas():
    x = X25519Identity.generate()
    stanzas = [
        *x.recipient().wrap(FILE_KEY),
        Stanza("aws-kms", (ARN,), b"blob1"),
        Stanza("vault-transit", ("transit", "k"), b"vault:v1:AAAA"),
        Stanza("aws-kms", (ARN,), b"blob2"),  # same key twice: one identity
        Stanza("gcp-kms", (GCP,), b"c"),
        Stanza("azure-kv", (AZURE, "RSA-OAEP-256"), b"w"),
        Stanza("keyring", ("svc", "name", "AAAAAAAAAAAAAAAAAAAAAA=="), b"k"),
        Stanza("some-future-type", ("x",), b"y"),
        Stanza("aws-kms", ("has space",), b"z"),  # malformed: no identity from it
    ]
    found = [str(i) for i in ambient_identities(stanzas)]
    assert sorted(found) == sorted(
        [f"awskms:{ARN}", "vault:transit/k", f"gcpkms:{GCP}", f"azurekv:{AZURE}", "keyring:svc/name"]
    )
    assert ambient_identities(x.recipient().wrap(FILE_KEY)) == []
    skipped = ambient_identities(stanzas, skip=[AwsKmsKey(ARN), x])
    assert f"awskms:{ARN}" not in [str(i) for i in skipped] and len(skipped) == 4


def test_missing_sdk_is_a_usage_error_with_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.cloud.kms", None)  # as if google-cloud-kms were not installed
    with pytest.raises(UsageError) as info:
        GcpKmsKey(GCP).wrap(FILE_KEY, CONTEXT)
    assert "tensorseal[gcp]" in (info.value.hint or "")
    # ambient identities whose SDK is installed are tried first
    stanzas = [Stanza("gcp-kms", (GCP,), b"c"), Stanza("keyring", ("svc", "name", "AAAAAAAAAAAAAAAAAAAAAA=="), b"k")]
    assert [type(i) for i in ambient_identities(stanzas)] == [KeyringKey, GcpKmsKey]
