"""X25519 public-key recipients: ``tseal1...`` strings, ``TSEAL-SECRET-KEY-1...`` identities.

Wrap: an ephemeral key pair per file; wrap key = HKDF-SHA256(shared secret, salt =
ephemeral public | recipient public, info "tensorseal/v1/X25519"); the stanza body is the
file key sealed with ChaCha20-Poly1305 under it (zero nonce; the wrap key is single-use).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ..errors import FormatError, IncorrectIdentityError
from ..format.header import Stanza, b64encode
from ..format.keys import hkdf
from .base import NO_CONTEXT, KeyContext, b64arg, decode_key_string, encode_key_string, open_key, seal_key

STANZA_TYPE = "X25519"
RECIPIENT_PREFIX = "tseal1"
IDENTITY_PREFIX = "TSEAL-SECRET-KEY-1"


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes_raw()


def _wrap_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    if shared == bytes(32):
        raise FormatError("X25519 shared secret is zero (low-order point)")
    return hkdf(shared, ephemeral + recipient, "X25519")


class X25519Recipient:
    """Public half: wraps file keys for the holder of the matching identity."""

    def __init__(self, public_key: X25519PublicKey) -> None:
        self._key = public_key

    @classmethod
    def parse(cls, text: str) -> X25519Recipient:
        """Parse ``tseal1...``. Raises InvalidKeyError."""
        raw = decode_key_string(RECIPIENT_PREFIX, text, 32, "X25519 recipient")
        return cls(X25519PublicKey.from_public_bytes(raw))

    def __str__(self) -> str:
        return encode_key_string(RECIPIENT_PREFIX, _raw_public(self._key), upper=False)

    def __repr__(self) -> str:
        return f"X25519Recipient({str(self)!r})"

    def wrap(self, file_key: bytes, context: KeyContext = NO_CONTEXT) -> list[Stanza]:
        """Wrap ``file_key``; ``context`` is not used by this key type."""
        return [self._wrap_with(file_key, X25519PrivateKey.generate())]

    def _wrap_with(self, file_key: bytes, ephemeral: X25519PrivateKey) -> Stanza:
        """Deterministic entry point for test vectors."""
        eph_pub = _raw_public(ephemeral.public_key())
        wrap_key = _wrap_key(ephemeral.exchange(self._key), eph_pub, _raw_public(self._key))
        return Stanza(STANZA_TYPE, (b64encode(eph_pub),), seal_key(wrap_key, file_key))


class X25519Identity:
    """Secret half: opens stanzas made for its recipient."""

    def __init__(self, private_key: X25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def generate(cls) -> X25519Identity:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> X25519Identity:
        """Parse ``TSEAL-SECRET-KEY-1...``. Raises InvalidKeyError."""
        raw = decode_key_string(IDENTITY_PREFIX, text, 32, "X25519 identity")
        return cls(X25519PrivateKey.from_private_bytes(raw))

    def __str__(self) -> str:
        raw = self._key.private_bytes_raw()
        return encode_key_string(IDENTITY_PREFIX, raw, upper=True)

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={str(self.recipient())!r})"

    def audit_info(self) -> dict[str, str | None]:
        """How audit records name this key (tensorseal.audit): stanza type and public recipient."""
        return {"kind": STANZA_TYPE, "key_id": str(self.recipient())}

    def recipient(self) -> X25519Recipient:
        return X25519Recipient(self._key.public_key())

    def unwrap(self, stanzas: Sequence[Stanza], context: KeyContext = NO_CONTEXT) -> bytes:
        own = _raw_public(self._key.public_key())
        for stanza in stanzas:
            if stanza.type != STANZA_TYPE:
                continue
            if len(stanza.args) != 1:
                raise FormatError("X25519 stanza must have exactly one argument")
            eph_pub = b64arg(stanza.args[0], 32, "X25519 ephemeral share")
            try:
                shared = self._key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
            except ValueError:  # cryptography refuses low-order points
                raise FormatError("X25519 stanza has an invalid ephemeral share") from None
            file_key = open_key(_wrap_key(shared, eph_pub, own), stanza.body)
            if file_key is not None:
                return file_key
        raise IncorrectIdentityError("no X25519 stanza for this identity")
