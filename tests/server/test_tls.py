"""TLS 1.3 only, client certificates required and checked against the client CA."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import pytest

from tensorseal.cli import main
from tensorseal.errors import ServerError, UsageError
from tensorseal.tls import client_context, make_dev_certs, server_context

from .conftest import client_args, start_server


def _exchange(url: str, ctx: ssl.SSLContext) -> bytes:
    """Handshake, send a request, return what comes back (raises on a refused handshake)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=parts.hostname) as tls:  # fmt: skip
        tls.sendall(b"GET /models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
        return data


def _ctx(certs, cert=None, key=None, *, max_version=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(certs.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def _refused(url: str, ctx: ssl.SSLContext) -> BaseException:
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)) as exc:
        data = _exchange(url, ctx)
        if not data:  # closed without an HTTP answer: refused too
            raise ConnectionResetError("closed")
        pytest.fail(f"the server answered: {data[:80]!r}")
    return exc.value


def test_good_client_certificate_is_served_over_tls13(server, certs):
    ctx = _ctx(certs, certs.client_cert, certs.client_key)
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=parts.hostname) as tls:  # fmt: skip
        assert tls.version() == "TLSv1.3"
        tls.sendall(b"GET /models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert tls.recv(12) == b"HTTP/1.1 200"


def test_client_without_certificate_fails_the_handshake(server, certs):
    exc = _refused(server.url, _ctx(certs))
    assert "CERTIFICATE_REQUIRED" in str(exc).upper() or isinstance(exc, (ConnectionResetError, BrokenPipeError))


def test_certificate_from_another_ca_fails_the_handshake(server, certs):
    exc = _refused(server.url, _ctx(certs, certs.other_cert, certs.other_key))
    assert "UNKNOWN_CA" in str(exc).upper() or isinstance(exc, (ConnectionResetError, BrokenPipeError))


def test_expired_certificate_fails_the_handshake(server, certs):
    exc = _refused(server.url, _ctx(certs, certs.expired_cert, certs.expired_key))
    assert "CERTIFICATE_EXPIRED" in str(exc).upper() or isinstance(exc, (ConnectionResetError, BrokenPipeError))


def test_tls12_fails_the_handshake(server, certs):
    """The server offers nothing below TLS 1.3: a TLS 1.2 client cannot even finish the
    handshake (the server hangs up, or alerts protocol_version)."""
    ctx = _ctx(certs, certs.client_cert, certs.client_key, max_version=ssl.TLSVersion.TLSv1_2)
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw, \
            pytest.raises(ssl.SSLError, match="(?i)protocol.version|unsupported.protocol|EOF"):  # fmt: skip
        ctx.wrap_socket(raw, server_hostname=parts.hostname)  # the handshake itself
    # the same client with TLS 1.3 allowed gets through
    ok = _ctx(certs, certs.client_cert, certs.client_key)
    assert _exchange(server.url, ok).startswith(b"HTTP/1.1 200")


def test_server_certificate_from_another_ca_is_refused_by_the_client(server, certs, tmp_path):
    assert main(["pull", server.url + "/models/acme-llm/1.0", "-o", str(tmp_path / "m.tseal"),
                 "--cert", str(certs.client_cert), "--key", str(certs.client_key),
                 "--ca", str(certs.other_cert)]) == 1  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_cli_pull_without_client_certificate_fails_cleanly(server, certs, tmp_path, capsys):
    assert main(["pull", server.url + "/models/acme-llm/1.0", "-o", str(tmp_path / "m.tseal"),
                 "--ca", str(certs.ca)]) == 1  # fmt: skip
    assert "tensorseal: error:" in capsys.readouterr().err
    assert not (tmp_path / "m.tseal").exists()


def test_contexts_are_tls13_only_and_mutual(certs):
    s = server_context(certs.server_cert, certs.server_key, certs.ca)
    c = client_context(certs.client_cert, certs.client_key, certs.ca)
    assert s.minimum_version == c.minimum_version == ssl.TLSVersion.TLSv1_3
    assert s.verify_mode == c.verify_mode == ssl.CERT_REQUIRED and c.check_hostname
    with pytest.raises(UsageError, match="go together"):
        client_context(certs.client_cert, None, certs.ca)
    with pytest.raises(UsageError, match="cannot be loaded"):
        server_context(certs.ca, certs.client_key, certs.ca)  # key does not match


def test_dev_certs_work_with_the_server(vendor, tmp_path, capsys):
    """`tensorseal dev-certs` makes certificates the server and the client accept, and
    refuses to overwrite them."""
    d = tmp_path / "dev"
    assert main(["dev-certs", str(d)]) == 0
    assert oct((d / "client-key.pem").stat().st_mode & 0o777) == "0o600"
    assert main(["dev-certs", str(d)]) == 2
    names = make_dev_certs(tmp_path / "dev2")
    from .conftest import Certs

    dev = Certs(d, d / "ca.pem", d / "server.pem", d / "server-key.pem", d / "client.pem", d / "client-key.pem",
                *(d / n for n in ("client.pem", "client-key.pem", "client.pem", "client-key.pem", "client.pem", "client-key.pem")))  # fmt: skip
    srv = start_server(dev, vendor, tmp_path, activation=False)
    try:
        assert main(["pull", srv.url + "/models/acme-llm/1.0", "-o", str(tmp_path / "m.tseal"), *client_args(dev)]) == 0
        # a client certificate of another dev CA is refused
        with pytest.raises(ServerError):
            from tensorseal.client import pull

            pull(srv.url + "/models/acme-llm/1.0", tmp_path / "n.tseal", cert=names.client_cert, key=names.client_key,
                 ca=dev.ca)  # fmt: skip
    finally:
        srv.stop()
    assert not (tmp_path / "n.tseal").exists()
