"""Azure Key Vault recipients, tested at the SDK's transport boundary: the real
``CryptographyClient`` over real HTTPS to the fake Key Vault in fake_azure_kv.py (no Key
Vault emulator exists)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("azure.keyvault.keys", reason="azure-keyvault-keys is not installed")
pytest.importorskip("trustme", reason="trustme is not installed")

from azure.core.credentials import AccessToken

import tensorseal.numpy as tsnp
from tensorseal.errors import (
    FormatError,
    HeaderAuthenticationError,
    IncorrectIdentityError,
    InvalidKeyError,
    KeyServiceError,
    UsageError,
)
from tensorseal.format.header import Stanza
from tensorseal.recipients import AzureKeyVaultKey, X25519Identity, parse_recipient

from .conftest import CONTEXT, FILE_KEY, OTHER_CONTEXT
from .fake_azure_kv import TOKEN, FakeKeyVault, unb64url


class StaticCredential:
    """A TokenCredential (the SDK's credential protocol) that hands out the fake's token."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)


@pytest.fixture
def vault(tmp_path):
    with FakeKeyVault(tmp_path) as fake:
        yield fake


def make_key(vault: FakeKeyVault, key_id: str, algorithm: str = "RSA-OAEP-256") -> AzureKeyVaultKey:
    kwargs = {"connection_verify": vault.ca_file, "verify_challenge_resource": False, "retry_total": 0}
    return AzureKeyVaultKey(key_id, algorithm=algorithm, credential=StaticCredential(), client_kwargs=kwargs)


def test_rsa_round_trip_over_the_real_pipeline(vault):
    versioned = vault.create_key("llama-kek")
    unversioned = versioned.rsplit("/", 1)[0]
    key = make_key(vault, unversioned)
    stanzas = key.wrap(FILE_KEY, CONTEXT)
    assert [(s.type, s.args) for s in stanzas] == [("azure-kv", (versioned, "RSA-OAEP-256"))]  # version recorded
    assert len(stanzas[0].body) == 256
    assert key.unwrap(stanzas, CONTEXT) == FILE_KEY
    calls = [(r["method"], r["path"].split("?")[0], r["auth"] is not None) for r in vault.requests]
    assert ("POST", f"/keys/llama-kek/{versioned.rsplit('/', 1)[1]}/unwrapkey", True) in calls
    assert any(not authed for _, _, authed in calls)  # the SDK answered the auth challenge
    unwrap = next(r for r in vault.requests if r["path"].split("?")[0].endswith("/unwrapkey") and r["body"])
    assert unwrap["body"]["alg"] == "RSA-OAEP-256" and unb64url(unwrap["body"]["value"]) == stanzas[0].body
    # RSA wrap takes no AAD: the service does not bind the context (documented)
    assert "aad" not in unwrap["body"]


def test_a256gcm_binds_the_context(vault):
    key_id = vault.create_key("hsm-kek", kty="oct-HSM")
    parsed = parse_recipient(f"azurekv:{key_id}#A256GCM")
    assert isinstance(parsed, AzureKeyVaultKey) and parsed.algorithm == "A256GCM"
    assert str(parsed) == f"azurekv:{key_id}#A256GCM"
    key = make_key(vault, key_id, "A256GCM")
    stanzas = key.wrap(FILE_KEY, CONTEXT)
    assert stanzas[0].args == (key_id, "A256GCM") and len(stanzas[0].body) == 60
    encrypt = next(r for r in vault.requests if r["path"].split("?")[0].endswith("/encrypt") and r["body"])
    assert unb64url(encrypt["body"]["aad"]) == CONTEXT.aad()
    assert key.unwrap(stanzas, CONTEXT) == FILE_KEY
    with pytest.raises(HeaderAuthenticationError, match="model identity"):
        key.unwrap(stanzas, OTHER_CONTEXT)


def test_rotation_disabled_and_missing_keys(vault):
    v1 = vault.create_key("kek")
    key = make_key(vault, v1.rsplit("/", 1)[0])
    old = key.wrap(FILE_KEY, CONTEXT)
    v2 = f"{vault.url}/keys/kek/{vault.keys['kek'].rotate()}"
    new = key.wrap(FILE_KEY, CONTEXT)
    assert (old[0].args[0], new[0].args[0]) == (v1, v2)
    assert key.unwrap(old, CONTEXT) == key.unwrap(new, CONTEXT) == FILE_KEY
    with pytest.raises(IncorrectIdentityError):  # a key pinned to v2 does not claim v1's stanza
        make_key(vault, v2).unwrap(old, CONTEXT)
    vault.keys["kek"].disabled.add(v1.rsplit("/", 1)[1])
    with pytest.raises(KeyServiceError, match="403"):
        key.unwrap(old, CONTEXT)
    assert key.unwrap([*old, *new], CONTEXT) == FILE_KEY
    with pytest.raises(KeyServiceError, match="404"):
        make_key(vault, f"{vault.url}/keys/missing").wrap(FILE_KEY, CONTEXT)
    body = bytearray(new[0].body)
    body[0] ^= 1
    with pytest.raises(HeaderAuthenticationError):
        key.unwrap([Stanza("azure-kv", new[0].args, bytes(body))], CONTEXT)


def test_unknown_version_is_a_usage_error(vault):
    """Without keys/get permission the SDK wraps remotely and does not report the version."""
    key_id = vault.create_key("kek")
    vault.forbid_get = True
    with pytest.raises(UsageError, match="version"):
        make_key(vault, key_id.rsplit("/", 1)[0]).wrap(FILE_KEY, CONTEXT)
    stanzas = make_key(vault, key_id).wrap(FILE_KEY, CONTEXT)  # a versioned URL works
    assert make_key(vault, key_id).unwrap(stanzas, CONTEXT) == FILE_KEY


def test_strings_and_malformed_stanzas(vault):
    key_id = vault.create_key("kek")
    key = make_key(vault, key_id)
    for bad in ("azurekv:", "azurekv:http://v/keys/k", "azurekv:https://v/secrets/k", f"azurekv:{key_id}#RSA1_5"):
        with pytest.raises(InvalidKeyError):
            parse_recipient(bad)
    with pytest.raises(FormatError):
        key.unwrap([Stanza("azure-kv", (key_id,), b"x")], CONTEXT)
    with pytest.raises(FormatError):
        key.unwrap([Stanza("azure-kv", (key_id.rsplit("/", 1)[0], "RSA-OAEP-256"), b"x")], CONTEXT)
    with pytest.raises(FormatError):
        key.unwrap([Stanza("azure-kv", (key_id, "RSA1_5"), b"x")], CONTEXT)


def test_sealed_file_with_azure_and_x25519(vault, tmp_path):
    recovery = X25519Identity.generate()
    key = make_key(vault, vault.create_key("kek"))
    tensors = {"w": np.arange(1000, dtype=np.float32)}
    path = tmp_path / "m.tseal"
    tsnp.save_file(tensors, path, [key, recovery.recipient()])
    assert np.array_equal(tsnp.load_file(path, [key])["w"], tensors["w"])
    assert np.array_equal(tsnp.load_file(path, [recovery])["w"], tensors["w"])
