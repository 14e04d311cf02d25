"""HashiCorp Vault / OpenBao Transit recipients: ``vault:<mount>/<key>`` (``vault:<key>``: mount ``transit``).

Envelope encryption: Transit ``encrypt`` wraps the 32-byte file key under a named Transit
key, with the file's model identity (:meth:`KeyContext.aad`) as ``associated_data``, so
the ciphertext only decrypts for a file that claims the same model. ``associated_data``
needs an AEAD key type (``aes256-gcm96``, the default, ``aes128-gcm96`` or
``chacha20-poly1305``); OpenBao refuses it for other types, and for ``derived`` keys it
asks for a ``context`` instead: such keys are refused here with a hint, so the binding is
never silently dropped. (Checked against OpenBao 2.7: ``context`` on a non-derived key is
ignored without an error, which is why it is not used for the binding.)

Stanza ``vault-transit``: args = [mount, key name]; body = the Transit ciphertext string
(``vault:vN:...``, ASCII), which names the key version that wrapped it.

Rotation: after ``transit/keys/<key>/rotate`` old stanzas still unwrap (Transit keeps old
versions unless ``min_decryption_version`` is raised). :meth:`VaultTransitKey.rewrap`
moves a stanza to the latest version. Transit's own ``rewrap`` endpoint takes no
``associated_data`` (OpenBao 2.7 answers "message authentication failed"), so rewrap is
``decrypt`` + ``encrypt`` with the same token: it needs both permissions and the file key
passes through this process, as it does when the file is opened.

The server address and token come from ``VAULT_ADDR`` and ``VAULT_TOKEN`` (or
``~/.vault-token``), with ``VAULT_NAMESPACE`` and ``VAULT_CACERT`` if set, or from the
constructor. Tested against a real OpenBao dev server (``bao server -dev``) on loopback.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence
from typing import Any

from ..errors import FormatError, HeaderAuthenticationError, IncorrectIdentityError, InvalidKeyError, KeyServiceError
from ..format.header import Stanza
from ._service import check_file_key, check_name, first_that_opens, import_sdk, own_stanzas, strip_prefix
from .base import NO_CONTEXT, KeyContext

STANZA_TYPE = "vault-transit"
RECIPIENT_PREFIX = "vault:"
DEFAULT_MOUNT = "transit"
_CIPHERTEXT = re.compile(r"vault:v([1-9][0-9]{0,9}):[A-Za-z0-9+/=]+")
_HINT = "set VAULT_ADDR and VAULT_TOKEN (a token allowed to use transit/encrypt and transit/decrypt on this key)"


def key_version(stanza: Stanza) -> int:
    """The Transit key version that wrapped a ``vault-transit`` stanza. Raises FormatError."""
    match = _CIPHERTEXT.fullmatch(stanza.body.decode("ascii", "replace"))
    if match is None:
        raise FormatError("vault-transit stanza body is not a transit ciphertext (vault:vN:...)")
    return int(match.group(1))


class VaultTransitKey:
    """A Transit key: wraps with ``transit/encrypt`` and unwraps its own stanzas with
    ``transit/decrypt``, both with the model identity as ``associated_data``.

    ``client`` (an ``hvac.Client``) overrides ``url``/``token``, which default to
    ``VAULT_ADDR``/``VAULT_TOKEN``. Raises InvalidKeyError for a bad mount or key name.
    """

    def __init__(
        self, mount: str, key: str, *, url: str | None = None, token: str | None = None, client: Any = None
    ) -> None:
        mount = mount.strip("/")
        check_name(mount, "Vault transit mount")
        check_name(key, "Vault transit")
        if "/" in key:
            raise InvalidKeyError("a transit key name cannot contain '/'")
        self.mount, self.key = mount, key
        self.url, self.token = url, token
        self._client = client

    @classmethod
    def parse(cls, text: str) -> VaultTransitKey:
        """Parse ``vault:<mount>/<key>`` (``vault:<key>`` uses the ``transit`` mount).

        The key is the last path segment; the mount is everything before it. Raises
        InvalidKeyError.
        """
        mount, _, key = strip_prefix(text, RECIPIENT_PREFIX, "Vault transit").rpartition("/")
        if not key:
            raise InvalidKeyError("Vault transit recipient must be vault:<mount>/<key>")
        return cls(mount.strip("/") or DEFAULT_MOUNT, key)

    def __str__(self) -> str:
        return f"{RECIPIENT_PREFIX}{self.mount}/{self.key}"


    def matches(self, stanza: Stanza) -> bool:
        """Whether ``stanza`` is wrapped by this key (``rewrap --remove``). Raises FormatError."""
        return bool(own_stanzas([stanza], STANZA_TYPE, 2, lambda stanza: stanza.args[0].strip("/") == self.mount and stanza.args[1] == self.key))
    def __repr__(self) -> str:
        return f"VaultTransitKey({self.mount!r}, {self.key!r})"

    def audit_info(self) -> dict[str, str | None]:
        """How audit records name this key (tensorseal.audit): stanza type and mount/key."""
        return {"kind": STANZA_TYPE, "key_id": f"{self.mount}/{self.key}"}

    # ---- the two interfaces ---------------------------------------------------------------
    def wrap(self, file_key: bytes, context: KeyContext = NO_CONTEXT) -> list[Stanza]:
        """Transit ``encrypt`` of ``file_key`` with ``context`` as associated data.

        Raises KeyServiceError (no server or token, refused, unknown key, a key type that
        cannot take associated data), UsageError (hvac not installed).
        """
        return [self._encrypt(file_key, context)]

    def unwrap(self, stanzas: Sequence[Stanza], context: KeyContext = NO_CONTEXT) -> bytes:
        """Transit ``decrypt`` of this key's stanzas, in file order, under ``context``.

        Raises IncorrectIdentityError (no stanza for this mount/key), HeaderAuthenticationError
        (Transit says the ciphertext does not authenticate under ``context``: the header's
        model identity or the stanza was changed), KeyServiceError, FormatError, UsageError.
        """
        own = self._own(stanzas)
        if not own:
            raise IncorrectIdentityError(f"no vault-transit stanza for {self}")
        return first_that_opens(own, lambda s: self._decrypt(s, context))

    def rewrap(self, stanza: Stanza, context: KeyContext = NO_CONTEXT) -> Stanza:
        """The same file key wrapped under the key's latest version (after a rotation).

        Raises IncorrectIdentityError (the stanza is not for this key) and whatever
        :meth:`unwrap` and :meth:`wrap` raise.
        """
        if not self._own([stanza]):
            raise IncorrectIdentityError(f"the stanza is not for {self}")
        return self._encrypt(self._decrypt(stanza, context), context)

    # ---- internals ----------------------------------------------------------------------
    def _own(self, stanzas: Sequence[Stanza]) -> list[Stanza]:
        return own_stanzas(
            stanzas, STANZA_TYPE, 2, lambda s: s.args[0].strip("/") == self.mount and s.args[1] == self.key
        )

    def _encrypt(self, file_key: bytes, context: KeyContext) -> Stanza:
        resp = self._call(
            "encrypt_data",
            name=self.key,
            mount_point=self.mount,
            plaintext=base64.b64encode(file_key).decode("ascii"),
            associated_data=base64.b64encode(context.aad()).decode("ascii"),
        )
        ciphertext = resp["data"]["ciphertext"]
        stanza = Stanza(STANZA_TYPE, (self.mount, self.key), ciphertext.encode("ascii"))
        key_version(stanza)  # a well-formed answer, or FormatError
        return stanza

    def _decrypt(self, stanza: Stanza, context: KeyContext) -> bytes:
        key_version(stanza)
        resp = self._call(
            "decrypt_data",
            name=self.key,
            mount_point=self.mount,
            ciphertext=stanza.body.decode("ascii"),
            associated_data=base64.b64encode(context.aad()).decode("ascii"),
        )
        try:
            plaintext = base64.b64decode(resp["data"]["plaintext"], validate=True)
        except (binascii.Error, KeyError, TypeError):
            raise KeyServiceError("vault transit decrypt returned no valid plaintext") from None
        return check_file_key(plaintext, "Vault transit decrypt")

    def vault_client(self) -> Any:
        """The ``hvac.Client`` (made on first use). Raises UsageError, KeyServiceError."""
        if self._client is None:
            hvac = import_sdk("hvac", "hvac", "kms")
            url = self.url or os.environ.get("VAULT_ADDR")
            if not url:
                raise KeyServiceError("VAULT_ADDR is not set: no Vault / OpenBao server to ask", hint=_HINT)
            verify: bool | str = os.environ.get("VAULT_CACERT") or True
            self._client = hvac.Client(
                url=url, token=self.token, verify=verify, namespace=os.environ.get("VAULT_NAMESPACE") or None
            )
        return self._client

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        client = self.vault_client()
        hvac_exceptions = import_sdk("hvac.exceptions", "hvac", "kms")
        requests_exceptions = import_sdk("requests.exceptions", "requests", "kms")
        try:
            return getattr(client.secrets.transit, method)(**kwargs)
        except hvac_exceptions.InvalidRequest as exc:
            text = str(exc)
            if method == "decrypt_data" and "message authentication failed" in text:
                raise HeaderAuthenticationError(
                    f"vault transit refused the stanza for {self}: the file's model identity is not the one the "
                    "key was wrapped for, or the stanza was changed"
                ) from None
            hint = _HINT
            if "derivation" in text or "non-AEAD" in text:
                hint = "use a non-derived AEAD transit key (aes256-gcm96, the default, or chacha20-poly1305)"
            raise KeyServiceError(
                f"vault transit {method} with {self} failed: {_first_line(text)}", hint=hint
            ) from None
        except hvac_exceptions.VaultError as exc:  # Forbidden, InvalidPath, Unauthorized, VaultDown, ...
            raise KeyServiceError(
                f"vault transit {method} with {self} failed: {type(exc).__name__}: {_first_line(str(exc))}", hint=_HINT
            ) from None
        except requests_exceptions.RequestException as exc:
            raise KeyServiceError(f"vault transit: cannot reach the server: {type(exc).__name__}", hint=_HINT) from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no message"


def ambient(stanzas: Sequence[Stanza]) -> list[VaultTransitKey]:
    """One VaultTransitKey per (mount, key) named by the file's ``vault-transit`` stanzas."""
    seen: dict[tuple[str, str], VaultTransitKey] = {}
    for stanza in stanzas:
        if stanza.type == STANZA_TYPE and len(stanza.args) == 2 and tuple(stanza.args) not in seen:
            try:
                seen[(stanza.args[0], stanza.args[1])] = VaultTransitKey(stanza.args[0], stanza.args[1])
            except InvalidKeyError:
                continue
    return list(seen.values())
