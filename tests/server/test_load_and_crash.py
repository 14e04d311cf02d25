"""A bounded load test on loopback (every file verified, the server's memory bounded) and
kill -9 of the server in the middle of activations (nothing committed is lost, no seat
over-issued)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tensorseal.client import pull
from tensorseal.recipients.master import MasterKey
from tensorseal.server.licences import LicenceStore
from tensorseal.tls import client_context

from .conftest import make_model, start_server
from .test_activation import FUTURE, device

PULLS = 64  # all at once
MODEL_ROWS = 1024  # 4 MiB of float32


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the server's RSS from /proc")
def test_concurrent_pulls_are_verified_and_memory_is_bounded(certs, vendor, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    master = MasterKey.from_file(vendor.master_file)
    make_model(models / "big.tseal", MasterKey(master.secret_bytes(), "big", "1"), vendor.key, rows=MODEL_ROWS)
    size = (models / "big.tseal").stat().st_size
    original = (models / "big.tseal").read_bytes()
    srv = start_server(certs, vendor, tmp_path, models=models, activation=False)
    url = srv.url + "/models/big/1"
    kw = {"cert": certs.client_cert, "key": certs.client_key, "ca": certs.ca}
    signer = [vendor.key.public_key()]
    try:
        pull(url, tmp_path / "warm.tseal", signers=signer, **kw)  # warm up: imports, page cache, buffers
        base = _rss(srv.proc.pid)
        peak = [base]
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _rss(srv.proc.pid))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        barrier = threading.Barrier(PULLS)

        def one(i: int) -> str:
            barrier.wait()
            result = pull(url, tmp_path / f"out-{i}.tseal", signers=signer, **kw)
            assert result.signed_by == "manifest" and result.digest_checked
            return result.path

        try:
            with ThreadPoolExecutor(PULLS) as pool:
                paths = list(pool.map(one, range(PULLS)))
        finally:
            stop.set()
            watcher.join()
    finally:
        srv.stop()
    assert len(paths) == PULLS
    for p in paths:  # every file is byte for byte the served one
        with open(p, "rb") as f:
            assert f.read() == original
    # reading each file whole per request would take PULLS * size (256 MiB) at once;
    # streaming in 128 KiB chunks stays within a few MiB per connection
    growth = peak[0] - base
    assert growth < PULLS * size // 2, f"server RSS grew {growth >> 20} MiB for {PULLS} pulls of {size >> 20} MiB"


async def _flood(url: str, certs, jobs: list[tuple[str, str]], kill_after: int, proc) -> list[tuple[str, str, object]]:
    """Post every (licence key, device) activation at once; SIGKILL the server once
    ``kill_after`` of them succeeded. Returns (key, device, licence id or exception)."""
    ctx = client_context(certs.client_cert, certs.client_key, certs.ca)
    limits = httpx.Limits(max_connections=len(jobs), max_keepalive_connections=0)
    done: list[tuple[str, str, object]] = []
    async with httpx.AsyncClient(base_url=url, verify=ctx, limits=limits, timeout=60) as http:

        async def one(key: str, dev: str) -> None:
            try:
                r = await http.post("/activate", json={"licence_key": key, "device": dev})
                done.append((key, dev, r.json()["licence_id"] if r.status_code == 200 else r.json()["error"]))
            except httpx.HTTPError as exc:
                done.append((key, dev, exc))
            if sum(isinstance(x, str) and len(x) == 32 for *_, x in done) >= kill_after and proc.poll() is None:
                proc.kill()

        await asyncio.gather(*(one(k, d) for k, d in jobs))
    return done


@pytest.mark.skipif(not hasattr(os, "kill"), reason="needs SIGKILL")
def test_kill9_mid_activation_loses_nothing_and_never_over_issues(certs, vendor, tmp_path, db_url):
    seats = 8
    keys = []
    with LicenceStore(db_url) as store:
        for _ in range(3):
            key, record = store.add(model="acme-llm", version="1.0", licensee="Fleet", seats=seats, expires=FUTURE)
            keys.append((str(key), record.licence_id))
    jobs = [(k, str(device(100 * n + i))) for n, (k, _) in enumerate(keys) for i in range(14)]  # 42 for 24 seats
    srv = start_server(certs, vendor, tmp_path, db=db_url)
    first = asyncio.run(_flood(srv.url, certs, jobs, kill_after=6, proc=srv.proc))
    srv.proc.wait(30)
    assert srv.proc.returncode == -9
    acked = {(k, d) for k, d, x in first if isinstance(x, str) and len(x) == 32}
    lost = [x for *_, x in first if isinstance(x, Exception)]
    assert len(acked) >= 6 and lost, "the server was not killed while activations were in flight"

    def rows() -> dict[str, set[str]]:
        with LicenceStore(db_url) as store:
            return {lid: {a["device"] for a in store.activations(lid)} for _, lid in keys}

    after_crash = rows()
    by_key = dict(keys)
    for key, dev in acked:  # every activation a client was told about is there
        assert dev in after_crash[by_key[key]]
    assert all(len(devs) <= seats for devs in after_crash.values())

    # restart and send everything again: each licence ends with exactly `seats` devices
    srv = start_server(certs, vendor, tmp_path, db=db_url)
    try:
        second = asyncio.run(_flood(srv.url, certs, jobs, kill_after=10**9, proc=srv.proc))
    finally:
        srv.stop()
    final = rows()
    ok = [(k, d) for k, d, x in second if isinstance(x, str) and len(x) == 32]
    assert all(x in ("SeatLimitError",) or len(x) == 32 for *_, x in second), second
    for key, lid in keys:
        assert len(final[lid]) == seats
        assert after_crash[lid] <= final[lid]  # nothing committed before the crash disappeared
        assert {d for k, d in ok if k == key} == final[lid]  # each holder re-activates on its seat
