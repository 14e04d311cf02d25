"""Recipients and identities: one module per key type, all behind two interfaces."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from ..errors import InvalidKeyError, UsageError
from .base import Identity, Recipient, Stanza
from .scrypt import Passphrase
from .symmetric import KEY_PREFIX as SYMMETRIC_PREFIX
from .symmetric import SymmetricKey
from .x25519 import IDENTITY_PREFIX, RECIPIENT_PREFIX, X25519Identity, X25519Recipient

__all__ = [
    "Identity",
    "Passphrase",
    "Recipient",
    "Stanza",
    "SymmetricKey",
    "X25519Identity",
    "X25519Recipient",
    "load_identities",
    "load_recipients",
    "parse_identity",
    "parse_recipient",
    "to_identities",
    "to_recipients",
]


def parse_recipient(text: str) -> Recipient:
    """A recipient string (``tseal1...``) as a Recipient. Raises InvalidKeyError."""
    text = text.strip()
    if text.lower().startswith(RECIPIENT_PREFIX):
        return X25519Recipient.parse(text)
    raise InvalidKeyError(f"unknown recipient {text[:24]!r}", hint="X25519 recipients start with 'tseal1'")


def parse_identity(text: str) -> Identity:
    """One identity line (``TSEAL-SECRET-KEY-1...`` or ``TSEAL-SYMMETRIC-KEY-1...``)."""
    text = text.strip()
    if text.upper().startswith(IDENTITY_PREFIX):
        return X25519Identity.parse(text)
    if text.upper().startswith(SYMMETRIC_PREFIX):
        return SymmetricKey.parse(text)
    raise InvalidKeyError("unknown identity line", hint="identity files hold TSEAL-SECRET-KEY-1... lines")


def _key_lines(path: str | os.PathLike[str], what: str) -> list[str]:
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKeyError(f"{os.fspath(path)}: {what} file is not text") from None
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise InvalidKeyError(f"{os.fspath(path)}: no {what} in file")
    return lines


def load_identities(path: str | os.PathLike[str]) -> list[Identity]:
    """Every identity in an identity file (text lines; ``#`` comments), or a raw 32-byte
    symmetric key file. Raises InvalidKeyError, OSError."""
    if os.path.getsize(path) == 32:  # raw key bytes: any text key file is longer
        return [SymmetricKey.from_file(path)]
    return [parse_identity(line) for line in _key_lines(path, "identity")]


def load_recipients(path: str | os.PathLike[str]) -> list[Recipient]:
    """Every recipient in a recipients file (one per line, ``#`` comments)."""
    return [parse_recipient(line) for line in _key_lines(path, "recipient")]


def to_recipients(items: Iterable[Recipient | str]) -> list[Recipient]:
    """Accept Recipient objects or recipient strings. Raises InvalidKeyError, UsageError."""
    out = [parse_recipient(r) if isinstance(r, str) else r for r in items]
    for r in out:
        if not isinstance(r, Recipient):
            raise UsageError(f"not a recipient: {r!r}")
    if not out:
        raise UsageError("at least one recipient is needed")
    if len(out) > 1 and any(isinstance(r, Passphrase) for r in out):
        raise UsageError("a passphrase cannot be combined with other recipients")
    return out


def to_identities(items: Identity | str | os.PathLike[str] | Sequence[Identity | str | os.PathLike[str]]) -> list[Identity]:
    """Accept Identity objects or identity file paths. Raises InvalidKeyError, UsageError."""
    if isinstance(items, (str, os.PathLike)) or isinstance(items, Identity):
        items = [items]
    out: list[Identity] = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            out.extend(load_identities(item))
        elif isinstance(item, Identity):
            out.append(item)
        else:
            raise UsageError(f"not an identity: {item!r}")
    if not out:
        raise UsageError("at least one identity is needed")
    return out
