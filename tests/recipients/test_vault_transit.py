"""Vault / OpenBao Transit recipients against a real OpenBao dev server (see conftest)."""

from __future__ import annotations

import base64
import uuid

import numpy as np
import pytest

import tensorseal.numpy as tsnp
from tensorseal.errors import (
    FormatError,
    HeaderAuthenticationError,
    IncorrectIdentityError,
    InvalidKeyError,
    KeyServiceError,
)
from tensorseal.format.header import Stanza
from tensorseal.recipients import VaultTransitKey, X25519Identity, parse_recipient
from tensorseal.recipients.vault_transit import key_version

from .conftest import CONTEXT, FILE_KEY, OTHER_CONTEXT, replace_in_header

pytest.importorskip("hvac", reason="hvac is not installed")


@pytest.fixture
def transit_key(vault_env, vault_admin) -> str:
    name = f"model-kek-{uuid.uuid4().hex[:8]}"
    vault_admin.secrets.transit.create_key(name=name)  # aes256-gcm96, the default
    return name


def test_round_trip_binds_the_model_identity(transit_key, vault_admin):
    key = parse_recipient(f"vault:transit/{transit_key}")
    assert isinstance(key, VaultTransitKey) and str(key) == f"vault:transit/{transit_key}"
    stanzas = key.wrap(FILE_KEY, CONTEXT)
    assert [(s.type, s.args) for s in stanzas] == [("vault-transit", ("transit", transit_key))]
    assert stanzas[0].body.startswith(b"vault:v1:") and key_version(stanzas[0]) == 1
    assert key.unwrap(stanzas, CONTEXT) == FILE_KEY
    # the server holds the binding: decrypting with the model's AAD works, without it not
    ciphertext = stanzas[0].body.decode()
    aad = base64.b64encode(CONTEXT.aad()).decode()
    plain = vault_admin.secrets.transit.decrypt_data(name=transit_key, ciphertext=ciphertext, associated_data=aad)
    assert base64.b64decode(plain["data"]["plaintext"]) == FILE_KEY
    with pytest.raises(Exception, match="message authentication failed"):
        vault_admin.secrets.transit.decrypt_data(name=transit_key, ciphertext=ciphertext)


def test_wrong_context_is_refused(transit_key):
    key = VaultTransitKey("transit", transit_key)
    stanzas = key.wrap(FILE_KEY, CONTEXT)
    with pytest.raises(HeaderAuthenticationError, match="model identity"):
        key.unwrap(stanzas, OTHER_CONTEXT)


def test_recipient_strings_and_other_keys(transit_key, vault_admin):
    assert (VaultTransitKey.parse("vault:k").mount, VaultTransitKey.parse("vault:k").key) == ("transit", "k")
    nested = VaultTransitKey.parse("vault:teams/ml/transit/k")
    assert (nested.mount, nested.key) == ("teams/ml/transit", "k")
    for bad in ("vault:", "vault:transit/", "vault:a b/c"):
        with pytest.raises(InvalidKeyError):
            parse_recipient(bad)
    stanzas = VaultTransitKey("transit", transit_key).wrap(FILE_KEY, CONTEXT)
    with pytest.raises(IncorrectIdentityError):
        VaultTransitKey("transit", transit_key + "-other").unwrap(stanzas, CONTEXT)
    with pytest.raises(IncorrectIdentityError):
        VaultTransitKey("other-mount", transit_key).unwrap(stanzas, CONTEXT)
    with pytest.raises(FormatError):
        VaultTransitKey("transit", transit_key).unwrap([Stanza("vault-transit", ("transit",), b"x")], CONTEXT)
    with pytest.raises(FormatError):
        VaultTransitKey("transit", transit_key).unwrap(
            [Stanza("vault-transit", ("transit", transit_key), b"not a transit ciphertext")], CONTEXT
        )


def test_rotation_old_stanzas_still_open_and_rewrap_moves_to_the_latest(transit_key, vault_admin):
    key = VaultTransitKey("transit", transit_key)
    old = key.wrap(FILE_KEY, CONTEXT)[0]
    vault_admin.secrets.transit.rotate_key(name=transit_key)
    vault_admin.secrets.transit.rotate_key(name=transit_key)
    assert key.unwrap([old], CONTEXT) == FILE_KEY  # Transit keeps old versions for decryption
    new = key.rewrap(old, CONTEXT)
    assert (key_version(old), key_version(new)) == (1, 3) and new.args == old.args
    assert key.unwrap([new], CONTEXT) == FILE_KEY
    with pytest.raises(HeaderAuthenticationError):  # rewrap keeps the binding
        key.unwrap([new], OTHER_CONTEXT)
    # retire the old version: old stanzas are refused by the service, new ones still open
    vault_admin.secrets.transit.update_key_configuration(name=transit_key, min_decryption_version=3)
    with pytest.raises(KeyServiceError):
        key.unwrap([old], CONTEXT)
    assert key.unwrap([old, new], CONTEXT) == FILE_KEY  # the refused stanza is skipped
    with pytest.raises(IncorrectIdentityError):
        VaultTransitKey("transit", "another").rewrap(old, CONTEXT)


def test_service_errors(transit_key, vault_admin, monkeypatch):
    key = VaultTransitKey("transit", transit_key)
    stanzas = key.wrap(FILE_KEY, CONTEXT)
    with pytest.raises(KeyServiceError):  # the key does not exist
        VaultTransitKey("transit", "no-such-key").unwrap(
            [Stanza("vault-transit", ("transit", "no-such-key"), stanzas[0].body)], CONTEXT
        )
    vault_admin.secrets.transit.create_key(name=transit_key + "-derived", derived=True)
    with pytest.raises(KeyServiceError) as info:  # no silent loss of the binding
        VaultTransitKey("transit", transit_key + "-derived").wrap(FILE_KEY, CONTEXT)
    assert "non-derived" in (info.value.hint or "")
    vault_admin.secrets.transit.create_key(name=transit_key + "-rsa", key_type="rsa-2048")
    with pytest.raises(KeyServiceError, match="non-AEAD"):
        VaultTransitKey("transit", transit_key + "-rsa").wrap(FILE_KEY, CONTEXT)
    monkeypatch.setenv("VAULT_TOKEN", "not-a-token")
    with pytest.raises(KeyServiceError):
        VaultTransitKey("transit", transit_key).unwrap(stanzas, CONTEXT)
    monkeypatch.delenv("VAULT_ADDR")
    with pytest.raises(KeyServiceError, match="VAULT_ADDR"):
        VaultTransitKey("transit", transit_key).unwrap(stanzas, CONTEXT)


def test_sealed_file_with_vault_and_x25519(vault_env, transit_key, tmp_path, monkeypatch):
    recovery = X25519Identity.generate()
    tensors = {"w": np.arange(3000, dtype=np.float32)}
    path = tmp_path / "m.tseal"
    tsnp.save_file(tensors, path, [f"vault:transit/{transit_key}", recovery.recipient()], name="model-a")
    assert np.array_equal(tsnp.load_file(path, None)["w"], tensors["w"])  # VAULT_ADDR/VAULT_TOKEN only
    assert np.array_equal(tsnp.load_file(path, [VaultTransitKey("transit", transit_key)])["w"], tensors["w"])
    monkeypatch.delenv("VAULT_ADDR")  # offline: the recovery key alone
    assert np.array_equal(tsnp.load_file(path, [recovery])["w"], tensors["w"])
    with pytest.raises(KeyServiceError, match="VAULT_ADDR"):
        tsnp.load_file(path, None)
    monkeypatch.setenv("VAULT_ADDR", vault_env)
    tampered = replace_in_header(path, b'"name":"model-a"', b'"name":"model-b"')
    with pytest.raises(HeaderAuthenticationError):
        tsnp.load_file(tampered, None)
