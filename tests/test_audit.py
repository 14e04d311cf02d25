"""The audit log: one JSON-lines record (and one logging record) per unwrap attempt.

Real sealed files, real identities and a real KMS (moto's server, from
tests/conftest.py); the "refused" case is a Vault key with no server set, a
real refusal that needs no network.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import pwd
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensorseal.numpy as tsnp
from tensorseal import audit
from tensorseal.errors import (
    AuditError,
    FormatError,
    KeyCommitmentError,
    KeyServiceError,
    NoIdentityMatchError,
    UsageError,
    WorkFactorError,
)
from tensorseal.format.header import ModelIdentity, Stanza
from tensorseal.reader import SealedFile
from tensorseal.recipients import (
    AwsKmsKey,
    AzureKeyVaultKey,
    GcpKmsKey,
    KeyringKey,
    Passphrase,
    SymmetricKey,
    VaultTransitKey,
    X25519Identity,
)
from tensorseal.rotation import rekey, rewrap
from tensorseal.writer import SealOptions, write_sealed


FIELDS = [
    "time", "event", "outcome", "error", "detail", "file", "file_id", "model", "recipient",
    "user", "uid", "host", "pid", "process",
]  # fmt: skip
TENSORS = {"w": np.arange(4096, dtype=np.float32), "b": np.ones(3, dtype=np.float16)}
MODEL = ModelIdentity(name="llama-audit", version="1.2", file="model-00001-of-00002.safetensors")


@pytest.fixture(autouse=True)
def clean_audit_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in (audit.LOG_ENV, audit.REQUIRED_ENV, "VAULT_ADDR", "VAULT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    audit.configure()
    yield
    audit.configure()


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "audit" / "unwrap.jsonl"
    path.parent.mkdir()
    monkeypatch.setenv(audit.LOG_ENV, str(path))
    return path


def records(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode("ascii").splitlines()]


def seal(path: Path, recipients: Sequence[object], **kw: Any) -> Path:
    tsnp.save_file(TENSORS, path, list(recipients), name="llama-audit", version="1.2", **kw)  # type: ignore[arg-type]
    return path


def seal_stanzas(path: Path, file_key: bytes, stanzas: Sequence[Stanza]) -> Path:
    """A blob file whose header carries exactly ``stanzas`` (the test-vector entry point)."""
    data = os.urandom(5000)
    write_sealed(
        path, mode="blob", lengths=[len(data)], source=lambda seg, scratch: memoryview(data)[seg.start : seg.start + seg.length],
        recipients=[], options=SealOptions(identity=MODEL), _file_key=file_key, _stanzas=stanzas,
    )  # fmt: skip
    return path


def expected_file_id(path: Path) -> str:
    with SealedFile(path) as sealed:
        return hashlib.sha256(b"tensorseal/v1/file-id" + sealed.header.salt).hexdigest()[:32]


def open_with(path: Path, identities: object) -> None:
    with SealedFile(path) as sealed:
        sealed.unlock(identities)  # type: ignore[arg-type]
        assert sealed.unlocked


# ---- what one record says -----------------------------------------------------------------
def test_a_successful_unwrap_writes_one_complete_record(tmp_path, log, identity):
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    assert not log.exists()
    open_with(path, identity)
    (rec,) = records(log)
    assert list(rec) == FIELDS
    assert rec["event"] == "unwrap" and rec["outcome"] == "ok"
    assert rec["error"] is None and rec["detail"] is None
    assert rec["file"] == os.path.abspath(path)
    assert rec["file_id"] == expected_file_id(path) and len(rec["file_id"]) == 32
    assert rec["model"] == {"name": "llama-audit", "version": "1.2", "file": None}
    assert rec["recipient"] == {"kind": "X25519", "key_id": str(identity.recipient())}
    assert rec["user"] == pwd.getpwuid(os.getuid()).pw_name and rec["uid"] == os.getuid()
    assert rec["host"] == socket.gethostname() and rec["pid"] == os.getpid()
    assert isinstance(rec["process"], str) and rec["process"]
    when = datetime.fromisoformat(rec["time"].replace("Z", "+00:00"))
    assert rec["time"].endswith("Z") and when.utcoffset() == timezone.utc.utcoffset(None)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600  # created private


def test_the_file_id_survives_rewrap_and_changes_with_rekey(tmp_path, log, identity, other_identity):
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    before = expected_file_id(path)
    rewrap(path, identity, add=[other_identity.recipient()])
    open_with(path, other_identity)
    assert records(log)[-1]["file_id"] == before
    rekey(path, other_identity, [identity.recipient()])
    open_with(path, identity)
    assert records(log)[-1]["file_id"] == expected_file_id(path) != before
    assert {r["outcome"] for r in records(log)} == {"ok"}


def test_each_identity_tried_is_one_record_in_order(tmp_path, log, identity, other_identity):
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    symmetric = SymmetricKey.generate()
    open_with(path, [other_identity, symmetric, identity, X25519Identity.generate()])
    got = [(r["outcome"], r["error"], r["recipient"]["kind"], r["recipient"]["key_id"]) for r in records(log)]
    assert got == [
        ("not-mine", "IncorrectIdentityError", "X25519", str(other_identity.recipient())),
        ("not-mine", "IncorrectIdentityError", "symmetric", None),
        ("ok", None, "X25519", str(identity.recipient())),
    ]  # the identity after the one that opened the file is never tried


def test_no_identity_matches(tmp_path, log, identity, other_identity):
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    with pytest.raises(NoIdentityMatchError):
        open_with(path, other_identity)
    (rec,) = records(log)
    assert (rec["outcome"], rec["error"]) == ("not-mine", "IncorrectIdentityError")
    assert rec["detail"] == "no X25519 stanza for this identity"


def test_wrong_passphrase_is_not_mine_and_names_no_key(tmp_path, log):
    path = seal(tmp_path / "m.tseal", [Passphrase("right horse", work_factor=10)])
    with pytest.raises(NoIdentityMatchError):
        open_with(path, Passphrase("wrong horse", work_factor=10))
    open_with(path, Passphrase("right horse", work_factor=10))
    got = [(r["outcome"], r["recipient"], r["detail"]) for r in records(log)]
    assert got == [
        ("not-mine", {"kind": "scrypt", "key_id": None}, "wrong passphrase"),
        ("ok", {"kind": "scrypt", "key_id": None}, None),
    ]


def test_a_key_service_that_refuses_is_recorded_as_refused(tmp_path, log, identity):
    file_key = os.urandom(32)
    vault = Stanza("vault-transit", ("transit", "models"), b"vault:v1:AAAA")
    path = seal_stanzas(tmp_path / "m.tseal", file_key, [vault, *identity.recipient().wrap(file_key)])
    with pytest.raises(KeyServiceError, match="VAULT_ADDR"):
        open_with(path, None)  # the ambient Vault key: no server configured
    open_with(path, [VaultTransitKey("transit", "models"), identity])
    got = [(r["outcome"], r["error"], r["recipient"]) for r in records(log)]
    refused = ("refused", "KeyServiceError", {"kind": "vault-transit", "key_id": "transit/models"})
    assert got == [refused, refused, ("ok", None, {"kind": "X25519", "key_id": str(identity.recipient())})]
    assert all(r["model"] == {"name": "llama-audit", "version": "1.2", "file": MODEL.file} for r in records(log))


@pytest.mark.parametrize("case", ["commitment", "malformed", "work-factor"])
def test_other_failures_are_errors_with_their_class(tmp_path, log, identity, case):
    file_key = os.urandom(32)
    if case == "commitment":  # a stanza that opens, holding another file's key
        path = seal_stanzas(tmp_path / "m.tseal", file_key, identity.recipient().wrap(os.urandom(32)))
        opener, error = identity, KeyCommitmentError
    elif case == "malformed":
        path = seal_stanzas(tmp_path / "m.tseal", file_key, [Stanza("X25519", ("a", "b"), bytes(48))])
        opener, error = identity, FormatError
    else:
        path = seal(tmp_path / "m.tseal", [Passphrase("pw", work_factor=12)])
        opener, error = Passphrase("pw", max_work_factor=11), WorkFactorError
    with pytest.raises(error):
        open_with(path, opener)
    (rec,) = records(log)
    assert (rec["outcome"], rec["error"]) == ("error", error.__name__)


def test_aws_kms_records_name_the_key_arn(tmp_path, log, aws_env):
    boto3 = pytest.importorskip("boto3")
    kms = boto3.client("kms")
    arn = kms.create_key(Description="tensorseal audit test")["KeyMetadata"]["Arn"]
    path = seal(tmp_path / "m.tseal", [f"awskms:{arn}"])
    open_with(path, None)  # the ambient identity the stanza names
    other = kms.create_key(Description="not this file's key")["KeyMetadata"]["Arn"]
    open_with(path, AwsKmsKey(other))  # not this file's key; then the ambient one opens it
    got = [(r["outcome"], r["recipient"]) for r in records(log)]
    mine, not_mine = {"kind": "aws-kms", "key_id": arn}, {"kind": "aws-kms", "key_id": other}
    assert got == [("ok", mine), ("not-mine", not_mine), ("ok", mine)]


def test_every_key_type_names_itself(identity):
    arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    gcp = "projects/p/locations/global/keyRings/r/cryptoKeys/k"
    azure = "https://vault.example.net/keys/model/0123456789abcdef"
    assert audit.recipient_info(identity) == {"kind": "X25519", "key_id": str(identity.recipient())}
    assert audit.recipient_info(SymmetricKey.generate()) == {"kind": "symmetric", "key_id": None}
    assert audit.recipient_info(Passphrase("x")) == {"kind": "scrypt", "key_id": None}
    assert audit.recipient_info(AwsKmsKey(arn)) == {"kind": "aws-kms", "key_id": arn}
    assert audit.recipient_info(VaultTransitKey("transit", "m")) == {"kind": "vault-transit", "key_id": "transit/m"}
    assert audit.recipient_info(GcpKmsKey(gcp)) == {"kind": "gcp-kms", "key_id": gcp}
    assert audit.recipient_info(AzureKeyVaultKey(azure)) == {"kind": "azure-kv", "key_id": azure}
    assert audit.recipient_info(KeyringKey("svc", "name")) == {"kind": "keyring", "key_id": "svc/name"}

    class Homemade:
        def unwrap(self, stanzas: object, context: object = None) -> bytes:
            raise NotImplementedError

    class Broken(Homemade):
        def audit_info(self) -> dict[str, str]:
            raise RuntimeError("boom")

    assert audit.recipient_info(Homemade()) == {"kind": "Homemade", "key_id": None}
    assert audit.recipient_info(Broken()) == {"kind": "Broken", "key_id": None}


# ---- no secrets -------------------------------------------------------------------------
def _forms(secret: bytes) -> list[bytes]:
    """Every encoding of ``secret`` that could end up in a text log."""
    b64 = base64.b64encode(secret)
    return [secret, secret.hex().encode(), secret.hex().upper().encode(), b64, b64.rstrip(b"="),
            base64.urlsafe_b64encode(secret).rstrip(b"="), base64.b32encode(secret).rstrip(b"=")]  # fmt: skip


def test_no_key_material_ever_reaches_the_log(tmp_path, log, identity, other_identity, caplog):
    caplog.set_level(logging.DEBUG, logger=audit.LOGGER_NAME)
    symmetric = SymmetricKey.generate()
    path = seal(tmp_path / "m.tseal", [identity.recipient(), symmetric])
    open_with(path, [other_identity, SymmetricKey.generate(), symmetric])
    open_with(path, identity)
    pw_path = seal(tmp_path / "pw.tseal", [Passphrase("hunter2 correct horse", work_factor=10)])
    with pytest.raises(NoIdentityMatchError):
        open_with(pw_path, Passphrase("hunter3 wrong horse", work_factor=10))
    open_with(pw_path, Passphrase("hunter2 correct horse", work_factor=10))
    graft = seal_stanzas(tmp_path / "g.tseal", os.urandom(32), identity.recipient().wrap(bad_key := os.urandom(32)))
    with pytest.raises(KeyCommitmentError):
        open_with(graft, identity)

    secrets: list[bytes] = [b"hunter2 correct horse", b"hunter3 wrong horse", bad_key]
    for ident in (identity, other_identity):
        secrets += [str(ident).encode(), ident._key.private_bytes_raw()]
    secrets += [str(symmetric).encode(), symmetric._key]
    for p in (path, pw_path):
        with SealedFile(p) as sealed:
            sealed.unlock([identity, Passphrase("hunter2 correct horse", work_factor=10)])
            secrets.append(sealed.file_key)
            secrets += [s.body for s in sealed.header.recipients]  # wrapped keys: not secret, never logged either
    text = log.read_bytes() + "\n".join(r.getMessage() for r in caplog.records).encode()
    assert len(records(log)) == 10 and len(caplog.records) >= 10
    for secret in secrets:
        for form in _forms(secret) if not secret.startswith((b"TSEAL-", b"hunter")) else [secret]:
            assert form not in text, secret


# ---- the logger ---------------------------------------------------------------------------
def test_the_logger_gets_every_record(tmp_path, log, identity, other_identity, caplog):
    caplog.set_level(logging.INFO, logger=audit.LOGGER_NAME)
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    open_with(path, [other_identity, identity])
    mine = [r for r in caplog.records if r.name == audit.LOGGER_NAME]
    assert [r.levelno for r in mine] == [logging.WARNING, logging.INFO]
    assert [r.audit for r in mine] == records(log)  # type: ignore[attr-defined]
    assert [json.loads(r.getMessage()) for r in mine] == records(log)


def test_without_a_log_file_records_go_to_the_logger_only(tmp_path, identity, caplog):
    caplog.set_level(logging.INFO, logger=audit.LOGGER_NAME)
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    open_with(path, identity)
    (rec,) = [r for r in caplog.records if r.name == audit.LOGGER_NAME]
    assert rec.audit["outcome"] == "ok" and rec.levelno == logging.INFO  # type: ignore[attr-defined]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tseal"]


def test_configure_sets_the_file_and_the_logger(tmp_path, monkeypatch, identity, caplog):
    monkeypatch.setenv(audit.LOG_ENV, str(tmp_path / "from-env.jsonl"))
    custom = logging.getLogger("myapp.security")
    caplog.set_level(logging.INFO, logger="myapp.security")
    audit.configure(tmp_path / "configured.jsonl", logger=custom)
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    open_with(path, identity)
    assert [r["outcome"] for r in records(tmp_path / "configured.jsonl")] == ["ok"]
    assert not (tmp_path / "from-env.jsonl").exists()
    assert [r.name for r in caplog.records if hasattr(r, "audit")] == ["myapp.security"]
    audit.configure()  # back to the environment
    open_with(path, identity)
    assert [r["outcome"] for r in records(tmp_path / "from-env.jsonl")] == ["ok"]
    with pytest.raises(UsageError):
        audit.configure("")


# ---- concurrency ----------------------------------------------------------------------------
WRITER = """
    import os, sys, time
    from tensorseal import audit
    count, name, ready, go = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    open(ready, "w").close()
    while not os.path.exists(go):  # start together, so that the writes really overlap
        time.sleep(0.001)
    for i in range(count):
        audit.record({"event": "test", "outcome": "ok", "writer": name, "seq": i, "pad": name * 3000})
"""


def test_concurrent_processes_never_interleave_records(tmp_path, log):
    # (checked: with two write() calls per record and no O_APPEND, about 15% of the lines break)
    script, go = tmp_path / "writer.py", tmp_path / "go"
    script.write_text(textwrap.dedent(WRITER))
    env = {**os.environ, audit.LOG_ENV: str(log)}
    writers, count = "abcdef", 300
    procs = [
        subprocess.Popen([sys.executable, str(script), str(count), w, str(tmp_path / f"ready-{w}"), str(go)], env=env)
        for w in writers
    ]
    while not all((tmp_path / f"ready-{w}").exists() for w in writers):
        assert all(p.poll() is None for p in procs), "a writer died before starting"
        time.sleep(0.01)
    go.touch()
    assert [p.wait(timeout=300) for p in procs] == [0] * len(writers)
    lines = log.read_bytes().splitlines()
    assert len(lines) == len(writers) * count
    got = [json.loads(line) for line in lines]  # every line is one whole JSON object
    assert sorted((r["writer"], r["seq"]) for r in got) == sorted((w, i) for w in writers for i in range(count))
    assert all(r["pad"] == r["writer"] * 3000 and r["process"] == "writer.py" for r in got)
    assert len({r["pid"] for r in got}) == len(writers)


# ---- a log that cannot be written -----------------------------------------------------------
@pytest.mark.parametrize("where", ["missing-directory", "a-directory"])
def test_an_unwritable_log_warns_and_the_unwrap_goes_on(tmp_path, monkeypatch, identity, caplog, where):
    target = tmp_path / "no-such-dir" / "audit.jsonl" if where == "missing-directory" else tmp_path
    monkeypatch.setenv(audit.LOG_ENV, str(target))
    caplog.set_level(logging.INFO, logger=audit.LOGGER_NAME)
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    with pytest.warns(audit.AuditWarning, match="cannot be written"):
        open_with(path, identity)
    levels = [r.levelno for r in caplog.records if r.name == audit.LOGGER_NAME]
    assert levels == [logging.INFO, logging.ERROR]  # the record itself, then the failure


# ---- fail closed ----------------------------------------------------------------------------
class CountingIdentity:
    """A real X25519 identity that counts its unwraps and can break the log meanwhile."""

    def __init__(self, inner: X25519Identity, break_log: Path | None = None) -> None:
        self.inner, self.calls, self.break_log = inner, 0, break_log

    def unwrap(self, stanzas: Sequence[Stanza], context: Any = None) -> bytes:
        self.calls += 1
        if self.break_log is not None:  # the log turns into a directory while the key is used
            self.break_log.unlink()
            self.break_log.mkdir()
        return self.inner.unwrap(stanzas, context)

    def audit_info(self) -> dict[str, str | None]:
        return self.inner.audit_info()


@pytest.mark.parametrize("how", ["environment", "configure"])
def test_required_log_that_cannot_be_opened_stops_before_any_key_is_used(tmp_path, monkeypatch, identity, how):
    monkeypatch.setenv(audit.LOG_ENV, str(tmp_path / "no-such-dir" / "audit.jsonl"))
    if how == "environment":
        monkeypatch.setenv(audit.REQUIRED_ENV, "1")
    else:
        audit.configure(required=True)
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    counting = CountingIdentity(identity)
    with SealedFile(path) as sealed:
        with pytest.raises(AuditError, match="cannot be opened"):
            sealed.unlock(counting)
        assert counting.calls == 0 and not sealed.unlocked
        with pytest.raises(UsageError):
            sealed.file_key  # noqa: B018
    with pytest.raises(AuditError):
        tsnp.load_file(path, identity)


def test_required_log_with_no_file_set_refuses(tmp_path, monkeypatch, identity):
    monkeypatch.setenv(audit.REQUIRED_ENV, "yes")
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    with pytest.raises(AuditError, match="no audit log file is set"):
        open_with(path, identity)


def test_a_record_lost_after_the_unwrap_leaves_the_file_locked(tmp_path, log, monkeypatch, identity):
    monkeypatch.setenv(audit.REQUIRED_ENV, "1")
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    log.touch()
    breaking = CountingIdentity(identity, break_log=log)
    with SealedFile(path) as sealed:
        with pytest.raises(AuditError, match="cannot be written"):
            sealed.unlock(breaking)
        assert breaking.calls == 1 and not sealed.unlocked
        with pytest.raises(UsageError, match="locked"):
            sealed.index  # noqa: B018


def test_a_lost_failure_record_stops_the_search_too(tmp_path, log, monkeypatch, identity, other_identity):
    monkeypatch.setenv(audit.REQUIRED_ENV, "on")
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    log.touch()
    first = CountingIdentity(other_identity, break_log=log)
    second = CountingIdentity(identity)
    with SealedFile(path) as sealed:
        with pytest.raises(AuditError) as info:
            sealed.unlock([first, second])
        assert not sealed.unlocked and (first.calls, second.calls) == (1, 0)
    assert type(info.value.__context__).__name__ == "IncorrectIdentityError"


def test_required_can_be_turned_on_but_not_off_by_the_application(tmp_path, log, monkeypatch, identity):
    monkeypatch.setenv(audit.REQUIRED_ENV, "0")
    assert not audit.is_required()
    monkeypatch.setenv(audit.REQUIRED_ENV, "1")
    audit.configure(required=False)
    assert audit.is_required()
    path = seal(tmp_path / "m.tseal", [identity.recipient()])
    open_with(path, identity)  # a writable log: the unwrap goes through, recorded
    assert [r["outcome"] for r in records(log)] == ["ok"]
