"""Fixtures for the HTTPS server: trustme CAs, sealed models, a real server process on
loopback, and a throwaway PostgreSQL cluster (initdb/pg_ctl as the postgres user)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("httpx")
pytest.importorskip("sqlalchemy")
trustme = pytest.importorskip("trustme")

import tensorseal.numpy
from tensorseal.recipients.master import MasterKey
from tensorseal.signing import SigningKey

SERVE_TIMEOUT = 60.0


# ---- certificates -----------------------------------------------------------------------
@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: Path  # signs the server and the good clients
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client2_cert: Path  # a second good client (rate limits are per certificate)
    client2_key: Path
    other_cert: Path  # a client certificate from another CA
    other_key: Path
    expired_cert: Path  # signed by the right CA, expired
    expired_key: Path


def _write(leaf: trustme.LeafCert, d: Path, stem: str) -> tuple[Path, Path]:
    cert, key = d / f"{stem}.pem", d / f"{stem}-key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server = _write(ca.issue_cert("127.0.0.1", "localhost"), d, "server")
    client = _write(ca.issue_cert("client.example", common_name="test-client-1"), d, "client")
    client2 = _write(ca.issue_cert("client2.example", common_name="test-client-2"), d, "client2")
    foreign = _write(other.issue_cert("client.example", common_name="intruder"), d, "other")
    now = datetime.now(timezone.utc)
    expired = _write(
        ca.issue_cert("client.example", common_name="expired", not_before=now - timedelta(days=10),
                      not_after=now - timedelta(days=1)), d, "expired",
    )  # fmt: skip
    return Certs(d, d / "ca.pem", *server, *client, *client2, *foreign, *expired)


# ---- vendor keys and a sealed model -------------------------------------------------------
@dataclass(frozen=True)
class Vendor:
    key_file: Path
    key: SigningKey
    master_file: Path
    master: MasterKey
    models: Path  # the --models directory
    model_file: Path
    name: str = "acme-llm"
    version: str = "1.0"
    tensors: dict = field(default_factory=dict)


def make_model(path: Path, master: MasterKey, sign: SigningKey | None, rows: int = 256, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    tensors = {"w": rng.standard_normal((rows, 1024)).astype(np.float32), "b": np.arange(7, dtype=np.float32)}
    tensorseal.numpy.save_file(tensors, path, [master], name=master.name, version=master.version,
                               sign_with=[sign] if sign else ())  # fmt: skip
    return tensors


@pytest.fixture(scope="session")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Vendor:
    d = tmp_path_factory.mktemp("vendor")
    key = SigningKey.generate()
    (d / "vendor.key").write_text(f"{key}\n")
    master = MasterKey.generate("acme-llm", "1.0")
    (d / "acme.mck").write_text(f"{master}\n")
    models = d / "models"
    models.mkdir()
    tensors = make_model(models / "acme-llm-1.0.tseal", master, key)
    (models / "README.txt").write_text("not a model\n")
    return Vendor(d / "vendor.key", key, d / "acme.mck", master, models, models / "acme-llm-1.0.tseal", tensors=tensors)


# ---- the server as a real process ----------------------------------------------------------
@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill9(self) -> None:
        self.proc.kill()  # SIGKILL
        self.proc.wait(10)


def start_server(certs: Certs, vendor: Vendor, tmp: Path, *extra: str, db: str | None = None,
                 models: Path | None = None, activation: bool = True, sign: bool = True, env: dict | None = None) -> Server:  # fmt: skip
    log = tmp / f"serve-{uuid.uuid4().hex[:8]}.log"
    args = [sys.executable, "-m", "tensorseal.cli", "serve", "--models", str(models or vendor.models),
            "--cert", str(certs.server_cert), "--key", str(certs.server_key), "--client-ca", str(certs.ca),
            "--listen", "127.0.0.1:0"] + (["--sign-key", str(vendor.key_file)] if sign else [])  # fmt: skip
    if activation:
        args += ["--master", str(vendor.master_file), "--db", db or f"sqlite:///{tmp / 'licences.db'}"]
    args += list(extra)
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + SERVE_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if "listening on https://" in line:
                return Server(proc, line.split("listening on ", 1)[1].split()[0], log)
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}:\n{text}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the server did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def server(certs: Certs, vendor: Vendor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    srv = start_server(certs, vendor, tmp, "--audit-log", str(tmp / "audit.jsonl"))
    yield srv
    srv.stop()


def client_args(certs: Certs, *, cert: Path | None = None, key: Path | None = None) -> list[str]:
    return ["--cert", str(cert or certs.client_cert), "--key", str(key or certs.client_key), "--ca", str(certs.ca)]


# ---- PostgreSQL ---------------------------------------------------------------------------
def _pg_bindir() -> str | None:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(found))
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Postgres:
    port: int

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver psycopg is not installed")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run the cluster as")
        as_postgres = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else ["su", "postgres", "-s", "/bin/sh", "-c"]
    base = tempfile.mkdtemp(prefix="tensorseal-pg-")
    if as_postgres:
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data, port = os.path.join(base, "data"), _free_port()

    def run(*cmd: str) -> None:
        argv = [os.path.join(bindir, cmd[0]), *cmd[1:]]
        if as_postgres[:1] == ["su"]:
            import shlex

            argv = [*as_postgres, shlex.join(argv)]
        else:
            argv = [*as_postgres, *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120, cwd=base)

    try:
        run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        run("pg_ctl", "-D", data, "-l", os.path.join(base, "log"), "-w", "-t", "60", "-o",
            f"-p {port} -c listen_addresses=127.0.0.1 -k {base} -c max_connections=200", "start")  # fmt: skip
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        raise AssertionError(f"PostgreSQL did not start: {exc.stderr.decode(errors='replace')}") from None
    try:
        yield Postgres(port)
    finally:
        try:
            run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'licences.db'}"
    return request.getfixturevalue("postgres").new_database()
