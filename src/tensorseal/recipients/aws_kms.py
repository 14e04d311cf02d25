"""AWS KMS recipients: ``awskms:<key-arn | key-id | alias/NAME | alias-arn>``.

Envelope encryption: KMS ``Encrypt`` wraps the 32-byte file key under a KMS key, with the
file's model identity as ``EncryptionContext`` (:meth:`KeyContext.encryption_context`), so
the ciphertext only decrypts for a file that claims the same model (and CloudTrail logs
which model every Decrypt was for; key policies can condition on it).

Stanza ``aws-kms``: args = [the key ARN that KMS reported for the Encrypt call (an alias
is resolved to its key then, so retargeting the alias later does not orphan the file)];
body = the ``CiphertextBlob``. Unwrapping calls ``Decrypt`` with that ARN as ``KeyId``.

Credentials, region and endpoint come from boto3's usual sources (``AWS_PROFILE``,
``AWS_ACCESS_KEY_ID``..., ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_KMS``),
or from the constructor. A key ARN names its region, which is used when none is given.

Tested against moto's KMS as a real HTTP server on loopback. moto does not enforce key
state (a disabled key still decrypts there), so the mapping of ``DisabledException`` is
tested with botocore's own ``Stubber``, at the SDK boundary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import HeaderAuthenticationError, IncorrectIdentityError, InvalidKeyError, KeyServiceError
from ..format.header import Stanza
from ._service import check_file_key, check_name, first_that_opens, import_sdk, own_stanzas, strip_prefix
from .base import NO_CONTEXT, KeyContext

STANZA_TYPE = "aws-kms"
RECIPIENT_PREFIX = "awskms:"
# Decrypt errors that mean "this ciphertext is not valid under this key and context":
# the stanza or the header's model identity was changed (or the stanza was copied).
_TAMPERED = {"InvalidCiphertextException", "IncorrectKeyException"}


def _arn_region(key_id: str) -> str | None:
    parts = key_id.split(":")
    if len(parts) >= 6 and parts[0] == "arn" and parts[2] == "kms" and parts[3]:
        return parts[3]
    return None


class AwsKmsKey:
    """A KMS key: wraps file keys with ``Encrypt`` and unwraps its own stanzas with ``Decrypt``.

    ``key_id`` is a key ARN, key id, ``alias/NAME`` or alias ARN. ``client`` (a boto3 KMS
    client) overrides ``region``/``endpoint_url``, which default to boto3's environment.
    Raises InvalidKeyError for an empty or oversized ``key_id``.
    """

    def __init__(
        self, key_id: str, *, region: str | None = None, endpoint_url: str | None = None, client: Any = None
    ) -> None:
        check_name(key_id, "AWS KMS")
        self.key_id = key_id
        # boto3 reads AWS_DEFAULT_REGION itself; AWS_REGION is what the other AWS SDKs read
        self.region = region or _arn_region(key_id) or os.environ.get("AWS_REGION") or None
        self.endpoint_url = endpoint_url
        self._client = client
        self._resolved_arn: str | None = key_id if ":key/" in key_id else None

    @classmethod
    def parse(cls, text: str) -> AwsKmsKey:
        """Parse ``awskms:<key>``. Raises InvalidKeyError."""
        return cls(strip_prefix(text, RECIPIENT_PREFIX, "AWS KMS"))

    def __str__(self) -> str:
        return RECIPIENT_PREFIX + self.key_id


    def matches(self, stanza: Stanza) -> bool:
        """Whether ``stanza`` is wrapped by this key (``rewrap --remove``). Raises FormatError."""
        return bool(own_stanzas([stanza], STANZA_TYPE, 1, lambda stanza: self._is_mine(stanza.args[0])))
    def __repr__(self) -> str:
        return f"AwsKmsKey({self.key_id!r})"

    def audit_info(self) -> dict[str, str | None]:
        """How audit records name this key (tensorseal.audit): stanza type and key ARN (or name given)."""
        return {"kind": STANZA_TYPE, "key_id": self._resolved_arn or self.key_id}

    # ---- the two interfaces ---------------------------------------------------------------
    def wrap(self, file_key: bytes, context: KeyContext = NO_CONTEXT) -> list[Stanza]:
        """KMS ``Encrypt`` of ``file_key`` with ``context`` as encryption context.

        Raises KeyServiceError (refused, unknown or disabled key, no credentials, unreachable),
        UsageError (boto3 not installed).
        """
        resp = self._call(
            "encrypt", KeyId=self.key_id, Plaintext=bytes(file_key), EncryptionContext=context.encryption_context()
        )
        arn = resp["KeyId"]
        check_name(arn, "AWS KMS")
        return [Stanza(STANZA_TYPE, (arn,), bytes(resp["CiphertextBlob"]))]

    def unwrap(self, stanzas: Sequence[Stanza], context: KeyContext = NO_CONTEXT) -> bytes:
        """KMS ``Decrypt`` of this key's ``aws-kms`` stanzas, in file order, under ``context``.

        Raises IncorrectIdentityError (no stanza for this key), HeaderAuthenticationError
        (KMS says the ciphertext is not valid under ``context``: the header's model identity
        or the stanza was changed), KeyServiceError (refused, disabled, unreachable, no
        credentials), FormatError (malformed stanza), UsageError (boto3 not installed).
        """
        own = own_stanzas(stanzas, STANZA_TYPE, 1, lambda s: self._is_mine(s.args[0]))
        if not own:
            raise IncorrectIdentityError(f"no aws-kms stanza for {self.key_id}")
        encryption_context = context.encryption_context()

        def open_one(stanza: Stanza) -> bytes:
            resp = self._call(
                "decrypt", CiphertextBlob=stanza.body, KeyId=stanza.args[0], EncryptionContext=encryption_context
            )
            return check_file_key(resp["Plaintext"], "AWS KMS Decrypt")

        return first_that_opens(own, open_one)

    # ---- internals ----------------------------------------------------------------------
    def _is_mine(self, arn: str) -> bool:
        if self._resolved_arn is None:
            if ":" not in self.key_id and not self.key_id.startswith("alias/"):
                return arn.endswith(":key/" + self.key_id)  # a bare key id
            meta = self._call("describe_key", KeyId=self.key_id)["KeyMetadata"]  # an alias
            self._resolved_arn = meta["Arn"]
        return arn == self._resolved_arn

    def kms_client(self) -> Any:
        """The boto3 KMS client (made on first use). Raises UsageError, KeyServiceError."""
        if self._client is None:
            boto3 = import_sdk("boto3", "boto3", "kms")
            botocore_exceptions = import_sdk("botocore.exceptions", "boto3", "kms")
            try:
                session = boto3.session.Session()  # not boto3's default session: read the environment now
                self._client = session.client("kms", region_name=self.region, endpoint_url=self.endpoint_url)
            except botocore_exceptions.BotoCoreError as exc:
                raise KeyServiceError(f"aws kms: {exc}", hint="set AWS_REGION, or use the key's full ARN") from None
        return self._client

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        client = self.kms_client()
        exceptions = import_sdk("botocore.exceptions", "boto3", "kms")
        try:
            return getattr(client, operation)(**kwargs)
        except exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message") or ""
            if operation == "decrypt" and code in _TAMPERED:
                raise HeaderAuthenticationError(
                    f"aws kms refused the stanza for {kwargs.get('KeyId')} ({code}): the file's model identity "
                    "is not the one the key was wrapped for, or the stanza was changed"
                ) from None
            raise KeyServiceError(
                f"aws kms {operation} with {kwargs.get('KeyId')} failed: {code}" + (f": {message}" if message else ""),
                hint=_hint(code),
            ) from None
        except exceptions.BotoCoreError as exc:  # no credentials / region, endpoint unreachable
            raise KeyServiceError(
                f"aws kms {operation}: {exc}", hint="set AWS credentials and region (AWS_PROFILE, AWS_REGION, ...)"
            ) from None


def _hint(code: str) -> str:
    if code in ("DisabledException", "KMSInvalidStateException"):
        return "the KMS key is disabled or pending deletion: enable it, or open the file with another identity"
    if code in ("NotFoundException",):
        return "check the key ARN or alias and the region"
    if code in ("AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"):
        return "check the AWS credentials and the key policy (kms:Encrypt / kms:Decrypt)"
    return "check the key, the region and the AWS credentials"


def ambient(stanzas: Sequence[Stanza]) -> list[AwsKmsKey]:
    """One AwsKmsKey per key ARN named by the file's ``aws-kms`` stanzas (file order)."""
    seen: dict[str, AwsKmsKey] = {}
    for stanza in stanzas:
        if stanza.type == STANZA_TYPE and len(stanza.args) == 1 and stanza.args[0] not in seen:
            try:
                seen[stanza.args[0]] = AwsKmsKey(stanza.args[0])
            except InvalidKeyError:
                continue  # malformed: reported by unwrap of any aws-kms identity
    return list(seen.values())
