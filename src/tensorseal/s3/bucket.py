"""Audit (and fix) how a bucket protects the sealed files stored in it.

Checks, each PASS / WARN / FAIL with a one-line fix hint:

* ``default-encryption``: new objects are encrypted with SSE-KMS by default (SSE-S3: WARN,
  the keys are not under your KMS control; none: FAIL).
* ``bucket-key``: an S3 Bucket Key is enabled for SSE-KMS (WARN otherwise: one KMS call
  per object request, cost and throttling).
* ``deny-unencrypted-puts``: the bucket policy denies ``s3:PutObject`` on a
  ``s3:x-amz-server-side-encryption`` condition (FAIL otherwise).
* ``deny-insecure-transport``: the bucket policy denies requests with
  ``aws:SecureTransport = false`` (FAIL otherwise).
* ``public-access-block``: all four public access block flags are on (FAIL otherwise).
* ``versioning``: versioning is enabled, so an overwritten or deleted model can be
  restored (WARN otherwise).

The policy is checked as a document (a Deny statement for everyone that covers the
objects, with the right condition key); its effect is not evaluated. :func:`fix_bucket`
applies the fixes: SSE-KMS default encryption with a bucket key, two Deny statements merged
into the existing policy (every other statement kept), the public access block, versioning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ..errors import StorageError, UsageError
from ._client import call, error_code, make_client, storage_error

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
PUTS_SID = "TensorsealDenyNonKmsPuts"
TLS_SID = "TensorsealDenyInsecureTransport"
ENCRYPTION_KEY = "s3:x-amz-server-side-encryption"
PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")


@dataclass(frozen=True)
class BucketCheck:
    """One check of :func:`audit_bucket`."""

    name: str
    status: str  # PASS, WARN or FAIL
    detail: str
    fix: str  # a one-line hint ("" when the check passes)

    def to_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class _State:
    rules: list[dict[str, Any]] | None  # default encryption rules; None: none configured
    policy: dict[str, Any] | None
    public_access_block: dict[str, Any] | None
    versioning: str | None  # "Enabled", "Suspended" or None (never enabled)


def _optional(client: Any, operation: str, bucket: str, missing: str) -> Any:
    """``client.<operation>(Bucket=bucket)``, or None when S3 answers with ``missing``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client, operation)(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) == missing:
            return None
        raise storage_error(exc, f"s3://{bucket}: {operation}") from None
    except BotoCoreError as exc:
        raise storage_error(exc, f"s3://{bucket}: {operation}") from None


def _read(client: Any, bucket: str) -> _State:
    enc = _optional(client, "get_bucket_encryption", bucket, "ServerSideEncryptionConfigurationNotFoundError")
    pol = _optional(client, "get_bucket_policy", bucket, "NoSuchBucketPolicy")
    pab = _optional(client, "get_public_access_block", bucket, "NoSuchPublicAccessBlockConfiguration")
    ver = call(client, "get_bucket_versioning", f"s3://{bucket}: get_bucket_versioning", Bucket=bucket)
    policy = None
    if pol is not None:
        try:
            policy = json.loads(pol["Policy"])
        except (ValueError, KeyError, TypeError):
            raise StorageError(f"s3://{bucket}: the bucket policy is not valid JSON") from None
        if not isinstance(policy, dict):
            raise StorageError(f"s3://{bucket}: the bucket policy is not a JSON object")
    return _State(
        rules=None if enc is None else list(enc.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])),
        policy=policy,
        public_access_block=None if pab is None else dict(pab.get("PublicAccessBlockConfiguration", {})),
        versioning=ver.get("Status"),
    )


# ---- the policy as a document ---------------------------------------------------------------
def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(policy: dict[str, Any] | None) -> list[dict[str, Any]]:
    if policy is None:
        return []
    return [s for s in _list(policy.get("Statement", [])) if isinstance(s, dict)]


def _for_everyone(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    return isinstance(principal, dict) and "*" in _list(principal.get("AWS", []))


def _covers(patterns: Any, value: str) -> bool:
    """Whether an IAM pattern list (``*`` and ``?`` wildcards, case-insensitive) matches."""
    return any(isinstance(p, str) and fnmatchcase(value.lower(), p.lower()) for p in _list(patterns))


def _conditions(statement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Condition keys (lower case) -> {operator: values}."""
    out: dict[str, dict[str, Any]] = {}
    condition = statement.get("Condition")
    if isinstance(condition, dict):
        for operator, block in condition.items():
            if isinstance(block, dict):
                for key, values in block.items():
                    out.setdefault(str(key).lower(), {})[str(operator)] = values
    return out


def _denies(statement: dict[str, Any], action: str, resource: str) -> bool:
    return (
        statement.get("Effect") == "Deny" and _for_everyone(statement) and "NotAction" not in statement
        and _covers(statement.get("Action", []), action) and _covers(statement.get("Resource", []), resource)
    )  # fmt: skip


def _find_puts_statement(policy: dict[str, Any] | None, objects: str) -> dict[str, Any] | None:
    for s in _statements(policy):
        if _denies(s, "s3:PutObject", objects) and ENCRYPTION_KEY in _conditions(s):
            return s
    return None


def _find_tls_statement(policy: dict[str, Any] | None, objects: str) -> dict[str, Any] | None:
    for s in _statements(policy):
        ops = _conditions(s).get("aws:securetransport", {})
        bools = [v for op, v in ops.items() if op in ("Bool", "BoolIfExists")]
        if any(str(v).lower() == "false" for vals in bools for v in _list(vals)) and all(
            _denies(s, a, objects) for a in ("s3:GetObject", "s3:PutObject")
        ):
            return s
    return None


def _arns(client: Any, bucket: str) -> tuple[str, str]:
    partition = getattr(client.meta, "partition", None) or "aws"
    return f"arn:{partition}:s3:::{bucket}", f"arn:{partition}:s3:::{bucket}/*"


def policy_statements(bucket_arn: str, objects_arn: str) -> dict[str, dict[str, Any]]:
    """The two statements that :func:`fix_bucket` adds, by Sid.

    Puts that ask for another encryption than SSE-KMS are denied; puts without the header
    are allowed (the SSE-KMS default encryption applies to them). Any request over plain
    HTTP is denied."""
    return {
        PUTS_SID: {
            "Sid": PUTS_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": objects_arn,
            "Condition": {"StringNotEquals": {ENCRYPTION_KEY: list(KMS_ALGORITHMS)}, "Null": {ENCRYPTION_KEY: "false"}},
        },
        TLS_SID: {
            "Sid": TLS_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [bucket_arn, objects_arn],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    }  # fmt: skip


# ---- audit ------------------------------------------------------------------------------------
def _kms_rule(rules: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    for rule in rules or []:
        if rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") in KMS_ALGORITHMS:
            return rule
    return None


def _checks(state: _State, bucket: str, objects: str) -> list[BucketCheck]:
    fix_enc = "set SSE-KMS default encryption (--fix --kms-key KEY)"
    checks = []
    kms = _kms_rule(state.rules)
    if kms is not None:
        key = kms["ApplyServerSideEncryptionByDefault"].get("KMSMasterKeyID") or "the AWS managed key aws/s3"
        checks.append(BucketCheck("default-encryption", PASS, f"SSE-KMS with {key}", ""))
    elif state.rules:
        checks.append(
            BucketCheck("default-encryption", WARN, "SSE-S3 only: the keys are not under your KMS control", fix_enc)
        )
    else:
        checks.append(BucketCheck("default-encryption", FAIL, "no default encryption", fix_enc))

    if kms is not None and kms.get("BucketKeyEnabled"):
        checks.append(BucketCheck("bucket-key", PASS, "S3 Bucket Key enabled", ""))
    elif kms is not None:
        checks.append(
            BucketCheck(
                "bucket-key",
                WARN,
                "no S3 Bucket Key: one KMS request per object request",
                "enable the S3 Bucket Key (--fix)",
            )
        )
    else:
        checks.append(
            BucketCheck(
                "bucket-key",
                WARN,
                "no SSE-KMS default encryption, so no S3 Bucket Key",
                "comes with SSE-KMS (--fix --kms-key KEY)",
            )
        )

    puts = _find_puts_statement(state.policy, objects)
    if puts is not None:
        checks.append(
            BucketCheck(
                "deny-unencrypted-puts",
                PASS,
                f"statement {puts.get('Sid', '(no Sid)')!r} denies puts on {ENCRYPTION_KEY}",
                "",
            )
        )
    else:
        checks.append(
            BucketCheck(
                "deny-unencrypted-puts",
                FAIL,
                "no Deny of s3:PutObject on the SSE request header",
                "Deny non-KMS puts in the bucket policy (--fix)",
            )
        )

    tls = _find_tls_statement(state.policy, objects)
    if tls is not None:
        checks.append(
            BucketCheck(
                "deny-insecure-transport",
                PASS,
                f"statement {tls.get('Sid', '(no Sid)')!r} denies aws:SecureTransport=false",
                "",
            )
        )
    else:
        checks.append(
            BucketCheck(
                "deny-insecure-transport",
                FAIL,
                "plain-HTTP requests are not denied",
                "Deny aws:SecureTransport=false in the bucket policy (--fix)",
            )
        )

    pab = state.public_access_block
    off = [f for f in PAB_FLAGS if not (pab or {}).get(f)]
    if not off:
        checks.append(BucketCheck("public-access-block", PASS, "all four flags on", ""))
    else:
        what = "no public access block" if pab is None else f"off: {', '.join(off)}"
        checks.append(
            BucketCheck("public-access-block", FAIL, what, "turn on all four public access block flags (--fix)")
        )

    if state.versioning == "Enabled":
        checks.append(BucketCheck("versioning", PASS, "enabled", ""))
    else:
        what = "suspended" if state.versioning == "Suspended" else "never enabled"
        checks.append(
            BucketCheck(
                "versioning",
                WARN,
                f"{what}: an overwritten or deleted model cannot be restored",
                "enable versioning (--fix)",
            )
        )
    return checks


def audit_bucket(bucket: str, *, client: Any = None) -> list[BucketCheck]:
    """Run every check on ``bucket`` (read-only). Raises StorageError (no such bucket, no
    permission to read its configuration, unreachable), UsageError (boto3 missing)."""
    client = client or make_client()
    _, objects = _arns(client, bucket)
    return _checks(_read(client, bucket), bucket, objects)


# ---- fix ----------------------------------------------------------------------------------------
def _resolve_kms_key(key: str) -> str:
    """The key's ARN (an alias or key id resolved by KMS DescribeKey). A key that KMS says
    does not exist, or is not enabled, raises UsageError; if KMS cannot be asked (no
    permission, unreachable), ``key`` is used as given."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        meta = make_client("kms").describe_key(KeyId=key)["KeyMetadata"]
    except ClientError as exc:
        if error_code(exc) == "NotFoundException":
            raise UsageError(
                f"kms key {key!r} not found", hint="check the key id, ARN or alias and AWS_REGION"
            ) from None
        return key
    except (BotoCoreError, StorageError):
        return key
    if meta.get("KeyState", "Enabled") != "Enabled":
        raise UsageError(f"kms key {key!r} is {meta.get('KeyState')}", hint="enable the key or pass another --kms-key")
    return str(meta.get("Arn") or key)


def fix_bucket(bucket: str, *, kms_key: str | None = None, client: Any = None) -> list[str]:
    """Apply the fix of every check of ``bucket`` that does not pass, and return what was
    done (one line each); run :func:`audit_bucket` again to see the result.

    ``kms_key`` (key id, ARN or alias) is needed when the default encryption is not SSE-KMS
    yet; an existing SSE-KMS key is kept (only the bucket key is turned on). The policy
    statements are merged into the existing policy: statements with other Sids are kept.

    Raises UsageError (``kms_key`` needed, unknown or disabled), StorageError."""
    client = client or make_client()
    state = _read(client, bucket)
    bucket_arn, objects = _arns(client, bucket)
    todo = {c.name for c in _checks(state, bucket, objects) if c.status != PASS}
    done: list[str] = []
    where = f"s3://{bucket}"

    if todo & {"default-encryption", "bucket-key"}:
        current = _kms_rule(state.rules)
        key = _resolve_kms_key(kms_key) if kms_key else None
        if key is None and current is not None:
            key = current["ApplyServerSideEncryptionByDefault"].get("KMSMasterKeyID")
        if key is None:
            raise UsageError(
                f"{where} has no SSE-KMS default encryption: --fix needs the key to use",
                hint="pass --kms-key KEY (key id, ARN or alias/NAME)",
            )
        rule = {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
            "BucketKeyEnabled": True,
        }
        call(client, "put_bucket_encryption", f"{where}: put_bucket_encryption", Bucket=bucket,
             ServerSideEncryptionConfiguration={"Rules": [rule]})  # fmt: skip
        done.append(f"default encryption: SSE-KMS with {key}, bucket key on")

    if "versioning" in todo:
        call(client, "put_bucket_versioning", f"{where}: put_bucket_versioning", Bucket=bucket,
             VersioningConfiguration={"Status": "Enabled"})  # fmt: skip
        done.append("versioning enabled")

    if "public-access-block" in todo:
        call(client, "put_public_access_block", f"{where}: put_public_access_block", Bucket=bucket,
             PublicAccessBlockConfiguration={flag: True for flag in PAB_FLAGS})  # fmt: skip
        done.append("public access block: all four flags on")

    wanted = {"deny-unencrypted-puts": PUTS_SID, "deny-insecure-transport": TLS_SID}
    add = [sid for check, sid in wanted.items() if check in todo]
    if add:
        fresh = _read(client, bucket).policy  # re-read: merge into the latest policy
        ours = policy_statements(bucket_arn, objects)
        kept = [s for s in _statements(fresh) if s.get("Sid") not in add]
        policy = {
            "Version": (fresh or {}).get("Version", "2012-10-17"),
            **{k: v for k, v in (fresh or {}).items() if k not in ("Version", "Statement")},
        }
        policy["Statement"] = kept + [ours[sid] for sid in add]
        call(client, "put_bucket_policy", f"{where}: put_bucket_policy", Bucket=bucket, Policy=json.dumps(policy))
        done.append(f"bucket policy: added {', '.join(add)} ({len(kept)} other statement(s) kept)")
    return done


__all__ = ["FAIL", "PASS", "WARN", "BucketCheck", "audit_bucket", "fix_bucket", "policy_statements"]
