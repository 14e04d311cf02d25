"""S3 push / pull / audit-bucket against moto's S3 (and KMS) served over real HTTP on
loopback (``ThreadedMotoServer``), reached through ``AWS_ENDPOINT_URL`` like a user's
S3-compatible store: credentials and endpoint only in the environment."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file as st_save

import tensorseal
from tensorseal import s3 as ts3
from tensorseal.cli import main
from tensorseal.errors import (
    NotSealedError,
    SignatureError,
    StorageError,
    TrailingDataError,
    TruncatedError,
    UsageError,
)
from tensorseal.reader import SealedFile
from tensorseal.recipients import SymmetricKey
from tensorseal.s3 import transfer
from tensorseal.signing import SigningKey

from .conftest import sample_tensors

boto3 = pytest.importorskip("boto3", reason="boto3 is not installed")
PART = 5 << 20  # S3's smallest part


# ---- a real S3 (moto server) on loopback ------------------------------------------------------
@pytest.fixture
def aws(aws_env: str) -> str:
    """Credentials and one endpoint for every service (S3 and KMS) in the environment only
    (``aws_env`` in tests/conftest.py)."""
    return aws_env


@pytest.fixture
def s3(aws: str):
    """The test's own view of the store (to plant and inspect objects)."""
    return boto3.session.Session().client("s3")


@pytest.fixture
def bucket(s3) -> str:
    name = f"ts-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def kms_key(aws: str) -> str:
    return boto3.session.Session().client("kms").create_key()["KeyMetadata"]["Arn"]


def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---- sealed files -------------------------------------------------------------------------------
@pytest.fixture
def key(tmp_path: Path) -> tuple[SymmetricKey, Path]:
    k = SymmetricKey.generate()
    path = tmp_path / "sym.key"
    path.write_text(str(k) + "\n")
    return k, path


@pytest.fixture
def signer(tmp_path: Path) -> tuple[SigningKey, Path]:
    k = SigningKey.generate()
    path = tmp_path / "sign.key"
    path.write_text(str(k) + "\n")
    return k, path


@pytest.fixture
def plain_model(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    st_save(sample_tensors(), path)
    return path


@pytest.fixture
def sealed(tmp_path: Path, plain_model: Path, key, signer) -> Path:
    """A small tensors-mode file, signed."""
    out = tmp_path / "model.safetensors.tseal"
    tensorseal.encrypt_file(plain_model, out, [key[0]], sign_with=[signer[0]])
    return out


@pytest.fixture
def big_sealed(tmp_path: Path, key) -> Path:
    """A ~12 MiB blob: three 5 MiB parts."""
    src = tmp_path / "weights.bin"
    src.write_bytes(np.random.default_rng(1).bytes(12 << 20))
    out = tmp_path / "weights.bin.tseal"
    tensorseal.encrypt_file(src, out, [key[0]])
    return out


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial" in p.name)


def keys_in(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def flip_byte(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 1]) + data[offset + 1 :]


def data_offset(path: Path) -> int:
    with SealedFile(path) as f:
        return f.header.data_offset


# ---- push / pull --------------------------------------------------------------------------------
def test_push_pull_round_trip_cli(capsys, s3, bucket, sealed, key, signer, tmp_path):
    public = str(signer[0].public_key())
    code, _, err = run(capsys, "push", sealed, f"s3://{bucket}/models/", "--signer", public)
    assert code == 0, err
    assert "pushed" in err and "warning: " in err and "no SSE-KMS default encryption" in err
    assert keys_in(s3, bucket) == [f"models/{sealed.name}"]
    head = s3.head_object(Bucket=bucket, Key=f"models/{sealed.name}")
    meta = head["Metadata"]
    assert meta["tensorseal-version"] == tensorseal.__version__ and meta["tensorseal-format"] == "1"
    assert len(meta["tensorseal-blake3"]) == 64

    out = tmp_path / "pulled" / "model.tseal"
    out.parent.mkdir()
    code, _, err = run(capsys, "pull", f"s3://{bucket}/models/{sealed.name}", "-o", out,
                       "--signer", public, "--key-file", key[1])  # fmt: skip
    assert code == 0, err
    assert out.read_bytes() == sealed.read_bytes()
    assert "digest" in err and "signature from a trusted signer" in err and "segment tag(s)" in err
    assert leftovers(out.parent) == []
    assert oct(out.stat().st_mode & 0o777) == "0o600"

    code, _, err = run(capsys, "pull", f"s3://{bucket}/models/{sealed.name}", "-o", out)
    assert code == 2 and "already exists" in err and "--force" in err
    code, _, err = run(capsys, "pull", f"s3://{bucket}/models/{sealed.name}", "-o", out, "--force", "-q")
    assert code == 0 and err == "" and out.read_bytes() == sealed.read_bytes()


def test_pull_default_output_name(capsys, monkeypatch, s3, bucket, sealed, tmp_path):
    ts3.push(sealed, f"s3://{bucket}/a/b/model.tseal")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, _, err = run(capsys, "pull", f"s3://{bucket}/a/b/model.tseal")
    assert code == 0, err
    assert (work / "model.tseal").read_bytes() == sealed.read_bytes()
    code, _, err = run(capsys, "pull", f"s3://{bucket}/a/b/")
    assert code == 2 and "pass -o OUTPUT" in err


def test_multipart_push_and_pull(s3, bucket, big_sealed, key, tmp_path):
    calls: list[int] = []
    pushed = ts3.push(big_sealed, f"s3://{bucket}/w.tseal", part_size=PART, concurrency=3, progress=calls.append)
    size = big_sealed.stat().st_size
    assert pushed.parts == 3 and pushed.size == size and sum(calls) == size
    assert pushed.etag.endswith('-3"')  # S3's ETag of a 3-part multipart upload

    seen: list[int] = []
    out = tmp_path / "w.tseal"
    pulled = ts3.pull(
        f"s3://{bucket}/w.tseal", out, identities=[key[0]], part_size=PART, concurrency=2, progress=seen.append
    )
    assert out.read_bytes() == big_sealed.read_bytes()
    assert pulled.resumed_bytes == 0 and pulled.digest_checked and pulled.tags_checked and sum(seen) == size
    assert leftovers(tmp_path) == []


def test_part_size_is_bounded(sealed, aws, bucket):
    with pytest.raises(UsageError, match="5 MiB"):
        ts3.push(sealed, f"s3://{bucket}/x", part_size=1 << 20)
    # an object that would need more than 10,000 parts gets bigger (whole-MiB) parts
    assert transfer._part_size(100_000 << 20, PART) == 10 << 20
    assert transfer._part_size(12 << 20, PART) == PART


def test_push_refuses_a_plain_file(capsys, s3, bucket, plain_model):
    code, _, err = run(capsys, "push", plain_model, f"s3://{bucket}/model.safetensors")
    assert code == 3 and "not a tensorseal file" in err and "encrypt it first" in err
    with pytest.raises(NotSealedError):
        ts3.push(plain_model, f"s3://{bucket}/model.safetensors")
    assert keys_in(s3, bucket) == []


def test_push_requires_a_trusted_signature(capsys, s3, bucket, plain_model, key, tmp_path):
    unsigned = tmp_path / "unsigned.tseal"
    tensorseal.encrypt_file(plain_model, unsigned, [key[0]])
    other = SigningKey.generate().public_key()
    code, _, err = run(capsys, "push", unsigned, f"s3://{bucket}/u.tseal", "--signer", other)
    assert code == 5 and "not signed" in err
    with pytest.raises(SignatureError):
        ts3.push(unsigned, f"s3://{bucket}/u.tseal", signers=[other])
    assert keys_in(s3, bucket) == []


def test_push_with_sse_kms(capsys, s3, bucket, sealed, kms_key):
    code, _, err = run(capsys, "push", sealed, f"s3://{bucket}/k.tseal", "--sse-kms", kms_key)
    assert code == 0, err
    assert "warning" not in err and f"aws:kms {kms_key}" in err
    head = s3.head_object(Bucket=bucket, Key="k.tseal")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == kms_key


def test_push_to_a_bucket_with_default_sse_kms(capsys, s3, bucket, sealed, kms_key):
    rule = {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key},
        "BucketKeyEnabled": True,
    }
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    result = ts3.push(sealed, f"s3://{bucket}/d.tseal")
    assert result.bucket_default_kms is True and result.sse == "aws:kms" and result.kms_key == kms_key
    code, _, err = run(capsys, "push", sealed, f"s3://{bucket}/d2.tseal")
    assert code == 0 and "warning" not in err


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        ("plain", NotSealedError, "not a tensorseal file"),
        ("truncated", TruncatedError, "header describes"),
        ("trailing", TrailingDataError, "after the end of its data region"),
    ],
)
def test_pull_refuses_a_bad_object_and_leaves_nothing(
    capsys, s3, bucket, sealed, plain_model, tmp_path, damage, error, message
):
    data = sealed.read_bytes()
    body = {"plain": plain_model.read_bytes(), "truncated": data[:-5000], "trailing": data + bytes(200_000)}[damage]
    s3.put_object(Bucket=bucket, Key="bad.tseal", Body=body)
    out = tmp_path / "out" / "bad.tseal"
    out.parent.mkdir()
    with pytest.raises(error, match=message):
        ts3.pull(f"s3://{bucket}/bad.tseal", out)
    assert list(out.parent.iterdir()) == []
    code, _, err = run(capsys, "pull", f"s3://{bucket}/bad.tseal", "-o", out)
    assert code == 3 and f"s3://{bucket}/bad.tseal" in err and message in err
    assert list(out.parent.iterdir()) == []


def test_pull_of_a_tampered_object(capsys, s3, bucket, sealed, key, signer, tmp_path):
    public = str(signer[0].public_key())
    tampered = flip_byte(sealed.read_bytes(), data_offset(sealed) + 100)
    s3.put_object(Bucket=bucket, Key="t.tseal", Body=tampered)  # no tensorseal metadata: no digest to catch it
    out = tmp_path / "out" / "t.tseal"
    out.parent.mkdir()
    code, _, err = run(capsys, "pull", f"s3://{bucket}/t.tseal", "-o", out, "--signer", public)
    assert code == 5 and "changed after it was signed" in err
    assert list(out.parent.iterdir()) == []
    code, _, err = run(capsys, "pull", f"s3://{bucket}/t.tseal", "-o", out, "--key-file", key[1])
    assert code == 5 and "authentication failed" in err
    assert list(out.parent.iterdir()) == []
    # without a signer or key only the structure is checked: the same bytes pass
    code, _, err = run(capsys, "pull", f"s3://{bucket}/t.tseal", "-o", out)
    assert code == 0 and out.read_bytes() == tampered


def test_pull_checks_the_transfer_digest(capsys, s3, bucket, sealed, tmp_path):
    ts3.push(sealed, f"s3://{bucket}/m.tseal")
    meta = s3.head_object(Bucket=bucket, Key="m.tseal")["Metadata"]
    s3.put_object(
        Bucket=bucket, Key="m.tseal", Body=flip_byte(sealed.read_bytes(), data_offset(sealed) + 7), Metadata=meta
    )
    code, _, err = run(capsys, "pull", f"s3://{bucket}/m.tseal", "-o", tmp_path / "m.tseal")
    assert code == 1 and "tensorseal-blake3" in err
    assert leftovers(tmp_path) == [] and not (tmp_path / "m.tseal").exists()


def _plant_partial(
    out: Path, s3, bucket: str, key: str, content: bytes, done: list[int], etag: str | None = None
) -> None:
    """What an interrupted pull leaves: the preallocated partial file and its sidecar."""
    head = s3.head_object(Bucket=bucket, Key=key)
    out.with_name(out.name + ".partial").write_bytes(content)
    sidecar = {"version": 1, "bucket": bucket, "key": key, "etag": etag or head["ETag"],
               "size": head["ContentLength"], "part_size": PART, "done": done}  # fmt: skip
    out.with_name(out.name + ".partial.json").write_text(json.dumps(sidecar))


def test_pull_resumes_from_a_partial_file(s3, bucket, big_sealed, tmp_path):
    ts3.push(big_sealed, f"s3://{bucket}/w.tseal", part_size=PART)
    data = big_sealed.read_bytes()
    out = tmp_path / "out.tseal"
    _plant_partial(out, s3, bucket, "w.tseal", data[:PART] + bytes(len(data) - PART), done=[0])
    seen: list[int] = []
    result = ts3.pull(f"s3://{bucket}/w.tseal", out, part_size=PART, progress=seen.append)
    assert result.resumed_bytes == PART and seen[0] == PART and sum(seen) == len(data)
    assert out.read_bytes() == data and leftovers(tmp_path) == []


def test_resumed_bytes_are_really_reused_and_checked(s3, bucket, big_sealed, tmp_path):
    """A part marked done is not fetched again: garbage in it is caught by the digest,
    and the partial file is discarded so the next pull starts over."""
    ts3.push(big_sealed, f"s3://{bucket}/w.tseal", part_size=PART)
    data = big_sealed.read_bytes()
    out = tmp_path / "out.tseal"
    _plant_partial(out, s3, bucket, "w.tseal", data[:PART] + b"\xff" * PART + bytes(len(data) - 2 * PART), done=[0, 1])
    with pytest.raises(StorageError, match="tensorseal-blake3"):
        ts3.pull(f"s3://{bucket}/w.tseal", out, part_size=PART)
    assert leftovers(tmp_path) == [] and not out.exists()
    assert ts3.pull(f"s3://{bucket}/w.tseal", out, part_size=PART).resumed_bytes == 0
    assert out.read_bytes() == data


def test_pull_restarts_when_the_etag_changed(s3, bucket, big_sealed, tmp_path):
    ts3.push(big_sealed, f"s3://{bucket}/w.tseal", part_size=PART)
    data = big_sealed.read_bytes()
    out = tmp_path / "out.tseal"
    _plant_partial(
        out, s3, bucket, "w.tseal", b"\xee" * len(data), done=[0, 1], etag='"0123456789abcdef0123456789abcdef"'
    )
    result = ts3.pull(f"s3://{bucket}/w.tseal", out, part_size=PART)
    assert result.resumed_bytes == 0 and out.read_bytes() == data and leftovers(tmp_path) == []


class Interrupted(Exception):
    pass


def test_interrupted_pull_keeps_the_partial_file_and_resumes(s3, bucket, big_sealed, tmp_path):
    ts3.push(big_sealed, f"s3://{bucket}/w.tseal", part_size=PART)
    data = big_sealed.read_bytes()
    out = tmp_path / "out.tseal"
    received = [0]

    def cut_after_first_part(n: int) -> None:
        received[0] += n
        if received[0] > PART + (1 << 20):
            raise Interrupted  # like a dropped connection or ^C in the middle of part 1

    with pytest.raises(Interrupted):
        ts3.pull(f"s3://{bucket}/w.tseal", out, part_size=PART, concurrency=1, progress=cut_after_first_part)
    assert not out.exists() and leftovers(tmp_path) == ["out.tseal.partial", "out.tseal.partial.json"]
    assert json.loads((tmp_path / "out.tseal.partial.json").read_text())["done"] == [0]

    result = ts3.pull(f"s3://{bucket}/w.tseal", out, part_size=PART)
    assert result.resumed_bytes == PART and out.read_bytes() == data and leftovers(tmp_path) == []

    # --no-resume starts over even with a usable partial file
    _plant_partial(out, s3, bucket, "w.tseal", data[:PART] + bytes(len(data) - PART), done=[0])
    assert ts3.pull(f"s3://{bucket}/w.tseal", out, part_size=PART, resume=False).resumed_bytes == 0


def test_storage_errors_are_one_line_with_a_hint(capsys, s3, bucket, sealed, tmp_path):
    code, _, err = run(capsys, "pull", f"s3://{bucket}/missing.tseal", "-o", tmp_path / "x")
    assert code == 1 and "404" in err and "hint:" in err and leftovers(tmp_path) == []
    code, _, err = run(capsys, "push", sealed, f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x.tseal")
    assert code == 1 and "NoSuchBucket" in err and "hint: check the bucket name" in err
    code, _, err = run(capsys, "push", sealed, "https://example.invalid/x")
    assert code == 2 and "not an s3:// URL" in err
    assert len(err.strip().splitlines()) == 2  # error and hint


# ---- audit-bucket -----------------------------------------------------------------------------
def audit(capsys, *args: object) -> tuple[int, dict[str, str], dict]:
    code, out, _ = run(capsys, "audit-bucket", *args, "--json")
    report = json.loads(out)
    return code, {c["check"]: c["status"] for c in report["checks"]}, report


def test_audit_of_a_fresh_bucket_fails(capsys, bucket):
    code, status, report = audit(capsys, f"s3://{bucket}")
    assert code == 1 and not report["ok"]
    assert status == {
        "default-encryption": "FAIL", "bucket-key": "WARN", "deny-unencrypted-puts": "FAIL",
        "deny-insecure-transport": "FAIL", "public-access-block": "FAIL", "versioning": "WARN",
    }  # fmt: skip
    assert all(c["fix"] for c in report["checks"])
    code, out, err = run(capsys, "audit-bucket", f"s3://{bucket}")
    assert code == 1 and "FAIL" in out and "deny-insecure-transport" in out and "4 check(s) fail" in err


def test_fix_needs_a_kms_key_and_changes_nothing_without_it(capsys, s3, bucket):
    code, _, err = run(capsys, "audit-bucket", f"s3://{bucket}", "--fix")
    assert code == 2 and "--kms-key" in err
    assert s3.get_bucket_versioning(Bucket=bucket).get("Status") is None
    code, _, err = run(capsys, "audit-bucket", f"s3://{bucket}", "--fix", "--kms-key", "alias/does-not-exist")
    assert code == 2 and "not found" in err
    code, _, err = run(capsys, "audit-bucket", f"s3://{bucket}", "--kms-key", "k")
    assert code == 2 and "goes with --fix" in err


def test_fix_then_everything_passes(capsys, s3, bucket, kms_key):
    code, status, report = audit(capsys, f"s3://{bucket}", "--fix", "--kms-key", kms_key)
    assert code == 0 and report["ok"] and set(status.values()) == {"PASS"}, report
    assert len(report["fixed"]) == 4
    enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc == {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key},
        "BucketKeyEnabled": True,
    }
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    sids = [s["Sid"] for s in json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]]
    assert sids == ["TensorsealDenyNonKmsPuts", "TensorsealDenyInsecureTransport"]
    # a second run finds nothing to do and changes nothing
    code, status, report = audit(capsys, f"s3://{bucket}", "--fix")
    assert code == 0 and report["fixed"] == [] and set(status.values()) == {"PASS"}
    assert [s["Sid"] for s in json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]] == sids


def test_fix_keeps_unrelated_policy_statements(capsys, s3, bucket, kms_key):
    analytics = {
        "Sid": "AnalyticsRead", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:role/analytics"},
        "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{bucket}/reports/*",
    }  # fmt: skip
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Id": "keep-me", "Statement": [analytics]})
    )
    code, status, _ = audit(capsys, f"s3://{bucket}", "--fix", "--kms-key", kms_key)
    assert code == 0 and set(status.values()) == {"PASS"}
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Id"] == "keep-me" and policy["Statement"][0] == analytics and len(policy["Statement"]) == 3


def test_sse_s3_is_a_warning_and_an_existing_kms_key_is_kept(capsys, s3, bucket, kms_key):
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    _, status, _ = audit(capsys, f"s3://{bucket}")
    assert status["default-encryption"] == "WARN"
    rule = {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key},
        "BucketKeyEnabled": False,
    }
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    _, status, _ = audit(capsys, f"s3://{bucket}")
    assert status["default-encryption"] == "PASS" and status["bucket-key"] == "WARN"
    ts3.fix_bucket(bucket)  # no --kms-key needed: the bucket's key is kept, the bucket key turned on
    enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == kms_key and enc["BucketKeyEnabled"]


@pytest.mark.parametrize(
    ("statement", "check", "passes"),
    [
        # the classic form: deny puts that do not ask for SSE-KMS
        (
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::{b}/*",
                "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}},
            },
            "deny-unencrypted-puts",
            True,
        ),
        (
            {
                "Effect": "Deny",
                "Principal": {"AWS": ["*"]},
                "Action": "s3:*",
                "Resource": "arn:aws:s3:::*",
                "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}},
            },
            "deny-unencrypted-puts",
            True,
        ),
        # only for one principal, or only for part of the bucket: not a guard
        (
            {
                "Effect": "Deny",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::{b}/*",
                "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}},
            },
            "deny-unencrypted-puts",
            False,
        ),
        (
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "arn:aws:s3:::{b}/models/*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
            "deny-insecure-transport",
            False,
        ),
        (
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": ["arn:aws:s3:::{b}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": False}},
            },
            "deny-insecure-transport",
            True,
        ),
        (
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "arn:aws:s3:::{b}/*",
                "Condition": {"Bool": {"aws:SecureTransport": "true"}},
            },
            "deny-insecure-transport",
            False,
        ),
    ],
)
def test_policy_is_checked_as_a_document(s3, bucket, statement, check, passes):
    text = json.dumps({"Version": "2012-10-17", "Statement": [statement]}).replace("{b}", bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=text)
    status = {c.name: c.status for c in ts3.audit_bucket(bucket)}
    assert status[check] == ("PASS" if passes else "FAIL")


def test_audit_errors(capsys, aws):
    code, _, err = run(capsys, "audit-bucket", f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}")
    assert code == 1 and "NoSuchBucket" in err
    code, _, err = run(capsys, "audit-bucket", "s3://some-bucket/an/object")
    assert code == 2 and "names an object" in err


def test_region_from_aws_region_alone(aws, monkeypatch):
    """AWS_REGION (what the other AWS SDKs read) is enough; boto3 alone reads only AWS_DEFAULT_REGION."""
    from tensorseal.s3._client import make_client

    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert make_client("kms").meta.region_name == "eu-west-3"


def test_urls():
    assert ts3.parse_url("s3://my.bucket-1/a/b.tseal") == ts3.S3Url("my.bucket-1", "a/b.tseal")
    assert ts3.parse_url("s3://bkt").is_prefix and ts3.parse_url("s3://bkt/dir/").is_prefix
    for bad in ("bkt/key", "s3://", "s3://a/key", "s3://-bad/key", "s3://bad..name/k", "s3://bkt/" + "k" * 1025):
        with pytest.raises(UsageError):
            ts3.parse_url(bad)
    with pytest.raises(UsageError, match="names no object"):
        ts3.pull("s3://bkt/dir/", "out")


def test_an_expected_identity_needs_a_key_or_a_signature(tmp_path):
    """Without -i or --signer the header of a pulled file is unauthenticated: an
    expected name or version could not be trusted, so the pull refuses to start."""
    from tensorseal.client import pull as https_pull
    from tensorseal.s3 import pull as s3_pull

    with pytest.raises(UsageError, match="only with a signature or a key"):
        s3_pull("s3://models/m.tseal", tmp_path / "m.tseal", expect_name="m")
    with pytest.raises(UsageError, match="only with a signature or a key"):
        https_pull("https://127.0.0.1:1/models/m/1", tmp_path / "m.tseal", cert=None, key=None, ca=tmp_path / "ca.pem",
                   min_version="1.0")  # fmt: skip
    assert list(tmp_path.iterdir()) == []
