"""Recipients and identities: one module per key type, all behind two interfaces."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from .._keyfile import key_lines
from ..errors import InvalidKeyError, UsageError
from . import aws_kms, azure_kv, gcp_kms, keystore, vault_transit
from ._service import sdk_available
from .aws_kms import AwsKmsKey
from .azure_kv import AzureKeyVaultKey
from .base import Identity, KeyContext, Recipient, Stanza
from .gcp_kms import GcpKmsKey
from .keystore import KeyringKey, create_keyring_kek
from .master import KEY_PREFIX as MASTER_PREFIX
from .master import MasterKey
from .scrypt import Passphrase
from .symmetric import KEY_PREFIX as SYMMETRIC_PREFIX
from .symmetric import SymmetricKey
from .vault_transit import VaultTransitKey
from .x25519 import IDENTITY_PREFIX, RECIPIENT_PREFIX, X25519Identity, X25519Recipient

__all__ = [
    "AwsKmsKey",
    "AzureKeyVaultKey",
    "GcpKmsKey",
    "Identity",
    "KeyContext",
    "KeyringKey",
    "MasterKey",
    "Passphrase",
    "Recipient",
    "Stanza",
    "SymmetricKey",
    "VaultTransitKey",
    "X25519Identity",
    "X25519Recipient",
    "ambient_identities",
    "create_keyring_kek",
    "load_identities",
    "load_recipients",
    "parse_identity",
    "parse_recipient",
    "to_identities",
    "to_recipients",
]


# key-service recipient strings (docs/KEYS.md): prefix -> parser
_SERVICE_RECIPIENTS = {
    aws_kms.RECIPIENT_PREFIX: AwsKmsKey.parse,
    vault_transit.RECIPIENT_PREFIX: VaultTransitKey.parse,
    gcp_kms.RECIPIENT_PREFIX: GcpKmsKey.parse,
    azure_kv.RECIPIENT_PREFIX: AzureKeyVaultKey.parse,
    keystore.RECIPIENT_PREFIX: KeyringKey.parse,
}
_SERVICE_KEYS = (AwsKmsKey, VaultTransitKey, GcpKmsKey, AzureKeyVaultKey, KeyringKey)
# stanza type -> (SDK module, identities for the keys the stanzas name)
_AMBIENT = {
    aws_kms.STANZA_TYPE: ("boto3", aws_kms.ambient),
    vault_transit.STANZA_TYPE: ("hvac", vault_transit.ambient),
    gcp_kms.STANZA_TYPE: ("google.cloud.kms", gcp_kms.ambient),
    azure_kv.STANZA_TYPE: ("azure.keyvault.keys", azure_kv.ambient),
    keystore.STANZA_TYPE: ("keyring", keystore.ambient),
}


def parse_recipient(text: str) -> Recipient:
    """A recipient string as a Recipient: ``tseal1...`` (X25519), ``awskms:``, ``vault:``,
    ``gcpkms:``, ``azurekv:``, ``keyring:`` (docs/KEYS.md). Raises InvalidKeyError."""
    text = text.strip()
    if text.lower().startswith(RECIPIENT_PREFIX):
        return X25519Recipient.parse(text)
    for prefix, parse in _SERVICE_RECIPIENTS.items():
        if text.lower().startswith(prefix):
            return parse(text)
    if text.upper().startswith("TSEAL-"):  # a secret key (TSEAL-SECRET-KEY-1...): never echo it
        raise InvalidKeyError("a secret key is not a recipient", hint="give its public recipient (tseal1...)")
    raise InvalidKeyError(
        f"unknown recipient {text[:24]!r}",
        hint="X25519 recipients start with 'tseal1'; key services: "
        + ", ".join(f"{p}..." for p in _SERVICE_RECIPIENTS),
    )


def ambient_identities(stanzas: Sequence[Stanza], skip: Sequence[Identity] = ()) -> list[Identity]:
    """Identities for the key-service keys that the file's stanzas name (AWS KMS, Vault /
    OpenBao Transit, GCP KMS, Azure Key Vault, OS keyring), with credentials taken from
    the environment when they are used. Nothing is contacted here. Keys equal (same type
    and recipient string) to one in ``skip`` (the caller's explicit identities) are left out.

    In stanza order, those whose SDK is installed first (a missing SDK raises UsageError
    when its identity is used). Raises nothing.
    """
    given = {(type(i), str(i)) for i in skip if isinstance(i, _SERVICE_KEYS)}
    ready: list[Identity] = []
    missing_sdk: list[Identity] = []
    for stanza_type in dict.fromkeys(s.type for s in stanzas):
        if stanza_type in _AMBIENT:
            module, make = _AMBIENT[stanza_type]
            keys = [k for k in make(stanzas) if (type(k), str(k)) not in given]
            (ready if sdk_available(module) else missing_sdk).extend(keys)
    return ready + missing_sdk


def parse_identity(text: str) -> Identity:
    """One identity line (``TSEAL-SECRET-KEY-1...``, ``TSEAL-SYMMETRIC-KEY-1...`` or a
    model master key ``TSEAL-MASTER-KEY-1...``). Raises InvalidKeyError."""
    text = text.strip()
    if text.upper().startswith(IDENTITY_PREFIX):
        return X25519Identity.parse(text)
    if text.upper().startswith(SYMMETRIC_PREFIX):
        return SymmetricKey.parse(text)
    if text.upper().startswith(MASTER_PREFIX):
        return MasterKey.parse(text)
    raise InvalidKeyError("unknown identity line", hint="identity files hold TSEAL-SECRET-KEY-1... lines")


def load_identities(path: str | os.PathLike[str]) -> list[Identity]:
    """Every identity in an identity file (text lines; ``#`` comments), or a raw 32-byte
    symmetric key file. Raises InvalidKeyError, OSError."""
    if os.path.getsize(path) == 32:  # raw key bytes: any text key file is longer
        return [SymmetricKey.from_file(path)]
    return [parse_identity(line) for line in key_lines(path, "identity")]


def load_recipients(path: str | os.PathLike[str]) -> list[Recipient]:
    """Every recipient in a recipients file (one per line, ``#`` comments)."""
    return [parse_recipient(line) for line in key_lines(path, "recipient")]


def to_recipients(items: Iterable[Recipient | str]) -> list[Recipient]:
    """Accept Recipient objects or recipient strings. Raises InvalidKeyError, UsageError."""
    out = [parse_recipient(r) if isinstance(r, str) else r for r in items]
    for r in out:
        if not isinstance(r, Recipient):
            raise UsageError(f"not a recipient: a {type(r).__name__}")  # no repr: it may be key bytes
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
            raise UsageError(f"not an identity: a {type(item).__name__}")  # no repr: it may be key bytes
    if not out:
        raise UsageError("at least one identity is needed")
    return out
