"""Model master keys (MCK): one secret 256-bit key per model version, held by the vendor.

A :class:`MasterKey` is both recipient and identity: the vendor seals a model version to
it (``tensorseal encrypt --master MCK_FILE``) and can open it with it (``-i MCK_FILE``);
customers open it through a device licence (:mod:`tensorseal.recipients.licence`), which
carries the MCK wrapped under a key that only the licensed device and licence key derive.

Stanza ``licence``: args = [base64(key id), base64(s)], ``key id`` = HKDF(MCK, "",
"master-key-id", 16 bytes) (names the key without revealing it), ``s`` a fresh 16-byte
salt; ``wrap_key = HKDF(MCK, s, "licence")``; body = ChaCha20-Poly1305(wrap_key, nonce
0^12, file key, aad = KeyContext.aad()), 48 bytes. The MCK is bound to one model name and
version, and wrapping refuses a file whose model identity is another.

Key string: ``TSEAL-MASTER-KEY-1`` + base32(MCK ‖ u16be(len n) ‖ n ‖ u16be(len v) ‖ v ‖
checksum), n and v the UTF-8 model name and version: one self-contained line.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .._keyfile import one_key_line
from ..errors import (
    FormatError,
    HeaderAuthenticationError,
    IncorrectIdentityError,
    InvalidKeyError,
    UsageError,
)
from ..format.constants import KEY_SIZE, MAX_IDENTITY_FIELD, NONCE_SIZE
from ..format.header import ModelIdentity, Stanza, b64encode
from ..format.keys import hkdf
from .base import NO_CONTEXT, WRAPPED_KEY_SIZE, KeyContext, b64arg, decode_key_string, encode_key_string

__all__ = ["KEY_PREFIX", "STANZA_TYPE", "MasterKey"]

STANZA_TYPE = "licence"
KEY_PREFIX = "TSEAL-MASTER-KEY-1"
KEY_ID_SIZE = 16
SALT_SIZE = 16


def _model_field(value: str, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise UsageError(f"a master key needs a non-empty model {what}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"model {what} is not valid Unicode") from None
    if len(raw) > MAX_IDENTITY_FIELD:
        raise UsageError(f"model {what} is longer than {MAX_IDENTITY_FIELD} bytes")
    return raw


class MasterKey:
    """A model version's master key (MCK): wraps and unwraps ``licence`` stanzas.

    Raises InvalidKeyError if ``key`` is not 32 bytes, UsageError if the model name or
    version is empty or longer than 256 bytes of UTF-8.
    """

    def __init__(self, key: bytes, name: str, version: str) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise InvalidKeyError(f"a master key is {KEY_SIZE} bytes")
        _model_field(name, "name")
        _model_field(version, "version")
        self._key = bytes(key)
        self.name, self.version = name, version
        self.key_id = hkdf(self._key, b"", "master-key-id", KEY_ID_SIZE)

    @classmethod
    def generate(cls, name: str, version: str) -> MasterKey:
        """A fresh random MCK for model ``name`` version ``version``. Raises UsageError."""
        return cls(os.urandom(KEY_SIZE), name, version)

    @classmethod
    def parse(cls, text: str) -> MasterKey:
        """Parse ``TSEAL-MASTER-KEY-1...``. Raises InvalidKeyError."""
        text = text.strip()
        if not text.upper().startswith(KEY_PREFIX):
            raise InvalidKeyError(f"master key must start with {KEY_PREFIX!r}")
        body = text[len(KEY_PREFIX) :]
        size = len(body) * 5 // 8 - 4  # payload bytes the base32 text can hold, less the checksum
        if size < KEY_SIZE + 6:
            raise InvalidKeyError("master key is too short")
        payload = decode_key_string(KEY_PREFIX, text, size, "master key")
        fields, pos = [], KEY_SIZE
        for _ in range(2):
            if pos + 2 > len(payload):
                raise InvalidKeyError("master key is truncated")
            (n,) = struct.unpack_from(">H", payload, pos)
            fields.append(payload[pos + 2 : pos + 2 + n])
            pos += 2 + n
            if pos > len(payload):
                raise InvalidKeyError("master key is truncated")
        if pos != len(payload):
            raise InvalidKeyError("master key has trailing bytes")
        try:
            name, version = (f.decode("utf-8") for f in fields)
            return cls(payload[:KEY_SIZE], name, version)
        except (UnicodeDecodeError, UsageError):
            raise InvalidKeyError("master key names an invalid model name or version") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> MasterKey:
        """The one master key line in a key file (``#`` comments allowed). Raises InvalidKeyError, OSError."""
        return cls.parse(one_key_line(path, "master key"))

    @property
    def model(self) -> ModelIdentity:
        """The model name and version this key seals."""
        return ModelIdentity(name=self.name, version=self.version)

    def __str__(self) -> str:
        name, version = _model_field(self.name, "name"), _model_field(self.version, "version")
        payload = self._key + struct.pack(">H", len(name)) + name + struct.pack(">H", len(version)) + version
        return encode_key_string(KEY_PREFIX, payload, upper=True)

    def __repr__(self) -> str:
        return f"MasterKey(name={self.name!r}, version={self.version!r}, key_id={self.key_id.hex()!r})"

    def audit_info(self) -> dict[str, str | None]:
        """How audit records name this key (tensorseal.audit): stanza type and key id (hex)."""
        return {"kind": STANZA_TYPE, "key_id": self.key_id.hex()}

    def secret_bytes(self) -> bytes:
        """The raw 32-byte MCK (for wrapping it into licences). Handle as a secret."""
        return self._key

    def wrap(self, file_key: bytes, context: KeyContext = NO_CONTEXT) -> list[Stanza]:
        """Seal ``file_key`` with ``context`` as associated data.

        Raises UsageError if the file's model name and version are not this key's.
        """
        self._check_model(context, UsageError)
        return [self._wrap_with(file_key, context, os.urandom(SALT_SIZE))]

    def _wrap_with(self, file_key: bytes, context: KeyContext, salt: bytes) -> Stanza:
        """Deterministic entry point for test vectors."""
        wrap_key = hkdf(self._key, salt, "licence")
        body = ChaCha20Poly1305(wrap_key).encrypt(bytes(NONCE_SIZE), bytes(file_key), context.aad())
        return Stanza(STANZA_TYPE, (b64encode(self.key_id), b64encode(salt)), body)

    def unwrap(self, stanzas: Sequence[Stanza], context: KeyContext = NO_CONTEXT) -> bytes:
        """Open the ``licence`` stanza that names this key.

        Raises IncorrectIdentityError (no stanza names this key: the file is for another
        model version or master key), FormatError (a malformed ``licence`` stanza),
        HeaderAuthenticationError (a stanza names this key but the file's model identity
        is not this key's, or it does not open under it: the header was changed).
        """
        own = []
        for stanza in stanzas:
            if stanza.type != STANZA_TYPE:
                continue
            if len(stanza.args) != 2:
                raise FormatError("licence stanza must have exactly two arguments")
            key_id = b64arg(stanza.args[0], KEY_ID_SIZE, "licence stanza key id")
            salt = b64arg(stanza.args[1], SALT_SIZE, "licence stanza salt")
            if len(stanza.body) != WRAPPED_KEY_SIZE:
                raise FormatError(f"wrapped key must be {WRAPPED_KEY_SIZE} bytes, got {len(stanza.body)}")
            if key_id == self.key_id:
                own.append((salt, stanza.body))
        if not own:
            raise IncorrectIdentityError(f"no licence stanza for the master key of {self.name} {self.version}")
        self._check_model(context, HeaderAuthenticationError)
        for salt, body in own:
            try:
                return ChaCha20Poly1305(hkdf(self._key, salt, "licence")).decrypt(
                    bytes(NONCE_SIZE), body, context.aad()
                )
            except InvalidTag:
                continue
        raise HeaderAuthenticationError(
            "the licence stanza does not open under the file's model identity: the header was changed"
        )

    def _check_model(self, context: KeyContext, error: type[UsageError | HeaderAuthenticationError]) -> None:
        got = (context.identity.name, context.identity.version)
        if got != (self.name, self.version):
            hint = f"seal it as --name {self.name!r} --model-version {self.version!r}" if error is UsageError else None
            raise error(
                f"the file is model {got[0]!r} version {got[1]!r}, the master key is for "
                f"{self.name!r} version {self.version!r}",
                hint=hint,
            )
