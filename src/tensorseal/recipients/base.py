"""The two interfaces that carry every key type (age's model).

A :class:`Recipient` wraps a file key into stanzas; an :class:`Identity` unwraps one of
them back. An identity that finds no stanza of its own raises
:class:`~tensorseal.errors.IncorrectIdentityError` ("try the next identity"); any other
error is fatal. KMS keys, OS key stores and device licences are more of the same pair.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..errors import FormatError, InvalidKeyError
from ..format.constants import KEY_SIZE, NONCE_SIZE
from ..format.header import ModelIdentity, Stanza

__all__ = ["Identity", "KeyContext", "Recipient", "Stanza"]

WRAPPED_KEY_SIZE = KEY_SIZE + 16
KEY_CONTEXT_LABEL = b"tensorseal/v1/key-context"


@dataclass(frozen=True)
class KeyContext:
    """What a wrapped file key is bound to: the model identity in the file's header.

    Key services send it as their encryption context / associated data (AWS KMS
    ``EncryptionContext``, Transit and GCP ``associated_data``, the keyring type's AEAD
    associated data), so a wrapped key cannot be replayed onto a file that claims another
    model. Key types that have no such input (X25519, symmetric, scrypt) ignore it: the
    header MAC already binds their stanzas to the file.
    """

    identity: ModelIdentity = field(default_factory=ModelIdentity)

    def encryption_context(self) -> dict[str, str]:
        """``{"tensorseal": "v1", "name": ..., "version": ..., "file": ...}``, absent members omitted."""
        return {"tensorseal": "v1", **self.identity.to_json()}

    def aad(self) -> bytes:
        """Canonical bytes: ``"tensorseal/v1/key-context" ‖ field(name) ‖ field(version) ‖
        field(file)`` with ``field(x) = u32be(len(UTF-8(x))) ‖ UTF-8(x)`` (absent: ``u32be(0)``)."""
        out = [KEY_CONTEXT_LABEL]
        for value in (self.identity.name, self.identity.version, self.identity.file):
            raw = b"" if value is None else value.encode("utf-8")
            out.append(struct.pack(">I", len(raw)) + raw)
        return b"".join(out)


NO_CONTEXT = KeyContext()


@runtime_checkable
class Recipient(Protocol):
    def wrap(self, file_key: bytes, context: KeyContext = NO_CONTEXT) -> list[Stanza]:
        """Return the stanzas that let the matching identity recover ``file_key``.

        ``context`` is the file's model identity; key services bind it to the stanza.
        ``file_key`` may be a ``bytearray`` that the writer zeroes when ``wrap`` returns:
        copy it (``bytes(file_key)``) to keep it, and never put it in a message or repr.
        """
        ...


@runtime_checkable
class Identity(Protocol):
    def unwrap(self, stanzas: Sequence[Stanza], context: KeyContext = NO_CONTEXT) -> bytes:
        """Return the file key from one of ``stanzas`` (wrapped under ``context``).

        Raises IncorrectIdentityError if no stanza is for this identity, FormatError if a
        stanza of this identity's type is malformed, KeyServiceError if a key service
        refused or could not be reached, HeaderAuthenticationError if a key service says
        the stanza was not wrapped under ``context`` (the header was changed).
        """
        ...


# ---- helpers shared by the key types --------------------------------------------------
def seal_key(wrap_key: bytes, file_key: bytes) -> bytes:
    """ChaCha20-Poly1305 under a single-use wrap key, so the zero nonce is never reused."""
    return ChaCha20Poly1305(wrap_key).encrypt(bytes(NONCE_SIZE), file_key, None)


def open_key(wrap_key: bytes, body: bytes) -> bytes | None:
    """The file key, or None if the body does not open under ``wrap_key``."""
    if len(body) != WRAPPED_KEY_SIZE:
        raise FormatError(f"wrapped key must be {WRAPPED_KEY_SIZE} bytes, got {len(body)}")
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(bytes(NONCE_SIZE), body, None)
    except InvalidTag:
        return None


def b64arg(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise FormatError(f"{what} is not valid base64") from None
    if len(raw) != size or base64.b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what} must be {size} bytes of canonical base64")
    return raw


def encode_key_string(prefix: str, payload: bytes, upper: bool) -> str:
    """``prefix`` + base32 of (payload | 4-byte SHA-256 checksum), no padding."""
    check = hashlib.sha256(prefix.lower().encode("ascii") + payload).digest()[:4]
    text = base64.b32encode(payload + check).decode("ascii").rstrip("=")
    return prefix + (text.upper() if upper else text.lower())


def decode_key_string(prefix: str, text: str, size: int, what: str) -> bytes:
    """Inverse of :func:`encode_key_string`; raises InvalidKeyError on any mismatch."""
    text = text.strip()
    if not text.lower().startswith(prefix.lower()):
        raise InvalidKeyError(f"{what} must start with {prefix!r}")
    body = text[len(prefix) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError:
        raise InvalidKeyError(f"{what} is not valid base32") from None
    if base64.b32encode(raw).decode("ascii").rstrip("=") != body:  # padding or stray bits
        raise InvalidKeyError(f"{what} is not canonical base32")
    if len(raw) != size + 4:
        raise InvalidKeyError(f"{what} has the wrong length")
    payload, check = raw[:size], raw[size:]
    if hashlib.sha256(prefix.lower().encode("ascii") + payload).digest()[:4] != check:
        raise InvalidKeyError(f"{what} checksum does not match (typo?)")
    return payload
