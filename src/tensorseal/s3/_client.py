"""S3 URLs, the boto3 client, and botocore errors turned into StorageError.

Credentials, region and endpoint come from boto3's usual sources only: ``AWS_PROFILE``,
``AWS_ACCESS_KEY_ID``..., ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3``
/ ``AWS_ENDPOINT_URL`` (an S3-compatible store), shared config files, instance roles.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..errors import StorageError, UsageError

SCHEME = "s3://"
MAX_KEY_BYTES = 1024
# S3's rules (3-63 of a-z 0-9 . -), loosened for old us-east-1 buckets (upper case, _).
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
DEFAULT_HINT = "check the bucket, the AWS credentials and the region/endpoint in the environment (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_S3)"
_HINTS = {
    "NoSuchBucket": "check the bucket name (and AWS_REGION)",
    "NoSuchKey": "check the key: S3 keys are case-sensitive",
    "404": "check the bucket and the key: S3 keys are case-sensitive",
    "AccessDenied": "check the AWS credentials and the bucket policy (a policy that requires SSE-KMS needs --sse-kms KEY)",
    "403": "check the AWS credentials and the bucket policy (a policy that requires SSE-KMS needs --sse-kms KEY)",
    "AllAccessDisabled": "access to this bucket is disabled: check the bucket name",
    "InvalidAccessKeyId": "check the AWS credentials in the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE)",
    "SignatureDoesNotMatch": "check the AWS credentials in the environment (AWS_SECRET_ACCESS_KEY, AWS_PROFILE)",
    "ExpiredToken": "the AWS session token expired: refresh the credentials",
    "PreconditionFailed": "the object changed during the transfer: run the command again",
    "412": "the object changed during the transfer: run the command again",
    "KMS.NotFoundException": "check the KMS key id or ARN and its region",
    "KMS.DisabledException": "the KMS key is disabled: enable it or pass another --sse-kms key",
    "EntityTooSmall": "parts must be at least 5 MiB: raise --part-size",
}


@dataclass(frozen=True)
class S3Url:
    """``s3://bucket/key``; ``key`` may be empty or end with ``/`` (a prefix)."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")


def parse_url(text: str) -> S3Url:
    """Parse ``s3://bucket[/key]``. Raises UsageError."""
    if not text.startswith(SCHEME):
        raise UsageError(f"{text!r} is not an s3:// URL", hint="write s3://BUCKET/KEY")
    bucket, _, key = text[len(SCHEME) :].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise UsageError(
            f"{bucket!r} is not a bucket name", hint="bucket names are 3-63 characters of a-z, 0-9, '.' and '-'"
        )
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise UsageError(f"the key of {text[:80]!r}... is longer than {MAX_KEY_BYTES} bytes")
    return S3Url(bucket, key)


def import_boto(module: str = "boto3") -> ModuleType:
    """Import boto3 (or a botocore module). Raises UsageError with an install hint."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            "S3 needs the boto3 package, which is not installed", hint="pip install 'tensorseal[s3]'"
        ) from None


def make_client(service: str = "s3", *, max_pool: int = 10) -> Any:
    """A boto3 client configured from the environment. Raises StorageError, UsageError."""
    boto3 = import_boto()
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    from .. import __version__

    config = Config(
        max_pool_connections=max_pool, retries={"mode": "standard"}, user_agent_extra=f"tensorseal/{__version__}"
    )
    try:
        # boto3 reads AWS_DEFAULT_REGION itself; AWS_REGION is what the other AWS SDKs read (first)
        region = os.environ.get("AWS_REGION") or None
        session = boto3.session.Session()  # a new session, not boto3's default one: reads the environment now
        return session.client(service, region_name=region, config=config)
    except BotoCoreError as exc:
        raise StorageError(f"{service}: {exc}", hint="set AWS_REGION (or AWS_DEFAULT_REGION) and credentials") from None


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def storage_error(exc: BaseException, what: str) -> StorageError:
    """A one-line StorageError for a botocore exception raised while doing ``what``."""
    code = error_code(exc)
    if code:
        message = (getattr(exc, "response", {}) or {}).get("Error", {}).get("Message") or ""
        if message in ("Not Found", "Forbidden", "Precondition Failed"):
            message = ""
        detail = f"{code}" + (f": {message}" if message else "")
        return StorageError(f"{what}: {detail}", hint=_HINTS.get(code, DEFAULT_HINT))
    text = " ".join(str(exc).split()) or type(exc).__name__
    return StorageError(f"{what}: {text}", hint=DEFAULT_HINT)


def call(client: Any, operation: str, what: str, **kwargs: Any) -> Any:
    """``client.<operation>(**kwargs)``; botocore errors become StorageError naming ``what``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client, operation)(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise storage_error(exc, what) from None
