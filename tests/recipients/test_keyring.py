"""OS key store recipients against a real GNOME Keyring (Secret Service over a private
D-Bus session bus, started by the ``secret_service`` fixture in conftest)."""

from __future__ import annotations

import base64
import uuid

import numpy as np
import pytest

import tensorseal.numpy as tsnp
from tensorseal.errors import (
    FormatError,
    IncorrectIdentityError,
    InvalidKeyError,
    KeyServiceError,
    NoIdentityMatchError,
    UsageError,
)
from tensorseal.format.header import Stanza
from tensorseal.recipients import KeyringKey, X25519Identity, create_keyring_kek, parse_recipient

from .conftest import CONTEXT, FILE_KEY, OTHER_CONTEXT, replace_in_header


@pytest.fixture
def entry(os_keyring) -> tuple[str, str]:
    return "tensorseal-test", f"model-kek-{uuid.uuid4().hex[:8]}"


def test_kek_lives_in_the_secret_service(os_keyring, entry):
    import keyring
    import secretstorage

    key = create_keyring_kek(*entry)
    assert str(key) == f"keyring:{entry[0]}/{entry[1]}"
    stored = keyring.get_password(*entry)
    assert len(base64.b64decode(stored, validate=True)) == 32
    # it really is in GNOME Keyring's default collection, over D-Bus
    with secretstorage.dbus_init() as conn:
        items = list(
            secretstorage.get_default_collection(conn).search_items({"service": entry[0], "username": entry[1]})
        )
        assert [i.get_secret().decode() for i in items] == [stored]
    with pytest.raises(UsageError):  # never silently replaced: files sealed to it would be lost
        create_keyring_kek(*entry)
    assert create_keyring_kek(*entry, replace=True) and keyring.get_password(*entry) != stored


def test_round_trip_binds_the_context(os_keyring, entry):
    create_keyring_kek(*entry)
    key = parse_recipient(f"keyring:{entry[0]}/{entry[1]}")
    assert isinstance(key, KeyringKey)
    stanzas = key.wrap(FILE_KEY, CONTEXT)
    assert stanzas[0].type == "keyring" and stanzas[0].args[:2] == entry and len(stanzas[0].body) == 48
    assert key.unwrap(stanzas, CONTEXT) == FILE_KEY
    assert key.wrap(FILE_KEY, CONTEXT)[0].args[2] != stanzas[0].args[2]  # fresh salt
    with pytest.raises(IncorrectIdentityError, match="model identity"):
        key.unwrap(stanzas, OTHER_CONTEXT)
    with pytest.raises(IncorrectIdentityError):
        KeyringKey(entry[0], entry[1] + "-other").unwrap(stanzas, CONTEXT)
    create_keyring_kek(*entry, replace=True)  # another key under the same name
    with pytest.raises(IncorrectIdentityError):
        key.unwrap(stanzas, CONTEXT)


def test_missing_or_bad_entries(os_keyring, entry):
    import keyring

    key = KeyringKey(*entry)
    with pytest.raises(KeyServiceError, match="no key"):
        key.wrap(FILE_KEY, CONTEXT)
    keyring.set_password(*entry, "not base64 of 32 bytes")
    with pytest.raises(InvalidKeyError):
        key.wrap(FILE_KEY, CONTEXT)
    for bad in ("keyring:", "keyring:service-only", "keyring:/name", "keyring:svc/"):
        with pytest.raises(InvalidKeyError):
            parse_recipient(bad)
    good = create_keyring_kek(*entry, replace=True).wrap(FILE_KEY, CONTEXT)[0]
    with pytest.raises(FormatError):
        key.unwrap([Stanza("keyring", good.args[:2], good.body)], CONTEXT)
    with pytest.raises(FormatError):
        key.unwrap([Stanza("keyring", good.args, good.body[:-1])], CONTEXT)


def test_sealed_file_opens_from_the_key_store(os_keyring, entry, tmp_path):
    import keyring

    create_keyring_kek(*entry)
    recovery = X25519Identity.generate()
    tensors = {"w": np.arange(2000, dtype=np.float32)}
    path = tmp_path / "m.tseal"
    tsnp.save_file(tensors, path, [f"keyring:{entry[0]}/{entry[1]}", recovery.recipient()], name="model-a")
    assert np.array_equal(tsnp.load_file(path, None)["w"], tensors["w"])  # found in the store, no flags
    assert np.array_equal(tsnp.load_file(path, [recovery])["w"], tensors["w"])
    tampered = replace_in_header(path, b'"name":"model-a"', b'"name":"model-b"')
    with pytest.raises(NoIdentityMatchError):  # the keyring stanza does not open under model-b
        tsnp.load_file(tampered, None)
    keyring.delete_password(*entry)
    with pytest.raises(KeyServiceError, match="no key"):  # the key is gone from this machine
        tsnp.load_file(path, None)
    assert np.array_equal(tsnp.load_file(path, [recovery])["w"], tensors["w"])


def test_cli_end_to_end_with_the_os_key_store(os_keyring, entry, tmp_path, capsys):
    from safetensors.numpy import save_file

    from tensorseal.cli import main

    create_keyring_kek(*entry)
    src, sealed, back = tmp_path / "model.safetensors", tmp_path / "m.tseal", tmp_path / "back.safetensors"
    save_file({"w": np.arange(3000, dtype=np.float32)}, src)
    assert main(["encrypt", str(src), "-o", str(sealed), "-r", f"keyring:{entry[0]}/{entry[1]}", "-q"]) == 0
    assert main(["decrypt", str(sealed), "-o", str(back), "-q"]) == 0  # no flags: the stanza names the entry
    assert back.read_bytes() == src.read_bytes()
    capsys.readouterr()
    assert main(["encrypt", str(src), "-o", str(tmp_path / "x.tseal"), "-r", "keyring:no-slash"]) == 4
    assert "error:" in capsys.readouterr().err
