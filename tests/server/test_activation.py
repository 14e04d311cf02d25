"""Licence activation: seats enforced atomically (SQLite and PostgreSQL, real concurrency),
revocation, rate limits per client certificate, audit records with the client's subject."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
import pytest

import tensorseal.numpy
from tensorseal.cli import main
from tensorseal.client import activate
from tensorseal.device import DeviceFingerprint
from tensorseal.errors import (
    LicenceExpiredError,
    LicenceRevokedError,
    RateLimitedError,
    SeatLimitError,
    ServerError,
    SignatureError,
    UsageError,
    WrongLicenceKeyError,
)
from tensorseal.recipients.licence import LicenceIdentity, LicenceKey
from tensorseal.server.licences import LicenceStore, database_url
from tensorseal.signing import SigningKey
from tensorseal.tls import client_context

from .conftest import client_args, start_server

FUTURE = datetime(2031, 1, 1, tzinfo=timezone.utc)


def device(i: int) -> DeviceFingerprint:
    return DeviceFingerprint.from_machine_id(f"{i + 1:032x}")


def add(db: str, seats: int, *, model: str = "acme-llm", version: str = "1.0", expires: datetime = FUTURE) -> LicenceKey:
    with LicenceStore(db) as store:
        key, _ = store.add(model=model, version=version, licensee="Jane Doe <jane@example.org>", seats=seats, expires=expires)
    return key


def _kw(certs, *, second: bool = False) -> dict:
    if second:
        return {"cert": certs.client2_cert, "key": certs.client2_key, "ca": certs.ca}
    return {"cert": certs.client_cert, "key": certs.client_key, "ca": certs.ca}


async def _activate_many(url: str, certs, key: LicenceKey, devices: list[DeviceFingerprint]) -> list[httpx.Response]:
    ctx = client_context(certs.client_cert, certs.client_key, certs.ca)
    limits = httpx.Limits(max_connections=len(devices), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, verify=ctx, limits=limits, timeout=120) as http:
        return await asyncio.gather(*(
            http.post("/activate", json={"licence_key": str(key), "device": str(d)}) for d in devices
        ))  # fmt: skip


def test_concurrent_activations_never_exceed_the_seats(certs, vendor, tmp_path, db_url):
    """N devices activate an (N-1)-seat licence at once: exactly N-1 get a seat, each a
    different one, and the database holds N-1 rows."""
    n = 16
    key = add(db_url, n - 1)
    srv = start_server(certs, vendor, tmp_path, db=db_url)
    try:
        responses = asyncio.run(_activate_many(srv.url, certs, key, [device(i) for i in range(n)]))
    finally:
        srv.stop()
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(ok) == n - 1, [r.status_code for r in responses]
    assert [(r.status_code, r.json()["error"]) for r in refused] == [(409, "SeatLimitError")]
    assert sorted(r.json()["seat"] for r in ok) == list(range(1, n))
    with LicenceStore(db_url) as store:
        (record,) = store.list()
        assert record.seats_used == n - 1
        assert len({a["device"] for a in store.activations(record.licence_id)}) == n - 1


def test_store_seat_limit_under_threads(db_url):
    """The store alone, from 24 threads at once, 20 seats: 20 rows, never more."""
    key = add(db_url, 20)
    barrier = threading.Barrier(24)
    results: list[object] = [None] * 24
    with LicenceStore(db_url, pool_size=24) as store:

        def work(i: int) -> None:
            barrier.wait()
            try:
                results[i] = store.activate(key, device(i)).seat
            except SeatLimitError as exc:
                results[i] = exc

        threads = [threading.Thread(target=work, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        seats = [r for r in results if isinstance(r, int)]
        assert sorted(seats) == list(range(1, 21))
        assert sum(isinstance(r, SeatLimitError) for r in results) == 4
        # re-activation keeps the seat and takes no new one
        holder = next(i for i, r in enumerate(results) if isinstance(r, int))
        again = store.activate(key, device(holder))
        assert again.reactivation and again.seat == results[holder] and again.licence.seats_used == 20


def test_schema_forbids_a_second_row_for_a_seat(db_url):
    """The unique (licence, seat) constraint holds even without the lock."""
    import sqlalchemy as sa
    from sqlalchemy.exc import IntegrityError

    key = add(db_url, 2)
    with LicenceStore(db_url) as store:
        store.activate(key, device(0))
        (record,) = store.list()
        t = store._tables.activations
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            conn.execute(t.insert().values(licence_id=record.licence_id, seat=1, device=str(device(9)),
                                           first_activated=0, last_activated=0, activations=1))  # fmt: skip
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() == 1


@pytest.fixture(scope="module")
def act_server(certs, vendor, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("act")
    db = f"sqlite:///{tmp / 'licences.db'}"
    srv = start_server(certs, vendor, tmp, "--audit-log", str(tmp / "audit.jsonl"), "--max-failures", "100",
                       "--licence-days", "7", db=db)  # fmt: skip
    srv.db, srv.audit = db, tmp / "audit.jsonl"
    yield srv
    srv.stop()


def test_walkthrough_add_activate_pull_load(act_server, certs, vendor, tmp_path, capsys):
    """license add (CLI) -> activate (CLI) -> pull (CLI) -> load with the licence."""
    assert main(["license", "add", "--db", act_server.db, "--seats", "2", "--model", "acme-llm", "--version", "1.0",
                 "--licensee", "Jane Doe <jane@example.org>", "--expires", "2031-01-01"]) == 0  # fmt: skip
    licence_key = capsys.readouterr().out.strip()
    assert licence_key.startswith("TSEAL-LICENCE-KEY-1")
    vendor_pub = str(vendor.key.public_key())
    dev = str(device(100))
    lic = tmp_path / "licence.tsl"
    assert main(["activate", act_server.url, "--license-key", licence_key, "--device", dev, "--vendor", vendor_pub,
                 "-o", str(lic), *client_args(certs)]) == 0  # fmt: skip
    assert "seat 1 of 2" in capsys.readouterr().err
    model = tmp_path / "acme.tseal"
    assert main(["pull", act_server.url + "/models/acme-llm/1.0", "-o", str(model), "--signer", vendor_pub,
                 *client_args(certs)]) == 0  # fmt: skip
    ident = LicenceIdentity.from_file(lic, licence_key, trusted_vendors=[vendor_pub], fingerprint=dev)
    assert ident.licence.expires <= datetime.now(timezone.utc) + timedelta(days=7, minutes=1)
    loaded = tensorseal.numpy.load_file(model, identities=[ident])
    for name, value in vendor.tensors.items():
        np.testing.assert_array_equal(loaded[name], value)
    # the blob opens on that device only
    from tensorseal.errors import WrongDeviceError

    with pytest.raises(WrongDeviceError):
        LicenceIdentity.from_file(lic, licence_key, trusted_vendors=[vendor_pub], fingerprint=str(device(101)))
    # re-activating the same device: the same seat, a fresh blob
    again = activate(act_server.url, licence_key, device=dev, vendors=[vendor_pub], **_kw(certs))
    assert again.reactivation and again.seat == 1 and again.blob != lic.read_bytes()
    # a vendor key the client does not trust
    with pytest.raises(SignatureError):
        activate(act_server.url, licence_key, device=dev, vendors=[SigningKey.generate().public_key()], **_kw(certs))


def test_revocation_refuses_new_and_re_activations(act_server, certs, capsys):
    key = add(act_server.db, 3)
    activate(act_server.url, key, device=device(1), **_kw(certs))
    assert main(["license", "revoke", str(key), "--db", act_server.db, "--reason", "refund"]) == 0
    assert "revoked" in capsys.readouterr().err
    for dev in (device(1), device(2)):  # re-activation and a new device
        with pytest.raises(LicenceRevokedError):
            activate(act_server.url, key, device=dev, **_kw(certs, second=True))
    with LicenceStore(act_server.db) as store:
        record = store.find(str(key))
        assert record.revoked is not None and record.revoke_reason == "refund" and record.seats_used == 1
    assert main(["license", "revoke", "0" * 32, "--db", act_server.db]) == 2


def test_expired_licence_and_unknown_model(act_server, certs):
    key = add(act_server.db, 1, expires=datetime.now(timezone.utc) + timedelta(seconds=1))
    import time

    time.sleep(1.5)
    with pytest.raises(LicenceExpiredError):
        activate(act_server.url, key, device=device(1), **_kw(certs, second=True))
    other = add(act_server.db, 1, model="no-such-model")
    with pytest.raises(ServerError, match="no master key"):
        activate(act_server.url, other, device=device(1), **_kw(certs, second=True))
    with LicenceStore(act_server.db) as store:
        assert store.find(str(other)).seats_used == 0  # refused before a seat was taken


def test_failed_attempts_are_rate_limited_per_certificate(certs, vendor, tmp_path):
    srv = start_server(certs, vendor, tmp_path, "--max-failures", "3", "--failure-window", "3600")
    try:
        db = f"sqlite:///{tmp_path / 'licences.db'}"
        good = add(db, 5)
        for _ in range(3):
            with pytest.raises(WrongLicenceKeyError, match="knows no licence"):
                activate(srv.url, LicenceKey.generate(), device=device(1), **_kw(certs))
        with pytest.raises(RateLimitedError, match="too many failed"):  # even with the right key now
            activate(srv.url, good, device=device(1), **_kw(certs))
        with httpx.Client(verify=client_context(certs.client_cert, certs.client_key, certs.ca)) as http:
            r = http.post(srv.url + "/activate", json={"licence_key": str(good), "device": str(device(1))})
            assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        # another client certificate is not affected
        assert activate(srv.url, good, device=device(1), **_kw(certs, second=True)).seat == 1
    finally:
        srv.stop()


def test_malformed_requests(act_server, certs):
    with httpx.Client(verify=client_context(certs.client2_cert, certs.client2_key, certs.ca)) as http:
        for body in (b"not json", b"[]", b'{"licence_key": "x"}', b'{"licence_key": 1, "device": 2}'):
            r = http.post(act_server.url + "/activate", content=body)
            assert r.status_code == 400 and r.json()["error"] == "UsageError", body
        r = http.post(act_server.url + "/activate", json={"licence_key": "TSEAL-LICENCE-KEY-1AAAA", "device": str(device(1))})
        assert r.status_code == 400 and r.json()["error"] == "InvalidKeyError"
        assert http.get(act_server.url + "/activate").status_code == 405


def test_audit_log_names_the_client_certificate(act_server, certs):
    key = add(act_server.db, 1)
    activate(act_server.url, key, device=device(7), **_kw(certs))
    with pytest.raises(SeatLimitError):
        activate(act_server.url, key, device=device(8), **_kw(certs))
    records = [json.loads(line) for line in act_server.audit.read_text().splitlines()]
    mine = [r for r in records if r.get("device") in (str(device(7)), str(device(8)))]
    events = [(r["event"], r["outcome"], r.get("error")) for r in mine]
    assert events[-3:] == [("activate", "ok", None), ("key-release", "ok", None), ("activate", "refused", "SeatLimitError")]
    for r in mine[-3:]:
        assert r["client"]["subject"] == "CN=test-client-1" or "test-client-1" in r["client"]["subject"]
        assert len(r["client"]["sha256"]) == 64
    release = mine[-2]
    assert release["recipient"]["kind"] == "licence" and release["seat"] == 1
    assert str(key) not in act_server.audit.read_text()  # never the licence key


def test_license_cli_list_and_errors(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'l.db'}"
    assert main(["license", "add", "--db", db, "--seats", "0", "--model", "m", "--version", "1", "--licensee", "x",
                 "--expires", "2031-01-01"]) == 2  # fmt: skip
    assert main(["license", "add", "--db", db, "--seats", "1", "--model", "m", "--version", "1", "--licensee", "x",
                 "--expires", "2001-01-01"]) == 2  # fmt: skip
    assert main(["license", "add", "--db", db, "--seats", "4", "--model", "m", "--version", "1", "--licensee", "x",
                 "--expires", "someday"]) == 2  # fmt: skip
    assert main(["license", "add", "--db", db, "--seats", "4", "--model", "m", "--version", "1", "--licensee", "x",
                 "--expires", "2031-01-01", "-q"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["license", "list", "--db", db]) == 0
    assert "0/4 seats" in capsys.readouterr().out
    assert main(["license", "list", "--db", db, "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc["seats"] == 4 and doc["activations"] == [] and doc["revoked"] is None
    assert main(["license", "list", "--db", "mysql://x"]) == 2


def test_database_urls(tmp_path, monkeypatch):
    assert database_url("postgresql://u@h:5/d") == "postgresql+psycopg://u@h:5/d"
    assert database_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv("TENSORSEAL_DB", "sqlite:///env.db")
    assert database_url(None) == "sqlite:///env.db"
    with pytest.raises(UsageError):
        database_url("mysql://x")


def test_no_licence_leaves_without_its_audit_record(certs, vendor, tmp_path):
    """TENSORSEAL_AUDIT_REQUIRED=1 and an unwritable log: the activation is refused with
    500 (the seat stays committed for that device), and no licence file is sent."""
    env = {"TENSORSEAL_AUDIT_REQUIRED": "1", "TENSORSEAL_AUDIT_LOG": str(tmp_path / "missing-dir" / "audit.jsonl")}
    srv = start_server(certs, vendor, tmp_path, env=env)
    try:
        key = add(f"sqlite:///{tmp_path / 'licences.db'}", 1)
        with httpx.Client(verify=client_context(certs.client_cert, certs.client_key, certs.ca)) as http:
            r = http.post(srv.url + "/activate", json={"licence_key": str(key), "device": str(device(1))})
        assert r.status_code == 500 and r.json()["error"] == "AuditError" and "licence" not in r.json()
    finally:
        srv.stop()
    with LicenceStore(f"sqlite:///{tmp_path / 'licences.db'}") as store:
        assert store.find(str(key)).seats_used == 1
