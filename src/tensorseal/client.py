"""The client of ``tensorseal serve``: verified, resumable downloads and licence activation.

Every connection is TLS 1.3 with a client certificate, and the server is checked against
one CA only (:func:`tensorseal.tls.client_context`). Needs httpx (``pip install
'tensorseal[https]'``).

:func:`pull` downloads ``https://HOST/models/NAME/VERSION`` like :func:`tensorseal.s3.pull`
does an S3 object: the bytes go to ``FILE.partial`` (with a sidecar ``FILE.partial.json``
for resuming), and ``FILE`` appears, by rename, only after every check passed:

1. the server's manifest (``.../manifest``) names this model and version and lists one
   sealed file with its size and file digest;
2. the download (``If-Range``-pinned to the ETag when resuming) has that size, and the
   whole-file BLAKE3 the server announced (``X-Tensorseal-Blake3``, a transfer check);
3. the file parses as a sealed file and its file digest is the manifest's;
4. with ``signers``: a trusted publisher signed it: either the manifest carries a valid
   signature by a trusted key (it covers the file digest, so the file), or the file's own
   signature block does;
5. with ``expect_*`` / ``min_version``: the model identity; with ``identities``: every tag.

:func:`activate` posts a licence key and this device's fingerprint to ``/activate`` and
checks the licence blob it gets back before returning it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import errors as _errors
from ._download import PARTIAL_SUFFIX, SIDECAR_SUFFIX, blake3_of_fd, partial_download, sync
from .checks import Checks, SignersArg
from .device import DeviceFingerprint, this_device
from .errors import (
    AuthenticationError,
    FormatError,
    ModelMismatchError,
    ServerError,
    SignatureError,
    UsageError,
)
from .format.header import Header
from .manifest import CONTEXT as MANIFEST_CONTEXT
from .manifest import manifest_digest, parse_manifest
from .reader import SealedFile
from .recipients.licence import MAX_LICENCE_SIZE, Licence, LicenceIdentity, LicenceKey
from .signing import VerifyingKey, to_verifying_keys
from .tls import client_context

__all__ = ["ActivationResult", "HttpsPullResult", "ModelUrl", "activate", "parse_model_url", "pull"]

Progress = Callable[[int], None]
MAX_MANIFEST = 1 << 20
MAX_ERROR_BODY = 16 << 10
SYNC_EVERY = 8 << 20  # bytes between fsync + sidecar updates while downloading
_SIDECAR_VERSION = 1
_NAME = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"
_WIRE_ERRORS = {  # error names a server may send back, re-raised as such
    c.__name__: c for c in (
        _errors.WrongLicenceKeyError, _errors.LicenceRevokedError, _errors.LicenceExpiredError,
        _errors.SeatLimitError, _errors.RateLimitedError, _errors.LicenceError, _errors.InvalidKeyError,
        _errors.UsageError, _errors.ServerError,
    )
}  # fmt: skip


@dataclass(frozen=True)
class ModelUrl:
    """``https://HOST[:PORT]/models/NAME/VERSION``."""

    base: str  # https://HOST[:PORT]
    name: str
    version: str

    @property
    def url(self) -> str:
        return f"{self.base}/models/{self.name}/{self.version}"

    def __str__(self) -> str:
        return self.url


def _base(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme == "http":
        raise UsageError(f"{url}: plain http is refused", hint="use https://")
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
        raise UsageError(f"{url!r} is not an https://HOST[:PORT]/... URL")
    try:
        _ = parts.port
    except ValueError:
        raise UsageError(f"{url!r} has an invalid port") from None
    return f"https://{parts.netloc}", parts.path


def parse_model_url(url: str) -> ModelUrl:
    """Parse ``https://HOST[:PORT]/models/NAME/VERSION``. Raises UsageError."""
    base, path = _base(url)
    m = re.fullmatch(rf"/models/({_NAME})/({_NAME})/?", path)
    if m is None or ".." in m.group(1) or ".." in m.group(2):
        raise UsageError(f"{url!r} does not name a model", hint="write https://HOST/models/NAME/VERSION")
    return ModelUrl(base, m.group(1), m.group(2))


# ---- HTTP plumbing ----------------------------------------------------------------------
def _http(ctx: ssl.SSLContext, timeout: float) -> Any:
    try:
        import httpx
    except ImportError:
        raise UsageError("https:// needs httpx", hint="pip install 'tensorseal[https]'") from None
    return httpx.Client(verify=ctx, timeout=httpx.Timeout(timeout), trust_env=False, follow_redirects=False)


@contextlib.contextmanager
def _transport_errors(what: str) -> Any:
    import httpx

    try:
        yield
    except httpx.ConnectError as exc:
        detail = str(exc) or type(exc).__name__
        if "CERTIFICATE_VERIFY_FAILED" in detail or "SSL" in detail or "TLS" in detail:
            raise ServerError(f"{what}: TLS handshake failed: {detail}",
                              hint="check --ca (the server's CA) and --cert/--key (a client certificate the server trusts)") from None  # fmt: skip
        raise ServerError(f"{what}: cannot connect: {detail}") from None
    except (httpx.TransportError, ssl.SSLError) as exc:  # reset, timeout, TLS alert after the handshake
        raise ServerError(f"{what}: {type(exc).__name__}: {exc}",
                          hint="if the server refused the client certificate, check --cert/--key; "
                               "an interrupted download resumes when run again") from None  # fmt: skip


def _raise_for(resp: Any, what: str) -> None:
    """Turn an error response into the server's error type (JSON body) or ServerError."""
    if resp.status_code < 400:
        return
    body = resp.read()[:MAX_ERROR_BODY] if hasattr(resp, "read") else b""
    try:
        doc = json.loads(body)
        cls = _WIRE_ERRORS.get(doc.get("error"), ServerError)
        message, hint = str(doc.get("message") or resp.reason_phrase)[:500], doc.get("hint")
    except (ValueError, AttributeError):
        cls, message, hint = ServerError, resp.reason_phrase, None
    exc = cls(f"{what}: {message} (HTTP {resp.status_code})", hint=hint if isinstance(hint, str) else None)
    if resp.status_code == 404 and cls is ServerError:
        exc.hint = "check the model name and version (GET /models lists them)"
    raise exc


# ---- pull -------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpsPullResult:
    """What :func:`pull` wrote and checked."""

    url: ModelUrl
    path: str
    size: int
    etag: str
    resumed_bytes: int
    digest_checked: bool  # the whole-file BLAKE3 the server announced
    signature_checked: bool
    signed_by: str | None  # "manifest" or "file"
    tags_checked: bool
    header: Header


@dataclass
class _Sidecar:
    url: str
    etag: str
    size: int
    digest: str  # the manifest's file digest (b64), so a new model restarts
    done: int  # bytes written and synced from the start

    @classmethod
    def load(cls, path: str) -> _Sidecar | None:
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
            if obj.get("version") != _SIDECAR_VERSION:
                return None
            state = cls(str(obj["url"]), str(obj["etag"]), int(obj["size"]), str(obj["digest"]), int(obj["done"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return state if 0 <= state.done <= state.size else None

    def save(self, path: str) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"version": _SIDECAR_VERSION, "url": self.url, "etag": self.etag, "size": self.size,
                       "digest": self.digest, "done": self.done}, f)  # fmt: skip
        os.replace(tmp, path)


def _manifest(http: Any, target: ModelUrl) -> tuple[dict, list[Any], Any, Any]:
    what = f"manifest of {target}"
    with _transport_errors(what), http.stream("GET", target.url + "/manifest") as resp:
        _raise_for(resp, what)
        data = bytearray()
        for chunk in resp.iter_bytes():
            data += chunk
            if len(data) > MAX_MANIFEST:
                raise ServerError(f"{what} is over {MAX_MANIFEST} bytes")
    try:
        body, sigs, entries, identity = parse_manifest(bytes(data))
    except FormatError as exc:
        raise exc.at(what) from None
    if (identity.name, identity.version) != (target.name, target.version):
        raise ModelMismatchError(f"{what} is for {identity.name} {identity.version}")
    if len(entries) != 1 or not entries[0].sealed:
        raise FormatError(f"{what} must list exactly one sealed file")
    return body, sigs, entries[0], identity


def pull(
    url: str | ModelUrl,
    dst: str | os.PathLike[str],
    *,
    cert: str | os.PathLike[str] | None,
    key: str | os.PathLike[str] | None,
    ca: str | os.PathLike[str],
    identities: Any = None,
    signers: SignersArg | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    resume: bool = True,
    timeout: float = 60.0,
    **expect: Any,
) -> HttpsPullResult:
    """Download the model at ``url`` (``https://HOST/models/NAME/VERSION``) to ``dst``,
    checked as the module doc says; ``dst`` is replaced only by a file that passed. A
    failed check deletes ``dst.partial``; an interrupted download keeps it and its sidecar,
    and the next pull resumes from where it stopped if the server still has the same file
    (same ETag), else starts over. ``expect`` takes ``require_signature``, ``expect_name``,
    ``expect_version``, ``min_version``, ``expect_file``.

    Raises ServerError (unreachable, TLS handshake refused, HTTP error, interrupted,
    digest mismatch), NotSealedError, FormatError, SignatureError, AuthenticationError,
    NoIdentityMatchError, ModelMismatchError, UsageError, OSError.
    """
    target = parse_model_url(url) if isinstance(url, str) else url
    checks = Checks.build(signers, **expect)
    checks.require_source(identities)
    dst = os.fspath(dst)
    partial, sidecar = dst + PARTIAL_SUFFIX, dst + SIDECAR_SUFFIX
    ctx = client_context(cert, key, ca)
    with _http(ctx, timeout) as http:
        body, sigs, entry, _identity = _manifest(http, target)
        digest_b64 = base64.b64encode(entry.digest).decode("ascii")
        with partial_download(dst, ServerError) as download:
            fd = download.fd
            old = _Sidecar.load(sidecar) if resume else None
            if old is None or (old.url, old.size, old.digest) != (target.url, entry.size, digest_b64) \
                    or os.fstat(fd).st_size < old.done:  # fmt: skip
                old = None
                os.ftruncate(fd, 0)
            state, announced, resumed = _download(http, target, fd, entry.size, digest_b64, old, sidecar, progress)
            download.all_bytes_in()  # a failed check from now on discards the file
            digest_checked = announced is not None
            if announced is not None and blake3_of_fd(fd, entry.size) != announced.lower():
                raise ServerError(f"{target}: the downloaded bytes do not match the server's BLAKE3 digest",
                                  hint="run the pull again (the partial download was discarded)")  # fmt: skip
            header, signed_by = _verify(partial, target, entry, body, sigs, checks, identities, threads)
            download.commit()
    return HttpsPullResult(
        url=target, path=dst, size=entry.size, etag=state.etag, resumed_bytes=resumed, digest_checked=digest_checked,
        signature_checked=checks.signers is not None, signed_by=signed_by, tags_checked=identities is not None,
        header=header,
    )  # fmt: skip


def _download(
    http: Any, target: ModelUrl, fd: int, size: int, digest_b64: str, old: _Sidecar | None, sidecar: str,
    progress: Progress | None,
) -> tuple[_Sidecar, str | None, int]:  # fmt: skip
    """Fetch the missing bytes into ``fd``: (state, announced BLAKE3, bytes reused)."""
    what = f"download of {target}"
    headers = {"Accept-Encoding": "identity"}
    if old is not None and old.done > 0:
        headers.update({"Range": f"bytes={old.done}-", "If-Range": old.etag})
    with _transport_errors(what), http.stream("GET", target.url, headers=headers) as resp:
        _raise_for(resp, what)
        etag = resp.headers.get("ETag")
        if not etag:
            raise ServerError(f"{what}: the server sent no ETag")
        if resp.status_code == 206 and old is not None and etag == old.etag:
            expected = f"bytes {old.done}-{size - 1}/{size}"
            if resp.headers.get("Content-Range", "").strip() != expected:
                raise ServerError(f"{what}: unexpected Content-Range {resp.headers.get('Content-Range')!r}")
            start = old.done
        elif resp.status_code == 200:
            start = 0  # fresh, or the file changed: start over
            if old is not None:
                os.ftruncate(fd, 0)
        else:
            raise ServerError(f"{what}: unexpected HTTP {resp.status_code}")
        length = resp.headers.get("Content-Length")
        if length is not None and int(length) != size - start:
            raise ServerError(f"{what}: the server offers {int(length) + start} bytes, the manifest says {size}",
                              hint="the model changed on the server: run the pull again")  # fmt: skip
        state = _Sidecar(target.url, etag, size, digest_b64, start)
        state.save(sidecar)
        if progress is not None and start:
            progress(start)
        offset, synced = start, start
        for chunk in resp.iter_raw():
            if offset + len(chunk) > size:
                raise ServerError(f"{what}: the server sent more than {size} bytes")
            view = memoryview(chunk)
            while view:
                written = os.pwrite(fd, view, offset)
                view, offset = view[written:], offset + written
            if progress is not None:
                progress(len(chunk))
            if offset - synced >= SYNC_EVERY:
                sync(fd)
                state.done = synced = offset
                state.save(sidecar)
        sync(fd)
        state.done = offset
        state.save(sidecar)
        if offset != size:
            raise ServerError(f"{what} ended at byte {offset} of {size}", hint="run the same pull again to resume")
        return state, resp.headers.get("X-Tensorseal-Blake3"), start


def _verify(
    partial: str, target: ModelUrl, entry: Any, body: dict, sigs: Sequence[Any], checks: Checks, identities: Any,
    threads: int | None,
) -> tuple[Header, str | None]:  # fmt: skip
    where = str(target)
    try:
        with SealedFile(partial) as sealed:
            if os.fstat(sealed.fileno()).st_size != entry.size:
                raise FormatError(f"the file is not {entry.size} bytes as its manifest says")
            if sealed.digest(threads=threads) != entry.digest:
                raise AuthenticationError("the file does not match the digest in its manifest")
            signed_by = None
            if checks.signers is not None:
                signed_digest = manifest_digest(body)
                if any(k.verifies(s, signed_digest, MANIFEST_CONTEXT) for k in checks.signers for s in sigs):
                    signed_by = "manifest"
                else:
                    try:
                        sealed.check_signatures(checks.signers, threads=threads)
                    except SignatureError as exc:
                        raise SignatureError(
                            f"neither the manifest nor the file carries a valid signature from a trusted signer ({exc})",
                            hint="check --signer / --trusted-signers (the server signs manifests with its --sign-key)",
                        ) from None
                    signed_by = "file"
            if identities is not None:
                sealed.unlock(identities)
            if sealed.unlocked or signed_by is not None:
                checks.check_identity(sealed.header.identity)  # the manifest's signature counts too
            if identities is not None:
                sealed.verify(threads=threads)
            return sealed.header, signed_by
    except (FormatError, AuthenticationError, ModelMismatchError) as exc:
        raise exc.at(where) from None


# ---- activation -------------------------------------------------------------------------
@dataclass(frozen=True)
class ActivationResult:
    """A licence blob from the server, checked on this side."""

    blob: bytes
    licence: Licence
    licence_id: str  # the server's licence (its seats), hex
    seat: int
    seats: int
    reactivation: bool
    vendor_checked: bool  # the blob's vendor key is one of the trusted ``vendors``


def activate(
    url: str,
    licence_key: LicenceKey | str,
    *,
    cert: str | os.PathLike[str] | None,
    key: str | os.PathLike[str] | None,
    ca: str | os.PathLike[str],
    device: DeviceFingerprint | str | None = None,
    vendors: Sequence[VerifyingKey | str] | None = None,
    timeout: float = 60.0,
) -> ActivationResult:
    """Ask the server at ``url`` (``https://HOST[:PORT]``, optionally ending in
    ``/activate``) for a licence blob for ``device`` (default: this machine) under
    ``licence_key``. The blob is checked before it is returned: it parses, it opens on
    ``device`` with ``licence_key``, it has not expired, and with ``vendors`` it is signed
    by one of them.

    Raises WrongLicenceKeyError (unknown key), LicenceRevokedError, LicenceExpiredError,
    SeatLimitError, RateLimitedError, ServerError, InvalidKeyError, SignatureError (an
    untrusted vendor), UsageError, LicenceError (no machine id).
    """
    base, path = _base(url)
    if path not in ("", "/", "/activate"):
        raise UsageError(f"{url!r}: pass the server's address, https://HOST[:PORT]")
    lkey = LicenceKey.parse(licence_key) if isinstance(licence_key, str) else licence_key
    fingerprint = this_device() if device is None else DeviceFingerprint.parse(device) if isinstance(device, str) else device
    trusted = None if not vendors else to_verifying_keys(vendors)
    ctx = client_context(cert, key, ca)
    what = f"activation at {base}"
    with _http(ctx, timeout) as http, _transport_errors(what):
        resp = http.post(base + "/activate", json={"licence_key": str(lkey), "device": str(fingerprint)})
        _raise_for(resp, what)
        try:
            doc = resp.json()
            blob = base64.b64decode(doc["licence"], validate=True)
            info = (str(doc["licence_id"]), int(doc["seat"]), int(doc["seats"]), bool(doc["reactivation"]))
        except (ValueError, KeyError, TypeError):
            raise ServerError(f"{what}: the server's answer is not a licence") from None
    if len(blob) > MAX_LICENCE_SIZE:
        raise ServerError(f"{what}: the licence is over {MAX_LICENCE_SIZE} bytes")
    vendor_keys = trusted if trusted is not None else [VerifyingKey(blob[-96:-64])] if len(blob) >= 96 else []
    if not vendor_keys:
        raise FormatError(f"{what}: the server's licence is truncated")
    ident = LicenceIdentity(blob, lkey, trusted_vendors=vendor_keys, fingerprint=fingerprint)
    return ActivationResult(blob, ident.licence, *info, vendor_checked=trusted is not None)
