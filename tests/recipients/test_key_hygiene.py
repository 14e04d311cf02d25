"""Key hygiene: no repr and no error message of any key type shows key material.

Each key type is driven into its error paths (wrong key, malformed stanza, typo in a key
string, a secret key where a recipient belongs, raw key bytes where an identity belongs);
the repr of the key and the text of every error (message, repr, hint) are searched for
every encoding of the secrets involved: identity secrets, symmetric keys, passphrases,
signing keys, file keys, subkeys, KEKs. Key services run for real (moto, OpenBao, GNOME
Keyring, from conftest).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

import tensorseal.numpy as tsnp
from tensorseal.errors import KeyCommitmentError, TensorSealError
from tensorseal.format.header import Stanza
from tensorseal.format.keys import FileKeys
from tensorseal.reader import SealedFile
from tensorseal.recipients import (
    AwsKmsKey,
    KeyringKey,
    Passphrase,
    SymmetricKey,
    VaultTransitKey,
    X25519Identity,
    create_keyring_kek,
    load_identities,
    parse_identity,
    parse_recipient,
    to_identities,
    to_recipients,
)
from tensorseal.signing import SigningKey
from tensorseal.writer import SealOptions, write_sealed

from .conftest import CONTEXT, OTHER_CONTEXT


def forms(secret: bytes | str) -> list[str]:
    """``secret`` and every encoding of it that could end up in a message."""
    if isinstance(secret, str):
        return [secret, secret.upper(), secret.lower()]
    b64 = base64.b64encode(secret).decode()
    b32 = base64.b32encode(secret).decode().rstrip("=")
    return [secret.hex(), secret.hex().upper(), b64, b64.rstrip("="), base64.urlsafe_b64encode(secret).decode().rstrip("="),
            b32, b32.lower(), repr(secret)[2:-1]]  # fmt: skip


def error_of(action: Callable[[], object]) -> TensorSealError:
    with pytest.raises(TensorSealError) as info:
        action()
    return info.value


def assert_clean(things: Iterable[object], secrets: Iterable[bytes | str]) -> None:
    texts = []
    for thing in things:
        texts.append(repr(thing))
        if isinstance(thing, BaseException):
            texts += [str(thing), getattr(thing, "hint", None) or ""]
    blob = "\n".join(texts)
    assert blob  # something was checked
    for secret in secrets:
        for form in forms(secret):
            assert form not in blob, (form, blob)


def corrupt(text: str) -> str:
    """A one-character typo in the middle of a key string."""
    i = len(text) // 2
    return text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]


def test_x25519_identity(tmp_path, identity, other_identity):
    secret, line = identity._key.private_bytes_raw(), str(identity)
    path = tmp_path / "m.tseal"
    tsnp.save_file({"w": np.zeros(4, np.float32)}, path, [other_identity.recipient()])
    errors = [
        error_of(lambda: identity.unwrap([])),
        error_of(lambda: identity.unwrap([Stanza("X25519", ("a", "b"), bytes(48))])),
        error_of(lambda: identity.unwrap([Stanza("X25519", (base64.b64encode(bytes(32)).decode(),), bytes(48))])),
        error_of(lambda: X25519Identity.parse(corrupt(line))),
        error_of(lambda: X25519Identity.parse(line[:-4])),
        error_of(lambda: parse_identity(line.replace("SECRET", "SECRT"))),
        error_of(lambda: parse_recipient(line)),  # a secret key where a recipient belongs
        error_of(lambda: to_identities([secret])),  # raw key bytes where an identity belongs
        error_of(lambda: to_recipients([secret])),
        error_of(lambda: tsnp.load_file(path, identity)),
    ]
    assert_clean([identity, identity.recipient(), *errors], [secret, line])


def test_symmetric_key(tmp_path):
    key = SymmetricKey.generate()
    raw, line = key._key, str(key)
    (tmp_path / "short.key").write_bytes(raw[:31])
    (tmp_path / "long.key").write_bytes(raw + b"\x00")
    errors = [
        error_of(lambda: key.unwrap([])),
        error_of(lambda: key.unwrap([Stanza("symmetric", ("!!",), bytes(48))])),
        error_of(lambda: SymmetricKey(raw[:31])),
        error_of(lambda: SymmetricKey.from_file(tmp_path / "short.key")),
        error_of(lambda: SymmetricKey.from_file(tmp_path / "long.key")),
        error_of(lambda: load_identities(tmp_path / "long.key")),
        error_of(lambda: SymmetricKey.parse(corrupt(line))),
        error_of(lambda: parse_recipient(line)),
        error_of(lambda: to_recipients([raw])),
        error_of(lambda: to_identities([raw])),
    ]
    assert_clean([key, *errors], [raw, line, raw[:31]])


def test_passphrase(tmp_path):
    secret = "correct horse battery staple"
    pw = Passphrase(secret, work_factor=10)
    stanza = pw.wrap(os.urandom(32))[0]
    heavy = Passphrase(secret, work_factor=12).wrap(os.urandom(32))[0]
    errors = [
        error_of(lambda: Passphrase("wrong " + secret, work_factor=10).unwrap([stanza])),
        error_of(lambda: Passphrase(secret, max_work_factor=11).unwrap([heavy])),
        error_of(lambda: pw.unwrap([stanza, stanza])),
        error_of(lambda: Passphrase(secret, work_factor=31)),
    ]
    assert_clean([pw, *errors], [secret, "wrong " + secret])


def test_signing_key():
    key = SigningKey.generate()
    raw, line = key._key.private_bytes_raw(), str(key)
    errors = [
        error_of(lambda: SigningKey.parse(corrupt(line))),
        error_of(lambda: parse_recipient(line)),
        error_of(lambda: parse_identity(line)),
        error_of(lambda: to_identities([raw])),
    ]
    assert_clean([key, key.public_key(), *errors], [raw, line])


def test_file_keys_and_sealed_files(tmp_path, identity):
    file_key = os.urandom(32)
    keys = FileKeys.derive(file_key, os.urandom(16))
    subkeys = [keys.mac_key, keys.index_key, keys.data_key, keys.plain_key]
    data = os.urandom(100)
    path, graft = tmp_path / "m.tseal", tmp_path / "g.tseal"
    for p, stanzas in ((path, identity.recipient().wrap(file_key)), (graft, identity.recipient().wrap(os.urandom(32)))):
        write_sealed(
            p, mode="blob", lengths=[len(data)], source=lambda seg, scratch: memoryview(data), recipients=[],
            options=SealOptions(), _file_key=file_key, _stanzas=stanzas,
        )  # fmt: skip
    with SealedFile(path) as sealed:
        sealed.unlock(identity)
        assert sealed.file_key == file_key
        things: list[object] = [keys, sealed, sealed._keys]
    with SealedFile(graft) as grafted:
        things.append(error_of(lambda: grafted.unlock(identity)))
    assert isinstance(things[-1], KeyCommitmentError)
    assert_clean(things, [file_key, *subkeys])


def test_the_reader_wipes_its_copy_of_the_file_key_on_close(tmp_path, identity):
    path = tmp_path / "m.tseal"
    tsnp.save_file({"w": np.zeros(4, np.float32)}, path, [identity.recipient()])
    sealed = SealedFile(path)
    sealed.unlock(identity)
    held = sealed._file_key
    assert isinstance(held, bytearray) and any(held)
    sealed.close()
    assert held == bytearray(32)
    with pytest.raises(TensorSealError, match="closed"):
        sealed.file_key  # noqa: B018


# ---- key services: the file key passes through them --------------------------------------
def test_aws_kms(aws_env):
    boto3 = pytest.importorskip("boto3")
    arn = boto3.client("kms").create_key(Description="hygiene")["KeyMetadata"]["Arn"]
    file_key = os.urandom(32)
    key = AwsKmsKey(arn)
    stanzas = key.wrap(file_key, CONTEXT)
    errors = [
        error_of(lambda: key.unwrap(stanzas, OTHER_CONTEXT)),
        error_of(lambda: AwsKmsKey(arn.rsplit("/", 1)[0] + "/" + str(uuid.uuid4())).wrap(file_key, CONTEXT)),
        error_of(lambda: AwsKmsKey("alias/no-such-alias").wrap(file_key, CONTEXT)),
    ]
    assert_clean([key, *errors], [file_key, stanzas[0].body])


def test_vault_transit(vault_env, vault_admin):
    name = f"hygiene-{uuid.uuid4().hex[:8]}"
    vault_admin.secrets.transit.create_key(name=name)
    file_key = os.urandom(32)
    key = VaultTransitKey("transit", name)
    stanzas = key.wrap(file_key, CONTEXT)
    missing = VaultTransitKey("transit", name + "-missing")  # (encrypt would create it: decrypt does not)
    errors = [
        error_of(lambda: key.unwrap(stanzas, OTHER_CONTEXT)),
        error_of(lambda: missing.unwrap([Stanza("vault-transit", ("transit", missing.key), stanzas[0].body)], CONTEXT)),
        error_of(lambda: VaultTransitKey("transit", name, token="bad-token").wrap(file_key, CONTEXT)),
    ]
    assert_clean([key, *errors], [file_key])


def test_keyring_kek(os_keyring):
    import keyring

    service, name = "tensorseal-hygiene", f"kek-{uuid.uuid4().hex[:8]}"
    key = create_keyring_kek(service, name)
    kek = base64.b64decode(keyring.get_password(service, name))
    file_key = os.urandom(32)
    stanzas = key.wrap(file_key, CONTEXT)
    errors = [
        error_of(lambda: key.unwrap(stanzas, OTHER_CONTEXT)),
        error_of(lambda: KeyringKey(service, name + "-missing").wrap(file_key, CONTEXT)),
    ]
    keyring.set_password(service, name + "-bad", "not-a-kek-but-a-secret-word")
    errors.append(error_of(lambda: KeyringKey(service, name + "-bad").unwrap(stanzas, CONTEXT)))
    assert_clean([key, *errors], [file_key, kek, "not-a-kek-but-a-secret-word"])


def test_the_writer_wipes_the_file_key_it_gave_recipients(tmp_path):
    seen: list[bytearray] = []

    class Keeper:
        """A recipient that keeps (wrongly) a reference to the key it was given."""

        def wrap(self, file_key: bytes, context: object = None) -> list[Stanza]:
            seen.append(file_key)  # type: ignore[arg-type]
            return SymmetricKey.generate().wrap(bytes(file_key))

    tsnp.save_file({"w": np.zeros(4, np.float32)}, Path(tmp_path / "m.tseal"), [Keeper()])  # type: ignore[list-item]
    (given,) = seen
    assert isinstance(given, bytearray) and given == bytearray(32)


@pytest.mark.parametrize("make", [lambda: str(X25519Identity.generate()), lambda: str(SymmetricKey.generate()),
                                  lambda: str(SigningKey.generate())])  # fmt: skip
def test_a_secret_key_given_as_a_recipient_is_not_echoed(make):
    line = make()
    error = error_of(lambda: parse_recipient(line))
    assert "TSEAL" not in str(error).upper() and line[-12:] not in str(error)  # not even its first characters
