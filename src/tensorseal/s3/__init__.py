"""Sealed files in S3 (or an S3-compatible store): push, pull, bucket audit.

* :func:`push` uploads only sealed files (multipart above the part size), with
  ``tensorseal-*`` object metadata and, on request, SSE-KMS.
* :func:`pull` downloads resumably into ``FILE.partial`` and renames into place only
  after the file checked out (digest, structure and size, signature, tags).
* :func:`audit_bucket` / :func:`fix_bucket`: default SSE-KMS encryption, bucket key,
  policy denying non-KMS puts and plain HTTP, public access block, versioning.

Needs boto3 (``pip install 'tensorseal[s3]'``). Credentials, region and endpoint come
from boto3's usual sources (environment, shared config, instance role); see
docs/SERVING.md.
"""

from __future__ import annotations

from ._client import S3Url, parse_url
from .bucket import FAIL, PASS, WARN, BucketCheck, audit_bucket, fix_bucket
from .transfer import PullResult, PushResult, object_size, pull, push

__all__ = [
    "FAIL",
    "PASS",
    "WARN",
    "BucketCheck",
    "PullResult",
    "PushResult",
    "S3Url",
    "audit_bucket",
    "fix_bucket",
    "object_size",
    "parse_url",
    "pull",
    "push",
]
