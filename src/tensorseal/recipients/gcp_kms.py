"""Google Cloud KMS recipients: ``gcpkms:projects/P/locations/L/keyRings/R/cryptoKeys/K``.

Envelope encryption: Cloud KMS ``Encrypt`` wraps the 32-byte file key under a symmetric
CryptoKey (its primary version), with the file's model identity (:meth:`KeyContext.aad`)
as ``additional_authenticated_data``, so the ciphertext only decrypts for a file that
claims the same model.

Stanza ``gcp-kms``: args = [the CryptoKey resource name]; body = the ``ciphertext`` (which
names the key version inside it, so decryption after a rotation needs no version).

Credentials come from Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``,
``gcloud auth application-default login``, the metadata server), or pass ``client=``.
Needs ``pip install 'tensorseal[gcp]'`` (``google-cloud-kms``), imported only when used.

No Cloud KMS emulator exists, so this is tested at the SDK's transport boundary: the real
``KeyManagementServiceClient`` talks gRPC to an in-process fake KeyManagementService on
loopback that checks each request and answers as Cloud KMS does (AES-GCM with the AAD).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import HeaderAuthenticationError, IncorrectIdentityError, InvalidKeyError, KeyServiceError
from ..format.header import Stanza
from ._service import check_file_key, check_name, first_that_opens, import_sdk, own_stanzas, strip_prefix
from .base import NO_CONTEXT, KeyContext

STANZA_TYPE = "gcp-kms"
RECIPIENT_PREFIX = "gcpkms:"
_KEY_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+")
_HINT = "check the key name and Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS)"


class GcpKmsKey:
    """A Cloud KMS CryptoKey; wraps with ``Encrypt`` and unwraps its stanzas with ``Decrypt``.

    ``client`` is a ``google.cloud.kms.KeyManagementServiceClient`` (default: one with
    Application Default Credentials, made on first use). Raises InvalidKeyError if ``name``
    is not a CryptoKey resource name.
    """

    def __init__(self, name: str, *, client: Any = None) -> None:
        check_name(name, "GCP KMS")
        if not _KEY_NAME.fullmatch(name):
            raise InvalidKeyError("GCP KMS key must be projects/P/locations/L/keyRings/R/cryptoKeys/K")
        self.name = name
        self._client = client

    @classmethod
    def parse(cls, text: str) -> GcpKmsKey:
        """Parse ``gcpkms:projects/.../cryptoKeys/K``. Raises InvalidKeyError."""
        return cls(strip_prefix(text, RECIPIENT_PREFIX, "GCP KMS"))

    def __str__(self) -> str:
        return RECIPIENT_PREFIX + self.name


    def matches(self, stanza: Stanza) -> bool:
        """Whether ``stanza`` is wrapped by this key (``rewrap --remove``). Raises FormatError."""
        return bool(own_stanzas([stanza], STANZA_TYPE, 1, lambda stanza: stanza.args[0] == self.name))
    def __repr__(self) -> str:
        return f"GcpKmsKey({self.name!r})"

    def audit_info(self) -> dict[str, str | None]:
        """How audit records name this key (tensorseal.audit): stanza type and CryptoKey name."""
        return {"kind": STANZA_TYPE, "key_id": self.name}

    def wrap(self, file_key: bytes, context: KeyContext = NO_CONTEXT) -> list[Stanza]:
        """Cloud KMS ``Encrypt`` of ``file_key`` with ``context`` as AAD.

        Raises KeyServiceError (refused, unknown or disabled key, no credentials,
        unreachable), UsageError (google-cloud-kms not installed).
        """
        request = {"name": self.name, "plaintext": bytes(file_key), "additional_authenticated_data": context.aad()}
        resp = self._call("encrypt", request)
        return [Stanza(STANZA_TYPE, (self.name,), bytes(resp.ciphertext))]

    def unwrap(self, stanzas: Sequence[Stanza], context: KeyContext = NO_CONTEXT) -> bytes:
        """Cloud KMS ``Decrypt`` of this key's stanzas, in file order, under ``context``.

        Raises IncorrectIdentityError (no stanza for this key), HeaderAuthenticationError
        (KMS says the ciphertext does not decrypt under ``context``: the header's model
        identity or the stanza was changed), KeyServiceError, FormatError, UsageError.
        """
        own = own_stanzas(stanzas, STANZA_TYPE, 1, lambda s: s.args[0] == self.name)
        if not own:
            raise IncorrectIdentityError(f"no gcp-kms stanza for {self.name}")
        aad = context.aad()

        def open_one(stanza: Stanza) -> bytes:
            request = {"name": self.name, "ciphertext": stanza.body, "additional_authenticated_data": aad}
            return check_file_key(self._call("decrypt", request).plaintext, "GCP KMS Decrypt")

        return first_that_opens(own, open_one)

    def kms_client(self) -> Any:
        """The KeyManagementServiceClient (made on first use). Raises UsageError, KeyServiceError."""
        if self._client is None:
            kms = import_sdk("google.cloud.kms", "google-cloud-kms", "gcp")
            auth_exceptions = import_sdk("google.auth.exceptions", "google-cloud-kms", "gcp")
            try:
                self._client = kms.KeyManagementServiceClient()
            except auth_exceptions.GoogleAuthError as exc:
                raise KeyServiceError(f"gcp kms: no credentials: {exc}", hint=_HINT) from None
        return self._client

    def _call(self, method: str, request: dict[str, Any]) -> Any:
        client = self.kms_client()
        api_exceptions = import_sdk("google.api_core.exceptions", "google-cloud-kms", "gcp")
        auth_exceptions = import_sdk("google.auth.exceptions", "google-cloud-kms", "gcp")
        try:
            return getattr(client, method)(request=request)
        except api_exceptions.InvalidArgument as exc:
            if method == "decrypt":  # Cloud KMS: "Decryption failed: the ciphertext is invalid."
                raise HeaderAuthenticationError(
                    f"gcp kms refused the stanza for {self.name}: the file's model identity is not the one the "
                    "key was wrapped for, or the stanza was changed"
                ) from None
            raise KeyServiceError(f"gcp kms {method} with {self.name} failed: {exc.message}", hint=_HINT) from None
        except api_exceptions.GoogleAPICallError as exc:  # PermissionDenied, NotFound, FailedPrecondition...
            raise KeyServiceError(
                f"gcp kms {method} with {self.name} failed: {type(exc).__name__}: {exc.message}", hint=_HINT
            ) from None
        except (api_exceptions.RetryError, auth_exceptions.GoogleAuthError) as exc:
            raise KeyServiceError(f"gcp kms {method} with {self.name} failed: {exc}", hint=_HINT) from None


def ambient(stanzas: Sequence[Stanza]) -> list[GcpKmsKey]:
    """One GcpKmsKey per CryptoKey named by the file's ``gcp-kms`` stanzas."""
    seen: dict[str, GcpKmsKey] = {}
    for stanza in stanzas:
        if stanza.type == STANZA_TYPE and len(stanza.args) == 1 and stanza.args[0] not in seen:
            try:
                seen[stanza.args[0]] = GcpKmsKey(stanza.args[0])
            except InvalidKeyError:
                continue
    return list(seen.values())
