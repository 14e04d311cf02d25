"""safe_open over a URL: the header with one range request, then only the tensors asked
for (fsspec over real HTTP on loopback, and s3:// against moto's S3 server)."""

from __future__ import annotations

import http.server
import os
import re
import threading

import numpy as np
import pytest

import tensorseal
import tensorseal.numpy as tsnp
from tensorseal.errors import NoIdentityMatchError, SegmentAuthenticationError, TruncatedError
from tensorseal.recipients import SymmetricKey

pytest.importorskip("fsspec")
pytest.importorskip("aiohttp", reason="fsspec's http:// needs aiohttp")

KEY = SymmetricKey.generate()
MIB = 1 << 20


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file with HEAD and single-range GET, counting requests and bytes."""

    data: bytes = b""
    log: list[tuple[str, int]] = []

    def _send_headers(self, status: int, length: int, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802
        self._send_headers(200, len(self.data), {})

    def do_GET(self) -> None:  # noqa: N802
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if m is None:
            body, status, extra = self.data, 200, {}
        else:
            lo = int(m.group(1))
            hi = min(int(m.group(2)) if m.group(2) else len(self.data) - 1, len(self.data) - 1)
            body, status = self.data[lo : hi + 1], 206
            extra = {"Content-Range": f"bytes {lo}-{hi}/{len(self.data)}"}
        self.log.append(("GET", len(body)))
        self._send_headers(status, len(body), extra)
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path):
    """A 24 MiB sealed model served over HTTP: 3 big tensors and a small one."""
    tensors = {f"layer.{i}.w": np.full((2 * MIB,), i, dtype=np.float32) for i in range(3)}
    tensors["norm"] = np.arange(10, dtype=np.float32)
    path = tmp_path / "m.tseal"
    tsnp.save_file(tensors, path, [KEY], name="m")
    handler = type("H", (_RangeHandler,), {"data": path.read_bytes(), "log": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/m.tseal", tensors, handler, path
    finally:
        server.shutdown()
        server.server_close()


def test_safe_open_over_http_fetches_only_what_is_asked(served):
    url, tensors, handler, path = served
    with tensorseal.safe_open(url, "np", [KEY], expect_name="m") as f:
        opened = sum(n for _, n in handler.log)
        assert opened <= MIB + 4096 and len(handler.log) == 1  # prefix, header slots, index, tags: one request
        assert sorted(f.keys()) == sorted(tensors)
        np.testing.assert_array_equal(f.get_tensor("norm"), tensors["norm"])
        np.testing.assert_array_equal(f.get_tensor("layer.1.w"), tensors["layer.1.w"])
        rows = f.get_slice("layer.2.w")[: MIB // 8]  # 512 KiB of one tensor
        np.testing.assert_array_equal(rows, tensors["layer.2.w"][: MIB // 8])
    total = sum(n for _, n in handler.log)
    one_tensor = tensors["layer.1.w"].nbytes
    assert one_tensor < total < one_tensor + 4 * MIB  # not the 24 MiB file
    assert total < os.path.getsize(path) / 2


def test_remote_tampering_and_wrong_key_fail(served):
    url, tensors, handler, _ = served
    with pytest.raises(NoIdentityMatchError):
        tensorseal.safe_open(url, "np", [SymmetricKey.generate()])
    raw = bytearray(handler.data)
    raw[-5] ^= 1  # the last tensor's last segment
    handler.data = bytes(raw)
    with tensorseal.safe_open(url, "np", [KEY]) as f:
        np.testing.assert_array_equal(f.get_tensor("layer.0.w"), tensors["layer.0.w"])  # untouched tensor fine
        entries = f._sealed.index.entries  # noqa: SLF001
        last = max(entries, key=lambda e: e.start).name
        with pytest.raises(SegmentAuthenticationError):
            f.get_tensor(last)


def test_safe_open_over_s3_with_moto(tmp_path, aws_env):
    pytest.importorskip("s3fs")
    boto3 = pytest.importorskip("boto3")
    s3 = boto3.session.Session().client("s3")
    s3.create_bucket(Bucket="models")
    tensors = {"a": np.arange(300_000, dtype=np.float32), "b": np.ones(7, np.float32)}
    path = tmp_path / "m.tseal"
    tsnp.save_file(tensors, path, [KEY])
    s3.upload_file(str(path), "models", "m.tseal")
    opts = {"client_kwargs": {"endpoint_url": aws_env}, "skip_instance_cache": True}
    with tensorseal.safe_open("s3://models/m.tseal", "np", [KEY], storage_options=opts) as f:
        np.testing.assert_array_equal(f.get_tensor("b"), tensors["b"])
        np.testing.assert_array_equal(f.get_tensor("a"), tensors["a"])
    with pytest.raises(FileNotFoundError):
        tensorseal.safe_open("s3://models/missing.tseal", "np", [KEY], storage_options=opts)


def test_truncated_remote_file_is_refused(served):
    url, _, handler, _ = served
    handler.data = handler.data[: len(handler.data) - 4096]
    with pytest.raises(TruncatedError):
        tensorseal.safe_open(url, "np", [KEY])
    handler.data = handler.data[:10]  # shorter than the prefix
    with pytest.raises(TruncatedError):
        tensorseal.safe_open(url, "np", [KEY])
