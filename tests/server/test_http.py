"""What the server answers: models by name and version only, Range, ETags, signed
manifests, and refusals of traversal and oversized requests."""

from __future__ import annotations

import json
import socket
import ssl
from urllib.parse import urlsplit

import httpx
import pytest
from blake3 import blake3

from tensorseal.errors import UsageError
from tensorseal.manifest import CONTEXT, manifest_digest, parse_manifest
from tensorseal.reader import SealedFile
from tensorseal.server.app import FailureLimiter, _parse_range, parse_listen
from tensorseal.server.catalogue import Catalogue, valid_name
from tensorseal.tls import client_context

MODEL = "/models/acme-llm/1.0"


@pytest.fixture(scope="module")
def http(server, certs):
    with httpx.Client(base_url=server.url, verify=client_context(certs.client_cert, certs.client_key, certs.ca)) as c:
        yield c


def test_catalogue_lists_the_models(http, vendor):
    doc = http.get("/models").json()
    assert doc == {"models": [{"name": "acme-llm", "version": "1.0", "size": vendor.model_file.stat().st_size,
                               "etag": doc["models"][0]["etag"]}]}  # fmt: skip


def test_whole_file_with_etag_and_digest(http, vendor):
    data = vendor.model_file.read_bytes()
    r = http.get(MODEL)
    assert r.status_code == 200 and r.content == data
    whole = blake3(data).hexdigest()
    assert r.headers["ETag"] == f'"{whole[:32]}"' and r.headers["X-Tensorseal-Blake3"] == whole
    assert r.headers["Accept-Ranges"] == "bytes" and int(r.headers["Content-Length"]) == len(data)
    head = http.head(MODEL)
    assert head.status_code == 200 and head.content == b"" and head.headers["Content-Length"] == str(len(data))


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [("bytes=0-99", 0, 100), ("bytes=1000-", 1000, None), ("bytes=-500", -500, None), ("bytes=10-10", 10, 11),
     ("bytes=100-99999999999", 100, None)],
)  # fmt: skip
def test_single_ranges(http, vendor, spec, start, end):
    data = vendor.model_file.read_bytes()
    r = http.get(MODEL, headers={"Range": spec})
    want = data[start:end]
    assert r.status_code == 206 and r.content == want
    first = start if start >= 0 else len(data) + start
    assert r.headers["Content-Range"] == f"bytes {first}-{first + len(want) - 1}/{len(data)}"


def test_unsatisfiable_and_ignored_ranges(http, vendor):
    size = vendor.model_file.stat().st_size
    r = http.get(MODEL, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{size}"
    for ignored in ("bytes=0-1,5-6", "items=0-5", "bytes=9-3"):
        assert http.get(MODEL, headers={"Range": ignored}).status_code == 200


def test_conditional_requests(http):
    etag = http.head(MODEL).headers["ETag"]
    assert http.get(MODEL, headers={"If-None-Match": etag}).status_code == 304
    assert http.get(MODEL, headers={"If-Match": '"other"'}).status_code == 412
    assert http.get(MODEL, headers={"If-Match": etag, "Range": "bytes=0-9"}).status_code == 206
    # If-Range with a stale ETag: the whole (new) file, not a splice
    assert http.get(MODEL, headers={"If-Range": '"stale"', "Range": "bytes=0-9"}).status_code == 200
    assert http.get(MODEL, headers={"If-Range": etag, "Range": "bytes=0-9"}).status_code == 206


def test_manifest_is_signed_and_matches_the_file(http, vendor):
    raw = http.get(MODEL + "/manifest").content
    body, sigs, entries, identity = parse_manifest(raw)
    assert (identity.name, identity.version) == ("acme-llm", "1.0")
    (entry,) = entries
    assert entry.size == vendor.model_file.stat().st_size and entry.sealed
    with SealedFile(vendor.model_file) as f:
        assert entry.digest == f.digest()
    assert any(vendor.key.public_key().verifies(s, manifest_digest(body), CONTEXT) for s in sigs)


@pytest.mark.parametrize(
    "path",
    ["/models/../../etc/passwd", "/models/%2e%2e/%2e%2e/etc/passwd", "/models/acme-llm/..%2f..%2fetc%2fpasswd",
     "/models/acme-llm/1.0/../../../etc/passwd", "/models/acme-llm/%2e%2e", "/models/..%2F..%2Fetc/passwd",
     "/models/acme-llm-1.0.tseal", "/models/acme-llm/1.0/..", "/models/acme-llm/1.0%00", "/models/README.txt/x",
     "/models/acme-llm/2.0", "/models//1.0", "/etc/passwd", "/models/acme-llm/1.0/manifest/../../../x"],
)  # fmt: skip
def test_paths_are_names_never_file_paths(server, certs, path):
    """Raw request lines (no client-side normalisation): every such path is 404 (or 400),
    never a file."""
    status, body = _raw(server.url, certs, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert status in (400, 404), (path, status)
    assert b"root:" not in body and b"TSEAL" not in body


def _raw(url: str, certs, request: bytes) -> tuple[int, bytes]:
    parts = urlsplit(url)
    ctx = client_context(certs.client_cert, certs.client_key, certs.ca)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=parts.hostname) as tls:  # fmt: skip
        try:
            tls.sendall(request)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        data = b""
        try:
            while chunk := tls.recv(65536):
                data += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
    assert data.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), data[:100]
    return int(data[9:12]), data


def test_oversized_requests_are_refused(http, server, certs):
    r = http.post("/activate", content=b"{" + b" " * (1 << 20) + b"}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "ServerError"
    # a header field over the parser's limit
    status, _ = _raw(server.url, certs, b"GET /models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert status in (400, 431)
    # a request line over the limit
    status, _ = _raw(server.url, certs, b"GET /models/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status in (400, 414)
    # too many header fields
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(200))
    status, _ = _raw(server.url, certs, b"GET /models HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert status in (400, 431)


def test_wrong_methods_and_errors_are_json(http):
    r = http.put(MODEL, content=b"x")
    assert r.status_code == 405 and json.loads(r.content)["error"] == "ServerError"
    r = http.get("/models/acme-llm/9.9")
    assert r.status_code == 404 and r.json()["message"].endswith("not found")


def test_name_pattern():
    for good in ("acme-llm", "1.0", "v2.1+cpu", "a", "Llama_3"):
        assert valid_name(good)
    for bad in ("", ".", "..", "../x", "a/b", "a..b", ".hidden", "-x", "a b", "a%2f", "x" * 129, "é"):
        assert not valid_name(bad)


def test_range_parser():
    assert _parse_range("bytes=0-0", 10) == (0, 1)
    assert _parse_range("bytes=-3", 10) == (7, 10)
    assert _parse_range("bytes=-30", 10) == (0, 10)
    assert _parse_range("bytes=-0", 10) == "unsatisfiable"
    assert _parse_range("bytes=10-", 10) == "unsatisfiable"
    assert _parse_range("bytes=5-2", 10) is None and _parse_range("bytes=-", 10) is None


def test_listen_parser():
    assert parse_listen("127.0.0.1:8443") == ("127.0.0.1", 8443)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8443", "host:", "host:99999", "a:b:c"):
        with pytest.raises(UsageError):
            parse_listen(bad)


def test_failure_limiter_window():
    now = [0.0]
    lim = FailureLimiter(3, 60, max_keys=2, clock=lambda: now[0])
    for _ in range(3):
        assert lim.retry_after("a") is None
        lim.failed("a")
    assert lim.retry_after("a") == 60
    now[0] = 61
    assert lim.retry_after("a") is None
    lim.failed("b"), lim.failed("c")  # bounded: the oldest key is forgotten
    assert "a" not in lim._seen and len(lim._seen) == 2


def test_catalogue_refuses_duplicates_and_skips_other_files(vendor, tmp_path):
    import shutil

    (tmp_path / "a").mkdir()
    shutil.copy(vendor.model_file, tmp_path / "a" / "one.tseal")
    (tmp_path / "plain.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (tmp_path / "link.tseal").symlink_to(tmp_path / "a" / "one.tseal")
    cat = Catalogue(tmp_path)
    try:
        assert [(m.name, m.version) for m in cat] == [("acme-llm", "1.0")]
        assert any("plain.safetensors" in s for s in cat.skipped)
    finally:
        cat.close()
    shutil.copy(vendor.model_file, tmp_path / "two.tseal")
    with pytest.raises(UsageError, match="are both model acme-llm version 1.0"):
        Catalogue(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no sealed model"):
        Catalogue(tmp_path / "empty")
