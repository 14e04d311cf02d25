"""The HTTPS server: sealed models (Range, ETag, signed manifests) and licence activation.

Built on aiohttp: one well-kept dependency that takes our own ``ssl.SSLContext`` as is
(TLS 1.3 minimum, ``CERT_REQUIRED``), gives each request the peer certificate through its
transport, and bounds request lines, headers and bodies in its parser. ASGI servers
(uvicorn, hypercorn) build the TLS context themselves from options and do not hand the
client certificate to the application, which activation needs for its audit records and
rate limits.

Routes (anything else is 404; every error is a JSON object ``{"error", "message", "hint"}``):

* ``GET /models``: the catalogue (name, version, size, ETag);
* ``GET|HEAD /models/NAME/VERSION``: the sealed file, with ``ETag``, ``Accept-Ranges``,
  one byte range (``Range``; ``If-Range``, ``If-Match``, ``If-None-Match``), streamed in
  small chunks read from the file opened at start;
* ``GET /models/NAME/VERSION/manifest``: the signed manifest;
* ``POST /activate``: ``{"licence_key": "TSEAL-LICENCE-KEY-1...", "device": "tsealdev1..."}``
  -> ``{"licence": base64 blob, ...}``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import audit
from ..device import DeviceFingerprint
from ..errors import (
    InvalidKeyError,
    LicenceError,
    LicenceExpiredError,
    LicenceRevokedError,
    RateLimitedError,
    SeatLimitError,
    ServerError,
    TensorSealError,
    UsageError,
    WrongLicenceKeyError,
)
from ..recipients.licence import LicenceKey, issue_licence
from ..recipients.master import MasterKey
from ..signing import SigningKey
from ..tls import peer_identity, server_context
from .catalogue import NAME_PATTERN, Catalogue, Model
from .licences import LicenceStore

__all__ = ["FailureLimiter", "ServerConfig", "make_app", "parse_listen", "run"]

_log = logging.getLogger("tensorseal.server")
CHUNK = 128 << 10  # bytes per read/write when streaming a file
MAX_BODY = 16 << 10  # request bodies (activation requests are ~200 bytes)
MAX_FIELD = 8190  # one request line or header field
MAX_HEADERS = 64
BLAKE3_HEADER = "X-Tensorseal-Blake3"
_STATUS: list[tuple[type[BaseException], int]] = [
    (RateLimitedError, 429),
    (SeatLimitError, 409),
    (LicenceRevokedError, 403),
    (LicenceExpiredError, 403),
    (WrongLicenceKeyError, 403),
    (InvalidKeyError, 400),
    (UsageError, 400),
    (LicenceError, 403),
]


@dataclass
class ServerConfig:
    """Everything ``tensorseal serve`` configures. ``masters`` and ``sign_keys`` enable
    activation (both needed); ``sign_keys`` also sign the manifests."""

    models: str
    cert: str
    key: str
    client_ca: str
    db: str | None = None
    listen: str = "127.0.0.1:8443"
    sign_keys: Sequence[SigningKey] = ()
    masters: Sequence[MasterKey] = ()
    licence_days: int = 30  # a blob expires after this many days, or with its licence
    max_failures: int = 10  # failed activations per client certificate...
    failure_window: float = 600.0  # ...within this many seconds, then 429
    db_threads: int = 8
    threads: int | None = None


class FailureLimiter:
    """Failed attempts per key (client certificate) in a sliding window; bounded memory
    (the least recently seen keys are forgotten first). Raises nothing."""

    def __init__(self, max_failures: int, window: float, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.max_failures, self.window, self.max_keys, self._clock = max_failures, window, max_keys, clock
        self._seen: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None if it may now."""
        times = self._seen.get(key)
        if times is None:
            return None
        now = self._clock()
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.max_failures:
            return None
        return max(1.0, times[0] + self.window - now)

    def failed(self, key: str) -> None:
        times = self._seen.pop(key, None) or collections.deque(maxlen=max(self.max_failures, 1))
        times.append(self._clock())
        self._seen[key] = times
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0: any free port). Raises UsageError."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", text.strip())
    if m is None:
        raise UsageError(f"--listen {text!r} is not HOST:PORT", hint="e.g. --listen 127.0.0.1:8443")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if int(port) > 65535:
        raise UsageError(f"port {port} is out of range")
    return host, int(port)


@dataclass
class _State:
    config: ServerConfig
    catalogue: Catalogue
    store: LicenceStore | None
    masters: dict[tuple[str, str], MasterKey]
    limiter: FailureLimiter
    files: ThreadPoolExecutor
    db: ThreadPoolExecutor
    started: float = field(default_factory=time.time)


def _error_body(exc: BaseException, status: int) -> bytes:
    if isinstance(exc, TensorSealError):
        doc = {"error": type(exc).__name__, "message": str(exc), "hint": exc.hint}
    else:
        doc = {"error": "ServerError", "message": str(exc), "hint": None}
    return json.dumps(doc).encode()


def _json(web: Any, doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    return web.Response(body=json.dumps(doc).encode(), status=status, content_type="application/json", headers=headers)


def _client(request: Any) -> tuple[str | None, str | None]:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return peer_identity(der)


def _parse_range(value: str, size: int) -> tuple[int, int] | None | str:
    """One ``bytes=`` range of a file of ``size`` bytes as (start, end exclusive); None to
    ignore the header (malformed, several ranges); ``"unsatisfiable"``."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if m is None or (not m.group(1) and not m.group(2)) or len(value) > 100:
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return max(0, size - n), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or ("W/" + etag) in tags


def make_app(state: _State) -> Any:
    """The aiohttp application for ``state``. Raises nothing."""
    from aiohttp import web

    name = NAME_PATTERN

    @web.middleware
    async def errors(request: Any, handler: Any) -> Any:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            reason = {404: "not found", 405: "method not allowed", 413: "request body too large"}.get(exc.status, exc.reason)
            err = ServerError(f"{request.method} {request.path[:200]}: {reason}")
            return web.Response(body=_error_body(err, exc.status), status=exc.status, content_type="application/json",
                                headers={k: v for k, v in exc.headers.items() if k in ("Allow",)})  # fmt: skip
        except TensorSealError as exc:
            status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
            headers = {"Retry-After": str(int(getattr(exc, "retry_after", 60)))} if status == 429 else None
            return web.Response(body=_error_body(exc, status), status=status, content_type="application/json",
                                headers=headers)  # fmt: skip
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:  # noqa: BLE001 - a database or disk failure: logged here, never shown to the client
            _log.exception("%s %s failed", request.method, request.path[:200])
            err = ServerError("internal server error", hint="see the server's log")
            return web.Response(body=_error_body(err, 500), status=500, content_type="application/json")

    async def models(request: Any) -> Any:
        return _json(web, {"models": [{"name": m.name, "version": m.version, "size": m.size, "etag": m.etag}
                                      for m in state.catalogue]})  # fmt: skip

    def lookup(request: Any) -> Model:
        model = state.catalogue.get(request.match_info["name"], request.match_info["version"])
        if model is None:
            raise web.HTTPNotFound()
        if not model.unchanged():
            raise ServerError(f"model {model.name} {model.version} changed on disk since the server started",
                              hint="restart the server to serve the new file")  # fmt: skip
        return model

    async def manifest(request: Any) -> Any:
        model = lookup(request)
        return web.Response(body=model.manifest, content_type="application/json",
                            headers={"Cache-Control": "no-cache"})  # fmt: skip

    async def sealed(request: Any) -> Any:
        model = lookup(request)
        h = request.headers
        base = {"ETag": model.etag, "Accept-Ranges": "bytes", BLAKE3_HEADER: model.blake3, "Cache-Control": "no-cache"}
        if "If-Match" in h and not _etag_matches(h["If-Match"], model.etag):
            return web.Response(status=412, headers=base)
        if "If-None-Match" in h and _etag_matches(h["If-None-Match"], model.etag):
            return web.Response(status=304, headers=base)
        start, end, status = 0, model.size, 200
        if "Range" in h and ("If-Range" not in h or h["If-Range"].strip() == model.etag):
            wanted = _parse_range(h["Range"], model.size)
            if wanted == "unsatisfiable":
                return web.Response(status=416, headers={**base, "Content-Range": f"bytes */{model.size}"})
            if isinstance(wanted, tuple):
                start, end, status = wanted[0], wanted[1], 206
        headers = dict(base)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{model.size}"
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_type = "application/octet-stream"
        resp.content_length = end - start
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        loop = asyncio.get_running_loop()
        pos = start
        while pos < end:
            data = await loop.run_in_executor(state.files, os.pread, model.fd, min(CHUNK, end - pos), pos)
            if not data:  # the file shrank under us: cut the response short, the client notices
                raise ConnectionResetError("model file shrank")
            await resp.write(data)
            pos += len(data)
        await resp.write_eof()
        return resp

    async def activate(request: Any) -> Any:
        subject, fingerprint = _client(request)
        who = {"subject": subject, "sha256": fingerprint}
        client_key = fingerprint or (request.remote or "?")
        event: dict[str, Any] = {"event": "activate", "client": who, "remote": request.remote}
        wait = state.limiter.retry_after(client_key)
        if wait is not None:
            exc = RateLimitedError(f"too many failed activations from this client certificate; retry in {int(wait)} s")
            exc.retry_after = wait  # type: ignore[attr-defined]
            audit.record({**event, "outcome": "rate-limited", "error": type(exc).__name__, "detail": str(exc)})
            raise exc
        if state.store is None or not state.masters or not state.config.sign_keys:
            raise ServerError("this server does not activate licences",
                              hint="start it with --master MCK_FILE and --sign-key VENDOR_KEY")  # fmt: skip
        body = await request.read()  # bounded by client_max_size: 413 beyond
        try:
            try:
                doc = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise UsageError("the activation request is not JSON") from None
            if not isinstance(doc, dict) or set(doc) != {"licence_key", "device"} \
                    or not all(isinstance(v, str) and len(v) <= 200 for v in doc.values()):  # fmt: skip
                raise UsageError('the activation request must be {"licence_key": "...", "device": "tsealdev1..."}')
            key = LicenceKey.parse(doc["licence_key"])
            device = DeviceFingerprint.parse(doc["device"])
            event["device"] = str(device)

            def check_model(name: str, version: str) -> None:
                if (name, version) not in state.masters:
                    raise ServerError(f"this server holds no master key for {name} {version}",
                                      hint="start the server with that model version's --master file")  # fmt: skip

            loop = asyncio.get_running_loop()
            store = state.store
            grant = await loop.run_in_executor(
                state.db, lambda: store.activate(key, device, client=subject, check_model=check_model)
            )
        except TensorSealError as exc:
            if isinstance(exc, (WrongLicenceKeyError, InvalidKeyError, UsageError)):  # guessing, or garbage
                state.limiter.failed(client_key)
            audit.record({**event, "outcome": "refused" if isinstance(exc, (LicenceError, UsageError)) else "error",
                          "error": type(exc).__name__, "detail": str(exc).splitlines()[0][:300]})  # fmt: skip
            raise
        lic = grant.licence
        model = {"name": lic.model_name, "version": lic.model_version, "file": None}
        event.update(licence=lic.licence_id, model=model, seat=grant.seat, seats=lic.seats, reactivation=grant.reactivation)
        audit.record({**event, "outcome": "ok", "error": None, "detail": None})
        master = state.masters[(lic.model_name, lic.model_version)]
        now = datetime.now(timezone.utc)
        expires = min(lic.expires, now + timedelta(days=state.config.licence_days))
        issued = issue_licence(master, state.config.sign_keys[0], licensee=lic.licensee, device=device,
                               expires=expires, licence_key=key, now=now)  # fmt: skip
        blob_id = issued.licence.licence_id.hex()
        # no licence blob (key material) leaves without its record: required audit logs fail closed here
        audit.record({
            "event": "key-release", "outcome": "ok", "error": None, "detail": None, "licence": lic.licence_id,
            "model": model, "device": str(device), "seat": grant.seat, "client": who, "remote": request.remote,
            "recipient": {"kind": "licence", "key_id": f"{master.key_id.hex()}/{blob_id}"},
            "expires": issued.licence.expires.isoformat(),
        })  # fmt: skip
        return _json(web, {
            "licence": base64.b64encode(issued.blob).decode("ascii"), "licence_id": lic.licence_id,
            "blob_id": blob_id, "model": {"name": lic.model_name, "version": lic.model_version},
            "seat": grant.seat, "seats": lic.seats, "reactivation": grant.reactivation,
            "expires": issued.licence.expires.isoformat(),
        })  # fmt: skip

    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app.router.add_get("/models", models)
    app.router.add_get(f"/models/{{name:{name}}}/{{version:{name}}}", sealed)  # HEAD too
    app.router.add_get(f"/models/{{name:{name}}}/{{version:{name}}}/manifest", manifest)
    app.router.add_post("/activate", activate)
    return app


class _QuietBadRequests(logging.Filter):
    """aiohttp logs a traceback for every malformed request: keep one INFO line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args, record.exc_info = "refused a malformed request: %s", (exc.message[:200],), None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _build_state(config: ServerConfig) -> _State:
    catalogue = Catalogue(config.models, sign_keys=config.sign_keys, threads=config.threads)
    try:
        masters: dict[tuple[str, str], MasterKey] = {}
        for m in config.masters:
            if (m.name, m.version) in masters:
                raise UsageError(f"two master keys for {m.name} {m.version}")
            masters[(m.name, m.version)] = m
        if masters and not config.sign_keys:
            raise UsageError("--master needs --sign-key: licences are signed by the vendor key")
        if config.licence_days < 1:
            raise UsageError("--licence-days must be at least 1")
        store = LicenceStore(config.db, pool_size=config.db_threads) if masters else None
    except BaseException:
        catalogue.close()
        raise
    return _State(
        config, catalogue, store, masters, FailureLimiter(config.max_failures, config.failure_window),
        ThreadPoolExecutor(max_workers=8, thread_name_prefix="tensorseal-file"),
        ThreadPoolExecutor(max_workers=config.db_threads, thread_name_prefix="tensorseal-db"),
    )  # fmt: skip


def run(config: ServerConfig, *, ready: Callable[[str, _State], None] | None = None,
        stop: asyncio.Event | None = None) -> None:  # fmt: skip
    """Serve until SIGINT/SIGTERM (or ``stop`` is set). ``ready(url, state)`` is called once
    the socket listens. Raises UsageError (bad options, no models), OSError (address in
    use, unreadable files), ImportError (``pip install 'tensorseal[server]'``)."""
    try:
        from aiohttp import web
    except ImportError:
        raise UsageError("the server needs aiohttp and SQLAlchemy", hint="pip install 'tensorseal[server]'") from None
    host, port = parse_listen(config.listen)
    ctx = server_context(config.cert, config.key, config.client_ca)
    state = _build_state(config)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
    except OSError:
        sock.close()
        _close(state)
        raise

    quiet = _QuietBadRequests()
    logging.getLogger("aiohttp.server").addFilter(quiet)

    async def main() -> None:
        app = make_app(state)
        runner = web.AppRunner(app, access_log=None, max_line_size=MAX_FIELD, max_field_size=MAX_FIELD,
                               max_headers=MAX_HEADERS, keepalive_timeout=75)  # fmt: skip
        await runner.setup()
        site = web.SockSite(runner, sock, ssl_context=ctx, backlog=512, shutdown_timeout=5)
        await site.start()
        done = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, done.set)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                pass
        bound = sock.getsockname()
        url = f"https://[{bound[0]}]:{bound[1]}" if family == socket.AF_INET6 else f"https://{bound[0]}:{bound[1]}"
        if ready is not None:
            ready(url, state)
        try:
            await done.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        logging.getLogger("aiohttp.server").removeFilter(quiet)
        sock.close()
        _close(state)


def _close(state: _State) -> None:
    state.files.shutdown(wait=False, cancel_futures=True)
    state.db.shutdown(wait=True, cancel_futures=True)
    state.catalogue.close()
    if state.store is not None:
        state.store.close()


def announce(url: str, state: _State) -> None:
    """Print what is served (stderr), for ``tensorseal serve``. Raises nothing."""
    out = sys.stderr
    for why in state.catalogue.skipped:
        print(f"tensorseal: skipped {why}", file=out)
    for m in state.catalogue:
        print(f"tensorseal: serving {m.name} {m.version} ({m.size} bytes, {os.path.relpath(m.path, state.catalogue.directory)})", file=out)
    act = "on (" + ", ".join(f"{n} {v}" for n, v in state.masters) + ")" if state.store is not None else "off"
    signed = f"signed by {len(state.config.sign_keys)} key(s)" if state.config.sign_keys else "unsigned"
    print(f"tensorseal: manifests {signed}; activation {act}", file=out)
    print(f"tensorseal: listening on {url} (TLS 1.3 only, client certificates required)", file=out, flush=True)
