"""Ed25519 publisher keys: ``TSEAL-SIGNING-KEY-1...`` (secret) and ``tsealpub1...`` (public).

A signature proves who published a sealed file and that not one byte changed; anyone can
check it with the public key, without the decryption key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._keyfile import key_lines, one_key_line
from .errors import InvalidKeyError, UsageError
from .format.signatures import CONTEXT as FILE_CONTEXT
from .format.signatures import Signature
from .recipients.base import decode_key_string, encode_key_string

SECRET_PREFIX = "TSEAL-SIGNING-KEY-1"
PUBLIC_PREFIX = "tsealpub1"


class VerifyingKey:
    """A publisher's public key."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise InvalidKeyError("an Ed25519 public key is 32 bytes")
        self.raw = bytes(raw)
        self._key = Ed25519PublicKey.from_public_bytes(self.raw)

    @classmethod
    def parse(cls, text: str) -> VerifyingKey:
        """Parse ``tsealpub1...``. Raises InvalidKeyError."""
        return cls(decode_key_string(PUBLIC_PREFIX, text, 32, "signer public key"))

    def __str__(self) -> str:
        return encode_key_string(PUBLIC_PREFIX, self.raw, upper=False)

    def __repr__(self) -> str:
        return f"VerifyingKey({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyingKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def verifies(self, signature: Signature, digest: bytes, context: bytes = FILE_CONTEXT) -> bool:
        """Whether ``signature`` is this key's over ``context | digest``."""
        if signature.key != self.raw:
            return False
        try:
            self._key.verify(signature.sig, context + digest)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """A publisher's secret key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> SigningKey:
        """Parse ``TSEAL-SIGNING-KEY-1...``. Raises InvalidKeyError."""
        raw = decode_key_string(SECRET_PREFIX, text, 32, "signing key")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SigningKey:
        """The one signing key in a key file (``#`` comments allowed). Raises InvalidKeyError, OSError."""
        return cls.parse(one_key_line(path, "signing key"))

    def __str__(self) -> str:
        return encode_key_string(SECRET_PREFIX, self._key.private_bytes_raw(), upper=True)

    def __repr__(self) -> str:
        return f"SigningKey(public={str(self.public_key())!r})"

    def public_key(self) -> VerifyingKey:
        return VerifyingKey(self._key.public_key().public_bytes_raw())

    def sign(self, digest: bytes, context: bytes = FILE_CONTEXT) -> Signature:
        """Ed25519 over ``context | digest`` (the context keeps file and manifest
        signatures from standing in for each other)."""
        return Signature("ed25519", self.public_key().raw, self._key.sign(context + digest))


def load_trusted_signers(path: str | os.PathLike[str]) -> list[VerifyingKey]:
    """Public keys, one ``tsealpub1...`` per line (``#`` comments). Raises InvalidKeyError."""
    return [VerifyingKey.parse(line) for line in key_lines(path, "signer key")]


def to_verifying_keys(items: Iterable[VerifyingKey | str] | VerifyingKey | str) -> list[VerifyingKey]:
    """Accept VerifyingKey objects or ``tsealpub1...`` strings. Raises InvalidKeyError, UsageError."""
    if isinstance(items, (str, VerifyingKey)):
        items = [items]
    out = [VerifyingKey.parse(k) if isinstance(k, str) else k for k in items]
    if not all(isinstance(k, VerifyingKey) for k in out):
        raise UsageError("signers must be VerifyingKey objects or tsealpub1... strings")
    if not out:
        raise UsageError("at least one trusted signer is needed")
    return out


def to_signing_keys(items: Sequence[SigningKey | str | os.PathLike[str]]) -> list[SigningKey]:
    """Accept SigningKey objects or signing-key file paths."""
    return [k if isinstance(k, SigningKey) else SigningKey.from_file(k) for k in items]
