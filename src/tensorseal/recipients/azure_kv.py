"""Azure Key Vault / Managed HSM recipients: ``azurekv:https://<vault>/keys/<name>[/<version>][#A256GCM]``.

Two algorithms, named in the stanza:

* ``RSA-OAEP-256`` (the default; RSA keys in a vault or Managed HSM): ``wrap_key`` /
  ``unwrap_key`` of the 32-byte file key. **Key Vault's wrap operations take no associated
  data, so the model identity is not bound by the service** for this algorithm: Azure
  cannot refuse a stanza replayed onto another model, and its logs do not name the model.
  The file itself stays bound: the stanza is covered by the header MAC under the file key.
* ``A256GCM`` (``#A256GCM``; AES ``oct-HSM`` keys in a Managed HSM): ``encrypt`` /
  ``decrypt`` with the model identity (:meth:`KeyContext.aad`) as
  ``additional_authenticated_data``, so the service refuses a stanza under another model.

Stanza ``azure-kv``: args = [the versioned key id URL that wrapped it, algorithm]; body =
the wrapped key (RSA) or IV (12) ‖ ciphertext (32) ‖ tag (16) (A256GCM). The version is
recorded so that the key can be rotated; if the SDK cannot tell it (no ``keys/get``
permission), give it in the URL.

Credentials: ``azure.identity.DefaultAzureCredential`` (``AZURE_CLIENT_ID``...,
managed identity, ``az login``) unless ``credential=`` is given; extra ``client_kwargs``
go to ``CryptographyClient``. Needs ``pip install 'tensorseal[azure]'``.

No Key Vault emulator exists, so this is tested at the SDK's transport boundary: the real
``CryptographyClient`` (azure-core pipeline, challenge authentication, TLS) talks HTTPS to
an in-process fake Key Vault on loopback that checks each request and answers as Key
Vault does (real RSA-OAEP-256 and AES-GCM).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import (
    FormatError,
    HeaderAuthenticationError,
    IncorrectIdentityError,
    InvalidKeyError,
    KeyServiceError,
    UsageError,
)
from ..format.header import Stanza
from ._service import check_file_key, check_name, first_that_opens, import_sdk, own_stanzas, strip_prefix
from .base import NO_CONTEXT, KeyContext

STANZA_TYPE = "azure-kv"
RECIPIENT_PREFIX = "azurekv:"
RSA_OAEP_256 = "RSA-OAEP-256"
A256GCM = "A256GCM"
ALGORITHMS = (RSA_OAEP_256, A256GCM)
IV_SIZE, TAG_SIZE = 12, 16
_HINT = "check the key URL and the Azure credentials (AZURE_CLIENT_ID, managed identity, az login)"


def _split_key_id(key_id: str) -> tuple[str, str, str | None]:
    """(vault URL, key name, version or None) of ``https://host/keys/name[/version]``."""
    parts = urlsplit(key_id)
    path = [p for p in parts.path.split("/") if p]
    if parts.scheme != "https" or not parts.netloc or len(path) not in (2, 3) or path[0] != "keys":
        raise InvalidKeyError("Azure key must be https://<vault>/keys/<name>[/<version>]")
    if parts.query or parts.fragment:
        raise InvalidKeyError("Azure key URL must have no query or fragment")
    return f"https://{parts.netloc}", path[1], path[2] if len(path) == 3 else None


class AzureKeyVaultKey:
    """A Key Vault / Managed HSM key; wraps and unwraps its own ``azure-kv`` stanzas.

    Raises InvalidKeyError for a malformed key URL or an unknown algorithm.
    """

    def __init__(
        self,
        key_id: str,
        *,
        algorithm: str = RSA_OAEP_256,
        credential: Any = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        check_name(key_id, "Azure Key Vault")
        self.vault_url, self.name, self.version = _split_key_id(key_id)
        if algorithm not in ALGORITHMS:
            raise InvalidKeyError(f"Azure Key Vault algorithm must be one of {', '.join(ALGORITHMS)}")
        self.key_id, self.algorithm = key_id, algorithm
        self._credential = credential
        self._client_kwargs = dict(client_kwargs or {})

    @classmethod
    def parse(cls, text: str) -> AzureKeyVaultKey:
        """Parse ``azurekv:<key-url>[#A256GCM]``. Raises InvalidKeyError."""
        rest = strip_prefix(text, RECIPIENT_PREFIX, "Azure Key Vault")
        url, _, algorithm = rest.partition("#")
        return cls(url, algorithm=algorithm or RSA_OAEP_256)

    def __str__(self) -> str:
        return RECIPIENT_PREFIX + self.key_id + ("" if self.algorithm == RSA_OAEP_256 else "#" + self.algorithm)


    def matches(self, stanza: Stanza) -> bool:
        """Whether ``stanza`` is wrapped by this key (``rewrap --remove``). Raises FormatError."""
        return bool(own_stanzas([stanza], STANZA_TYPE, 2, lambda stanza: self._is_mine(stanza)))
    def __repr__(self) -> str:
        return f"AzureKeyVaultKey({self.key_id!r}, algorithm={self.algorithm!r})"

    def audit_info(self) -> dict[str, str | None]:
        """How audit records name this key (tensorseal.audit): stanza type and key URL."""
        return {"kind": STANZA_TYPE, "key_id": self.key_id}

    # ---- the two interfaces ---------------------------------------------------------------
    def wrap(self, file_key: bytes, context: KeyContext = NO_CONTEXT) -> list[Stanza]:
        """Wrap ``file_key`` (RSA-OAEP-256: ``context`` is not sent, see the module doc;
        A256GCM: ``context`` as AAD).

        Raises KeyServiceError (refused, unknown or disabled key, no credentials,
        unreachable), UsageError (SDK not installed, or the key version cannot be known).
        """
        crypto = self._crypto(self.key_id)
        enums = import_sdk("azure.keyvault.keys.crypto", "azure-keyvault-keys", "azure")
        if self.algorithm == RSA_OAEP_256:
            result = self._call(crypto.wrap_key, enums.KeyWrapAlgorithm.rsa_oaep_256, bytes(file_key))
            body = bytes(result.encrypted_key)
        else:
            result = self._call(
                crypto.encrypt, enums.EncryptionAlgorithm.a256_gcm, bytes(file_key),
                additional_authenticated_data=context.aad(),
            )  # fmt: skip
            iv, tag = bytes(result.iv or b""), bytes(result.tag or b"")
            if len(iv) != IV_SIZE or len(tag) != TAG_SIZE:
                raise KeyServiceError("azure key vault A256GCM encrypt returned an unexpected IV or tag size")
            body = iv + bytes(result.ciphertext) + tag
        kid = result.key_id or self.key_id
        if _split_key_id(kid)[2] is None:
            raise UsageError(
                f"the service did not say which version of {self.name} wrapped the key",
                hint="give the key version in the URL: https://<vault>/keys/<name>/<version>",
            )
        return [Stanza(STANZA_TYPE, (kid, self.algorithm), body)]

    def unwrap(self, stanzas: Sequence[Stanza], context: KeyContext = NO_CONTEXT) -> bytes:
        """Unwrap this key's stanzas, in file order.

        Raises IncorrectIdentityError (no stanza for this key), HeaderAuthenticationError
        (the service says the stanza does not open, under ``context`` for A256GCM: the
        stanza or the header's model identity was changed), KeyServiceError, FormatError,
        UsageError.
        """
        own = own_stanzas(stanzas, STANZA_TYPE, 2, self._is_mine)
        if not own:
            raise IncorrectIdentityError(f"no azure-kv stanza for {self.key_id}")
        for stanza in own:
            if stanza.args[1] not in ALGORITHMS:
                raise FormatError(f"azure-kv stanza has an unknown algorithm {stanza.args[1][:32]!r}")
            if stanza.args[1] == A256GCM and len(stanza.body) != IV_SIZE + 32 + TAG_SIZE:
                raise FormatError("azure-kv A256GCM stanza body must be 60 bytes")
        return first_that_opens(own, lambda s: self._open(s, context))

    # ---- internals ----------------------------------------------------------------------
    def _is_mine(self, stanza: Stanza) -> bool:
        try:
            vault, name, version = _split_key_id(stanza.args[0])
        except InvalidKeyError:
            raise FormatError("azure-kv stanza does not name a key URL") from None
        if version is None:
            raise FormatError("azure-kv stanza key URL has no version")
        same_key = (vault.lower(), name) == (self.vault_url.lower(), self.name)
        return same_key and self.version in (None, version)

    def _open(self, stanza: Stanza, context: KeyContext) -> bytes:
        crypto = self._crypto(stanza.args[0])
        enums = import_sdk("azure.keyvault.keys.crypto", "azure-keyvault-keys", "azure")
        body = stanza.body
        if stanza.args[1] == RSA_OAEP_256:
            key = self._call(crypto.unwrap_key, enums.KeyWrapAlgorithm.rsa_oaep_256, body, opening=RSA_OAEP_256).key
        else:
            key = self._call(
                crypto.decrypt, enums.EncryptionAlgorithm.a256_gcm, body[IV_SIZE:-TAG_SIZE], opening=A256GCM,
                iv=body[:IV_SIZE], authentication_tag=body[-TAG_SIZE:], additional_authenticated_data=context.aad(),
            ).plaintext  # fmt: skip
        return check_file_key(key, "Azure Key Vault")

    def _crypto(self, key_id: str) -> Any:
        crypto = import_sdk("azure.keyvault.keys.crypto", "azure-keyvault-keys", "azure")
        credential = self._credential
        if credential is None:
            identity = import_sdk("azure.identity", "azure-identity", "azure")
            credential = self._credential = identity.DefaultAzureCredential()
        return crypto.CryptographyClient(key_id, credential, **self._client_kwargs)

    def _call(self, operation: Any, *args: Any, opening: str | None = None, **kwargs: Any) -> Any:
        core = import_sdk("azure.core.exceptions", "azure-keyvault-keys", "azure")
        try:
            return operation(*args, **kwargs)
        except core.HttpResponseError as exc:
            code = getattr(exc.error, "code", None) or exc.reason or "?"
            if opening and exc.status_code == 400:  # BadParameter: the ciphertext does not open
                raise HeaderAuthenticationError(
                    f"azure key vault refused the stanza for {self.name} ({code}): the stanza was changed"
                    + (" or the file's model identity is not the one it was sealed for" if opening == A256GCM else "")
                ) from None
            raise KeyServiceError(
                f"azure key vault {operation.__name__} with {self.name} failed: {exc.status_code} {code}", hint=_HINT
            ) from None
        except core.AzureError as exc:  # ClientAuthenticationError, ServiceRequestError, ...
            raise KeyServiceError(
                f"azure key vault {operation.__name__} with {self.name} failed: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}",
                hint=_HINT,
            ) from None


def ambient(stanzas: Sequence[Stanza]) -> list[AzureKeyVaultKey]:
    """One AzureKeyVaultKey per versioned key URL named by the file's ``azure-kv`` stanzas."""
    seen: dict[tuple[str, str], AzureKeyVaultKey] = {}
    for stanza in stanzas:
        if stanza.type == STANZA_TYPE and len(stanza.args) == 2 and tuple(stanza.args) not in seen:
            try:
                seen[(stanza.args[0], stanza.args[1])] = AzureKeyVaultKey(stanza.args[0], algorithm=stanza.args[1])
            except InvalidKeyError:
                continue
    return list(seen.values())
