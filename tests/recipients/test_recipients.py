"""Recipient / identity pairs: wrapping, string encodings, and every way a key is wrong."""

from __future__ import annotations

import os

import pytest

from tensorseal.errors import (
    FormatError,
    IncorrectIdentityError,
    InvalidKeyError,
    UsageError,
    WorkFactorError,
)
from tensorseal.format.header import Stanza, b64encode
from tensorseal.recipients import (
    Passphrase,
    SymmetricKey,
    X25519Identity,
    X25519Recipient,
    load_identities,
    load_recipients,
    parse_identity,
    parse_recipient,
    to_identities,
    to_recipients,
)

from ..conftest import fast_passphrase

FILE_KEY = bytes(range(32))


def test_x25519_wrap_unwrap_and_strings():
    ident = X25519Identity.generate()
    text = str(ident.recipient())
    assert text.startswith("tseal1") and text == text.lower()
    assert str(ident).startswith("TSEAL-SECRET-KEY-1")
    rec = parse_recipient(text)
    assert str(rec) == text
    assert str(X25519Identity.parse(str(ident))) == str(ident)
    stanzas = rec.wrap(FILE_KEY)
    assert len(stanzas) == 1 and stanzas[0].type == "X25519"
    assert ident.unwrap(stanzas) == FILE_KEY
    assert rec.wrap(FILE_KEY) != stanzas  # a fresh ephemeral key each time


def test_x25519_wrong_identity_means_try_next():
    stanzas = X25519Identity.generate().recipient().wrap(FILE_KEY)
    with pytest.raises(IncorrectIdentityError):
        X25519Identity.generate().unwrap(stanzas)


@pytest.mark.parametrize("mutate", ["typo", "truncate", "prefix", "case-mix"])
def test_recipient_string_typos_are_caught(mutate):
    text = str(X25519Identity.generate().recipient())
    bad = {
        "typo": text[:10] + ("a" if text[10] != "a" else "b") + text[11:],
        "truncate": text[:-2],
        "prefix": "age1" + text[6:],
        "case-mix": text,  # upper-case is accepted (base32 is case-insensitive); see below
    }[mutate]
    if mutate == "case-mix":
        assert str(parse_recipient(text.upper().replace("TSEAL1", "tseal1"))) == text
        return
    with pytest.raises(InvalidKeyError):
        parse_recipient(bad)


def test_malformed_x25519_stanzas_are_fatal():
    ident = X25519Identity.generate()
    good = ident.recipient().wrap(FILE_KEY)[0]
    with pytest.raises(FormatError):
        ident.unwrap([Stanza("X25519", (), good.body)])
    with pytest.raises(FormatError):
        ident.unwrap([Stanza("X25519", ("AAAA",), good.body)])
    with pytest.raises(FormatError):
        ident.unwrap([Stanza("X25519", good.args, good.body[:-1])])
    with pytest.raises(FormatError):  # all-zero point: low order
        ident.unwrap([Stanza("X25519", (b64encode(bytes(32)),), good.body)])


def test_symmetric_key_forms(tmp_path):
    key = SymmetricKey.generate()
    stanzas = key.wrap(FILE_KEY)
    assert key.unwrap(stanzas) == FILE_KEY
    assert stanzas[0].args != key.wrap(FILE_KEY)[0].args  # fresh salt per wrap
    text_file, raw_file = tmp_path / "k.txt", tmp_path / "k.bin"
    text_file.write_text(f"# my key\n{key}\n")
    raw = os.urandom(32)
    raw_file.write_bytes(raw)
    assert SymmetricKey.from_file(text_file).unwrap(stanzas) == FILE_KEY
    assert load_identities(text_file)[0].unwrap(stanzas) == FILE_KEY
    assert load_identities(raw_file)[0].unwrap(SymmetricKey(raw).wrap(FILE_KEY)) == FILE_KEY
    with pytest.raises(IncorrectIdentityError):
        SymmetricKey.generate().unwrap(stanzas)
    with pytest.raises(InvalidKeyError):
        SymmetricKey(b"short")
    (tmp_path / "bad").write_bytes(b"\xff" * 31)
    with pytest.raises(InvalidKeyError):
        SymmetricKey.from_file(tmp_path / "bad")


def test_passphrase():
    pw = fast_passphrase("hunter2")
    stanzas = pw.wrap(FILE_KEY)
    assert stanzas[0].type == "scrypt" and stanzas[0].args[1] == "10"
    assert Passphrase("hunter2").unwrap(stanzas) == FILE_KEY  # work factor comes from the stanza
    with pytest.raises(IncorrectIdentityError):
        Passphrase("hunter3").unwrap(stanzas)
    with pytest.raises(UsageError):
        Passphrase("")


def test_passphrase_work_factor_limit_and_format():
    pw = fast_passphrase()
    s = pw.wrap(FILE_KEY)[0]
    with pytest.raises(WorkFactorError):
        Passphrase("x", max_work_factor=9).unwrap([s])
    for bad in ("010", "-1", "abc", "31", ""):
        with pytest.raises(FormatError):
            pw.unwrap([Stanza("scrypt", (s.args[0], bad), s.body)])
    with pytest.raises(FormatError):  # a passphrase stanza must stand alone
        pw.unwrap([s, X25519Identity.generate().recipient().wrap(FILE_KEY)[0]])


def test_passphrase_cannot_mix_with_other_recipients():
    with pytest.raises(UsageError):
        to_recipients([fast_passphrase(), X25519Identity.generate().recipient()])


def test_to_recipients_and_identities(tmp_path):
    ident = X25519Identity.generate()
    rec_file = tmp_path / "recipients.txt"
    rec_file.write_text(f"# team\n{ident.recipient()}\n\n")
    assert [str(r) for r in load_recipients(rec_file)] == [str(ident.recipient())]
    assert isinstance(to_recipients([str(ident.recipient())])[0], X25519Recipient)
    with pytest.raises(UsageError):
        to_recipients([])
    with pytest.raises(UsageError):
        to_recipients([42])
    with pytest.raises(UsageError):
        to_identities([])
    with pytest.raises(InvalidKeyError):
        parse_recipient("ssh-ed25519 AAAA")
    with pytest.raises(InvalidKeyError):
        parse_identity("AGE-SECRET-KEY-1XYZ")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(InvalidKeyError):
        load_identities(tmp_path / "empty")


@pytest.mark.parametrize("factor", ["\u00b2", "\u0661", "0", "00", "1 ", "+5", "31"])
def test_scrypt_work_factor_text_must_be_plain_ascii(factor):
    s = fast_passphrase().wrap(FILE_KEY)[0]
    with pytest.raises(FormatError):
        fast_passphrase().unwrap([Stanza("scrypt", (s.args[0], factor), s.body)])


def test_key_strings_have_one_spelling():
    import base64

    ident = X25519Identity.generate()
    text = str(ident.recipient())
    with pytest.raises(InvalidKeyError):
        parse_recipient(text + "======")
    # flip the unused low bits of the last base32 character: same bytes, other spelling
    payload = base64.b32decode(text[6:].upper() + "======")
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    last = alphabet.index(text[-1])
    for other in {last ^ b for b in (1, 2, 4, 8)}:
        variant = text[:-1] + alphabet[other]
        try:
            decoded = base64.b32decode(variant[6:].upper() + "======")
        except ValueError:
            continue
        if decoded == payload:
            with pytest.raises(InvalidKeyError):
                parse_recipient(variant)


def test_a_32_byte_ascii_key_file_is_a_raw_key(tmp_path):
    raw = b"0123456789abcdef0123456789abcdef"
    path = tmp_path / "k"
    path.write_bytes(raw)
    stanzas = SymmetricKey(raw).wrap(FILE_KEY)
    assert load_identities(path)[0].unwrap(stanzas) == FILE_KEY
    assert SymmetricKey.from_file(path).unwrap(stanzas) == FILE_KEY
