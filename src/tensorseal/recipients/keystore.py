"""OS key store recipients: ``keyring:<service>/<name>``, a 256-bit key-encryption key
held by the platform's key store (Secret Service / GNOME Keyring, macOS Keychain, Windows
Credential Locker) through the ``keyring`` package.

The store holds the KEK as base64 of 32 random bytes (:func:`create_keyring_kek`). Wrapping
is the ``symmetric`` type's with the model identity as AEAD associated data:

Stanza ``keyring``: args = [service, name, base64(s)] with ``s`` a fresh 16-byte salt;
``wrap_key = HKDF(KEK, s, "keyring")``; body = ChaCha20-Poly1305(wrap_key, nonce 0^12,
file key, aad = KeyContext.aad()), 48 bytes. Unlike ``symmetric`` the stanza names its
store entry (so that a reader finds the key with no flags); files sealed to the same entry
can be linked by that name.

``service`` is the part before the first ``/``, ``name`` the rest. Tested against a real
GNOME Keyring (Secret Service over D-Bus) started by the test under ``dbus-run-session``.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..errors import FormatError, IncorrectIdentityError, InvalidKeyError, KeyServiceError, UsageError
from ..format.constants import KEY_SIZE, NONCE_SIZE
from ..format.header import Stanza, b64encode
from ..format.keys import hkdf
from ._service import check_name, import_sdk, own_stanzas, strip_prefix
from .base import NO_CONTEXT, WRAPPED_KEY_SIZE, KeyContext, b64arg

STANZA_TYPE = "keyring"
RECIPIENT_PREFIX = "keyring:"
SALT_SIZE = 16
_HINT = "create the key with tensorseal.recipients.create_keyring_kek, or check PYTHON_KEYRING_BACKEND"


class KeyringKey:
    """A KEK in the OS key store under (``service``, ``name``); wraps and unwraps.

    The key is read from the store on every wrap/unwrap (never cached). Raises
    InvalidKeyError for an empty or oversized service or name.
    """

    def __init__(self, service: str, name: str) -> None:
        check_name(service, "keyring service")
        check_name(name, "keyring")
        if "/" in service:
            raise InvalidKeyError("a keyring service name cannot contain '/'")
        self.service, self.name = service, name

    @classmethod
    def parse(cls, text: str) -> KeyringKey:
        """Parse ``keyring:<service>/<name>``. Raises InvalidKeyError."""
        service, sep, name = strip_prefix(text, RECIPIENT_PREFIX, "keyring").partition("/")
        if not sep:
            raise InvalidKeyError("keyring recipient must be keyring:<service>/<name>")
        return cls(service, name)

    def __str__(self) -> str:
        return f"{RECIPIENT_PREFIX}{self.service}/{self.name}"


    def matches(self, stanza: Stanza) -> bool:
        """Whether ``stanza`` is wrapped by this key (``rewrap --remove``). Raises FormatError."""
        return bool(own_stanzas([stanza], STANZA_TYPE, 3, lambda stanza: (stanza.args[0], stanza.args[1]) == (self.service, self.name)))
    def __repr__(self) -> str:
        return f"KeyringKey({self.service!r}, {self.name!r})"

    def audit_info(self) -> dict[str, str | None]:
        """How audit records name this key (tensorseal.audit): stanza type and entry service/name."""
        return {"kind": STANZA_TYPE, "key_id": f"{self.service}/{self.name}"}

    def wrap(self, file_key: bytes, context: KeyContext = NO_CONTEXT) -> list[Stanza]:
        """Seal ``file_key`` under the stored KEK with ``context`` as associated data.

        Raises KeyServiceError (no key store, no such entry), InvalidKeyError (the entry is
        not a base64 32-byte key), UsageError (keyring not installed).
        """
        return [self._wrap_with(file_key, context, os.urandom(SALT_SIZE))]

    def _wrap_with(self, file_key: bytes, context: KeyContext, salt: bytes) -> Stanza:
        """Deterministic entry point for test vectors."""
        wrap_key = hkdf(self._kek(), salt, "keyring")
        body = ChaCha20Poly1305(wrap_key).encrypt(bytes(NONCE_SIZE), bytes(file_key), context.aad())
        return Stanza(STANZA_TYPE, (self.service, self.name, b64encode(salt)), body)

    def unwrap(self, stanzas: Sequence[Stanza], context: KeyContext = NO_CONTEXT) -> bytes:
        """Open this entry's ``keyring`` stanzas under ``context``.

        Raises IncorrectIdentityError (no stanza names this entry, or none opens: the entry
        holds another key, or the file's model identity is not the one it was sealed for),
        KeyServiceError, InvalidKeyError, FormatError, UsageError.
        """
        own = own_stanzas(stanzas, STANZA_TYPE, 3, lambda s: (s.args[0], s.args[1]) == (self.service, self.name))
        if not own:
            raise IncorrectIdentityError(f"no keyring stanza for {self}")
        parsed = []
        for stanza in own:
            salt = b64arg(stanza.args[2], SALT_SIZE, "keyring stanza salt")
            if len(stanza.body) != WRAPPED_KEY_SIZE:
                raise FormatError(f"wrapped key must be {WRAPPED_KEY_SIZE} bytes, got {len(stanza.body)}")
            parsed.append((salt, stanza.body))
        kek = self._kek()
        for salt, body in parsed:
            try:
                return ChaCha20Poly1305(hkdf(kek, salt, "keyring")).decrypt(bytes(NONCE_SIZE), body, context.aad())
            except InvalidTag:
                continue
        raise IncorrectIdentityError(
            f"the key in {self} does not open its stanza: the entry holds another key, or the file's model "
            "identity is not the one it was sealed for"
        )

    def _kek(self) -> bytes:
        keyring = import_sdk("keyring", "keyring", "kms")
        keyring_errors = import_sdk("keyring.errors", "keyring", "kms")
        try:
            text = keyring.get_password(self.service, self.name)
        except keyring_errors.KeyringError as exc:
            raise KeyServiceError(f"the OS key store cannot be used: {exc}", hint=_HINT) from None
        if text is None:
            raise KeyServiceError(f"no key {self.service}/{self.name} in the OS key store", hint=_HINT)
        try:
            kek = base64.b64decode(text.strip().encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            kek = b""
        if len(kek) != KEY_SIZE:
            raise InvalidKeyError(f"the OS key store entry {self.service}/{self.name} is not a base64 32-byte key")
        return kek


def create_keyring_kek(service: str, name: str, *, replace: bool = False) -> KeyringKey:
    """Store a fresh random 256-bit KEK under (``service``, ``name``) and return its key.

    Raises UsageError (an entry exists and ``replace`` is false: replacing a KEK makes every
    file sealed to it unreadable; or keyring is not installed), KeyServiceError (no usable
    key store), InvalidKeyError (bad names).
    """
    key = KeyringKey(service, name)
    keyring = import_sdk("keyring", "keyring", "kms")
    keyring_errors = import_sdk("keyring.errors", "keyring", "kms")
    try:
        if not replace and keyring.get_password(service, name) is not None:
            raise UsageError(
                f"the OS key store already has {service}/{name}",
                hint="files sealed to it would become unreadable; pass replace=True only if you mean it",
            )
        keyring.set_password(service, name, base64.b64encode(os.urandom(KEY_SIZE)).decode("ascii"))
    except keyring_errors.KeyringError as exc:
        raise KeyServiceError(f"the OS key store cannot be used: {exc}", hint=_HINT) from None
    return key


def ambient(stanzas: Sequence[Stanza]) -> list[KeyringKey]:
    """One KeyringKey per (service, name) named by the file's ``keyring`` stanzas."""
    seen: dict[tuple[str, str], KeyringKey] = {}
    for stanza in stanzas:
        if stanza.type == STANZA_TYPE and len(stanza.args) == 3 and (stanza.args[0], stanza.args[1]) not in seen:
            try:
                seen[(stanza.args[0], stanza.args[1])] = KeyringKey(stanza.args[0], stanza.args[1])
            except InvalidKeyError:
                continue
    return list(seen.values())
