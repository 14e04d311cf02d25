"""A raw 256-bit symmetric key (a key file) used as both recipient and identity.

Stanza ``symmetric``: args = [base64 16-byte random salt]; wrap key = HKDF-SHA256(key,
salt, "tensorseal/v1/symmetric"); body = the file key sealed with ChaCha20-Poly1305. The
salt makes every wrap key single-use, and the stanza names no key (files do not link).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .._keyfile import one_key_line
from ..errors import FormatError, IncorrectIdentityError, InvalidKeyError
from ..format.constants import KEY_SIZE
from ..format.header import Stanza, b64encode
from ..format.keys import hkdf
from .base import NO_CONTEXT, KeyContext, b64arg, decode_key_string, encode_key_string, open_key, seal_key

STANZA_TYPE = "symmetric"
KEY_PREFIX = "TSEAL-SYMMETRIC-KEY-1"
SALT_SIZE = 16


class SymmetricKey:
    """A 256-bit key that both wraps and unwraps."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise InvalidKeyError(f"symmetric key must be {KEY_SIZE} bytes, got {len(key)}")
        self._key = bytes(key)

    @classmethod
    def generate(cls) -> SymmetricKey:
        return cls(os.urandom(KEY_SIZE))

    @classmethod
    def parse(cls, text: str) -> SymmetricKey:
        """Parse ``TSEAL-SYMMETRIC-KEY-1...``. Raises InvalidKeyError."""
        return cls(decode_key_string(KEY_PREFIX, text, KEY_SIZE, "symmetric key"))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SymmetricKey:
        """A key file: exactly 32 raw bytes, or the ``TSEAL-SYMMETRIC-KEY-1`` text form.

        Raises InvalidKeyError, OSError.
        """
        with open(path, "rb") as f:
            data = f.read(KEY_SIZE + 1)
        if len(data) == KEY_SIZE:  # raw key bytes: the text form is longer
            return cls(data)
        return cls.parse(one_key_line(path, "symmetric key"))

    def __str__(self) -> str:
        return encode_key_string(KEY_PREFIX, self._key, upper=True)

    def __repr__(self) -> str:
        return "SymmetricKey(<secret>)"

    def audit_info(self) -> dict[str, str | None]:
        """How audit records name this key (tensorseal.audit): stanza type, no key id (none is public)."""
        return {"kind": STANZA_TYPE, "key_id": None}

    def wrap(self, file_key: bytes, context: KeyContext = NO_CONTEXT) -> list[Stanza]:
        """Wrap ``file_key``; ``context`` is not used by this key type."""
        return [self._wrap_with(file_key, os.urandom(SALT_SIZE))]

    def _wrap_with(self, file_key: bytes, salt: bytes) -> Stanza:
        """Deterministic entry point for test vectors."""
        return Stanza(STANZA_TYPE, (b64encode(salt),), seal_key(hkdf(self._key, salt, "symmetric"), file_key))

    def unwrap(self, stanzas: Sequence[Stanza], context: KeyContext = NO_CONTEXT) -> bytes:
        for stanza in stanzas:
            if stanza.type != STANZA_TYPE:
                continue
            if len(stanza.args) != 1:
                raise FormatError("symmetric stanza must have exactly one argument")
            salt = b64arg(stanza.args[0], SALT_SIZE, "symmetric stanza salt")
            file_key = open_key(hkdf(self._key, salt, "symmetric"), stanza.body)
            if file_key is not None:
                return file_key
        raise IncorrectIdentityError("no symmetric stanza for this key")
