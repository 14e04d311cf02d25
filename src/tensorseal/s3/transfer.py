"""Push sealed files to S3 and pull them back: verified before they appear, resumable.

``push`` uploads only a file that parses as a sealed file (a plain safetensors file is
refused before any byte leaves the machine), optionally only if a trusted publisher signed
it. The object gets metadata ``tensorseal-version``, ``tensorseal-format`` and
``tensorseal-blake3`` (a BLAKE3 digest of the whole object, to catch a corrupted transfer
or a torn resume; it is not authenticated: signatures and tags are).

``pull`` downloads in parts (ranged GETs pinned to the object's ETag with ``If-Match``)
into ``FILE.partial`` beside the target, with a sidecar ``FILE.partial.json`` recording the
ETag, size, part size and the parts already written. An interrupted pull keeps both; the
next pull of the same object to the same target fetches only the missing parts, or starts
over if the object's ETag or size changed. Nothing appears under the final name until the
whole file checked out: BLAKE3 digest (when the object has one), sealed-file structure and
size, and on request the publisher signature and every AEAD tag.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from .. import __version__
from .._download import PARTIAL_SUFFIX, SIDECAR_SUFFIX, blake3_of_fd, partial_download, sync
from ..checks import Checks, SignersArg
from ..errors import (
    AuthenticationError,
    FormatError,
    LayoutError,
    ModelMismatchError,
    StorageError,
    TrailingDataError,
    TruncatedError,
    UsageError,
)
from ..format import constants as C
from ..format.header import Header, parse_header, parse_prefix
from ..format.signatures import FOOTER_SIZE, MAX_BLOCK_BODY
from ..reader import SealedFile
from ._client import S3Url, call, error_code, make_client, parse_url, storage_error

Progress = Callable[[int], None]

META_VERSION = "tensorseal-version"
META_FORMAT = "tensorseal-format"
META_DIGEST = "tensorseal-blake3"
MIN_PART_SIZE = 5 << 20  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 << 30  # S3's maximum part size
MAX_PARTS = 10_000  # S3's maximum part count
DEFAULT_PART_SIZE = 16 << 20
DEFAULT_CONCURRENCY = 8
_SIDECAR_VERSION = 1
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class PushResult:
    """What :func:`push` uploaded."""

    url: S3Url
    size: int
    etag: str
    sse: str | None  # ServerSideEncryption of the stored object ("aws:kms", "AES256", None)
    kms_key: str | None  # SSEKMSKeyId of the stored object
    bucket_default_kms: bool | None  # whether the bucket's default encryption is SSE-KMS (None: not readable)
    parts: int  # 1 for a single PUT


@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` wrote and checked."""

    url: S3Url
    path: str
    size: int
    etag: str
    resumed_bytes: int  # bytes reused from an interrupted pull
    digest_checked: bool  # the object carried tensorseal-blake3 and it matched
    signature_checked: bool
    tags_checked: bool
    header: Header


# ---- helpers ----------------------------------------------------------------------------
def _part_size(size: int, part_size: int) -> int:
    """``part_size``, raised (to whole MiB) if the object would need more than 10,000 parts."""
    if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
        raise UsageError(f"part size {part_size} is outside 5 MiB..5 GiB", hint="S3 parts are 5 MiB to 5 GiB")
    needed = -(-size // MAX_PARTS)
    if needed > part_size:
        part_size = -(-needed // (1 << 20)) << 20
    return part_size


def _usable_part_size(size: int, part_size: int) -> bool:
    return MIN_PART_SIZE <= part_size <= MAX_PART_SIZE and -(-size // part_size) <= MAX_PARTS


def _transfer_config(size: int, part_size: int, concurrency: int) -> Any:
    from boto3.s3.transfer import TransferConfig

    part = _part_size(size, part_size)
    return TransferConfig(
        multipart_threshold=part, multipart_chunksize=part, max_concurrency=concurrency,
        use_threads=concurrency > 1, preferred_transfer_client="classic",
    )  # fmt: skip


def _check_concurrency(concurrency: int) -> None:
    if not 1 <= concurrency <= 64:
        raise UsageError(f"concurrency {concurrency} is outside 1..64")


def _check_size(file_size: int, size: int, where: str) -> None:
    """The object/file size must be the header's layout plus at most a signature block."""
    if size < file_size:
        raise TruncatedError(
            f"{where} is {size} bytes but its header describes {file_size}",
            hint="the upload was cut short: push it again",
        )
    if size - file_size > MAX_BLOCK_BODY + FOOTER_SIZE:
        raise TrailingDataError(f"{where} has {size - file_size} bytes after the end of its data region")


def _bucket_default_kms(client: Any, bucket: str) -> bool | None:
    """Whether the bucket encrypts new objects with SSE-KMS by default (None: not readable)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            return False
        if error_code(exc) in ("NoSuchBucket",):
            raise storage_error(exc, f"s3://{bucket}") from None
        return None  # e.g. no s3:GetEncryptionConfiguration permission: not our business
    except BotoCoreError as exc:
        raise storage_error(exc, f"s3://{bucket}") from None
    algorithms = {r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules}
    return bool(algorithms & {"aws:kms", "aws:kms:dsse"})


# ---- push -------------------------------------------------------------------------------
def push(
    src: str | os.PathLike[str],
    url: str | S3Url,
    *,
    sse_kms_key: str | None = None,
    signers: SignersArg | None = None,
    part_size: int = DEFAULT_PART_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    threads: int | None = None,
    progress: Progress | None = None,
    client: Any = None,
    **expect: Any,
) -> PushResult:
    """Upload the sealed file ``src`` to ``url`` (``s3://bucket/key``; a key ending in ``/``
    or empty gets the file's name appended). Files above ``part_size`` go up as a multipart
    upload of ``part_size`` parts (raised if 10,000 parts would not do), ``concurrency`` at
    a time; s3transfer aborts the multipart upload on failure.

    The file is opened once, checked as a sealed file and uploaded from that open file, so
    a file renamed over it after the check is not the one that goes up. With ``signers`` (or ``require_signature``)
    a trusted publisher signature is required; ``expect`` takes the keyword arguments of
    :func:`tensorseal.verify_file`. ``sse_kms_key`` asks S3 to encrypt the object with
    SSE-KMS under that key (for buckets whose default encryption is not SSE-KMS).

    Raises NotSealedError (a plain file: nothing is uploaded), FormatError (a damaged
    sealed file), SignatureError, ModelMismatchError, UsageError, StorageError, OSError.
    """
    target = parse_url(url) if isinstance(url, str) else url
    if target.is_prefix:
        target = S3Url(target.bucket, target.key + os.path.basename(os.fspath(src)))
    _check_concurrency(concurrency)
    checks = Checks.build(signers, **expect)
    where = str(target)
    try:
        sealed = SealedFile(src)  # strict parse; size = layout + at most a signature block
    except FormatError as exc:  # NotSealedError for a plain file
        raise exc.at(os.fspath(src)) from None
    with sealed:
        fd = sealed.fileno()
        size = os.fstat(fd).st_size
        checks.apply(sealed, threads=threads)  # nothing to do without signers / expectations
        config = _transfer_config(size, part_size, concurrency)
        digest = blake3_of_fd(fd, size)
        client = client or make_client(max_pool=concurrency + 2)
        bucket_kms = _bucket_default_kms(client, target.bucket)
        extra: dict[str, Any] = {
            "ContentType": "application/octet-stream",
            "Metadata": {META_VERSION: __version__, META_FORMAT: str(C.VERSION), META_DIGEST: digest},
        }
        if sse_kms_key:
            extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=sse_kms_key)
        from botocore.exceptions import BotoCoreError, ClientError

        # a second descriptor of the same open file (SealedFile reads with pread only)
        with os.fdopen(os.dup(fd), "rb") as stream:
            stream.seek(0)
            try:
                client.upload_fileobj(
                    stream, target.bucket, target.key, ExtraArgs=extra, Config=config, Callback=progress
                )
            except (ClientError, BotoCoreError) as exc:
                raise storage_error(exc, f"upload to {where}") from None
    head = call(client, "head_object", f"upload to {where}", Bucket=target.bucket, Key=target.key)
    if head.get("ContentLength") != size or head.get("Metadata", {}).get(META_DIGEST) != digest:
        raise StorageError(
            f"{where}: the stored object is not the file just uploaded (another writer?)", hint="push it again"
        )
    chunk = config.multipart_chunksize
    return PushResult(
        url=target, size=size, etag=head.get("ETag", ""), sse=head.get("ServerSideEncryption"),
        kms_key=head.get("SSEKMSKeyId"), bucket_default_kms=bucket_kms,
        parts=1 if size < config.multipart_threshold else -(-size // chunk),
    )  # fmt: skip


# ---- pull -------------------------------------------------------------------------------
def _read_range(client: Any, target: S3Url, etag: str, start: int, length: int) -> bytes:
    resp = call(client, "get_object", f"read {target}", Bucket=target.bucket, Key=target.key,
                Range=f"bytes={start}-{start + length - 1}", IfMatch=etag)  # fmt: skip
    from botocore.exceptions import BotoCoreError

    try:
        data = resp["Body"].read()
    except BotoCoreError as exc:
        raise storage_error(exc, f"read {target}") from None
    if len(data) != length:
        raise StorageError(f"read {target}: asked for {length} bytes at {start}, got {len(data)}")
    return bytes(data)


def check_remote_header(client: Any, target: S3Url, etag: str, size: int) -> None:
    """Read the prefix and header slots of an object (two small ranged GETs) and check
    that it is a sealed file whose size fits its header: refuses a plain or truncated
    object before it is downloaded. Raises NotSealedError, FormatError, StorageError."""
    where = str(target)
    try:
        if size < C.PREFIX_SIZE:
            parse_prefix(_read_range(client, target, etag, 0, size) if size else b"")
            raise TruncatedError("file ends inside the prefix")
        header_len = parse_prefix(_read_range(client, target, etag, 0, C.PREFIX_SIZE))
        slot_size = header_len + C.MAC_SIZE
        if size < C.PREFIX_SIZE + C.HEAD_SLOTS * slot_size:
            raise TruncatedError(f"object is {size} bytes, too short for its {header_len}-byte header")
        slots = _read_range(client, target, etag, C.PREFIX_SIZE, C.HEAD_SLOTS * slot_size)
        first: FormatError | None = None
        for slot in range(C.HEAD_SLOTS):
            raw = slots[slot * slot_size : slot * slot_size + header_len]
            if raw.count(0) == len(raw):
                continue
            try:
                _check_size(parse_header(raw).file_size, size, "the object")
                return
            except FormatError as exc:
                first = first or exc
        raise first or LayoutError("both header slots are empty")
    except FormatError as exc:
        raise exc.at(where) from None


@dataclass
class _State:
    """The sidecar of a partial download."""

    bucket: str
    key: str
    etag: str
    size: int
    part_size: int
    done: set[int]

    def to_json(self) -> dict[str, Any]:
        return {"version": _SIDECAR_VERSION, "bucket": self.bucket, "key": self.key, "etag": self.etag,
                "size": self.size, "part_size": self.part_size, "done": sorted(self.done)}  # fmt: skip

    @classmethod
    def load(cls, path: str) -> _State | None:
        """The sidecar at ``path``, or None if missing or unreadable (then: start over)."""
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
            state = cls(
                obj["bucket"],
                obj["key"],
                obj["etag"],
                int(obj["size"]),
                int(obj["part_size"]),
                {int(i) for i in obj["done"]},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if obj.get("version") != _SIDECAR_VERSION or state.part_size <= 0 or state.size < 0:
            return None
        return state

    def save(self, path: str) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f)
        os.replace(tmp, path)


def _parts(size: int, part_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + part_size, size)) for start in range(0, size, part_size)]


class _Stopped(Exception):
    """A worker noticed that the pull is being abandoned."""


def _download(
    client: Any, target: S3Url, fd: int, state: _State, sidecar: str, concurrency: int, progress: Progress | None
) -> None:
    """Fetch the parts not yet in ``state.done`` into ``fd``; record each one in the sidecar
    once its bytes are written and synced. Raises StorageError (the partial file stays)."""
    from botocore.exceptions import BotoCoreError

    parts = _parts(state.size, state.part_size)
    todo = [i for i in range(len(parts)) if i not in state.done]
    if not todo:
        return
    stop = threading.Event()
    lock = threading.Lock()
    where = f"download of {target}"

    def fetch(i: int) -> int:
        start, end = parts[i]
        resp = call(client, "get_object", where, Bucket=target.bucket, Key=target.key,
                    Range=f"bytes={start}-{end - 1}", IfMatch=state.etag)  # fmt: skip
        body, offset = resp["Body"], start
        try:
            chunks = body.iter_chunks(_READ_CHUNK)
            while True:
                if stop.is_set():
                    raise _Stopped
                try:
                    chunk = next(chunks, None)
                except (BotoCoreError, OSError) as exc:
                    raise StorageError(
                        f"{where} interrupted at byte {offset}: {exc}", hint="run the same pull again to resume"
                    ) from None
                if chunk is None:
                    break
                if offset + len(chunk) > end:
                    raise StorageError(f"{where}: the server sent more bytes than asked for", hint="run the pull again")
                view = memoryview(chunk)
                while view:
                    written = os.pwrite(fd, view, offset)
                    view, offset = view[written:], offset + written
                if progress is not None:
                    with lock:
                        progress(len(chunk))
        finally:
            body.close()
        if offset != end:
            raise StorageError(
                f"{where} ended at byte {offset} of part {i} (expected {end})", hint="run the same pull again to resume"
            )
        sync(fd)
        return i

    with ThreadPoolExecutor(max_workers=min(concurrency, len(todo)), thread_name_prefix="tensorseal-pull") as pool:
        pending = {pool.submit(fetch, i) for i in todo}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                failed = [f for f in finished if f.exception() is not None]
                state.done.update(f.result() for f in finished if f.exception() is None)
                state.save(sidecar)  # record the parts that made it before giving up on any
                if failed:
                    failed[0].result()  # re-raises the worker's error
        except BaseException:
            stop.set()
            for future in pending:
                future.cancel()
            raise


def pull(
    url: str | S3Url,
    dst: str | os.PathLike[str],
    *,
    identities: Any = None,
    signers: SignersArg | None = None,
    part_size: int = DEFAULT_PART_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    threads: int | None = None,
    progress: Progress | None = None,
    resume: bool = True,
    client: Any = None,
    **expect: Any,
) -> PullResult:
    """Download the sealed object at ``url`` to ``dst``; ``dst`` appears (atomically, by
    rename) only after the download checked out, and an existing ``dst`` is replaced.

    Before downloading, the object's header is read with two small ranged GETs: a plain or
    truncated object is refused without being fetched. The parts go to ``dst.partial``
    (see the module docs; ``resume=False`` always starts over). Then, in order: the BLAKE3
    digest from the object's metadata (if any), the sealed-file structure and size, with
    ``signers`` (or ``require_signature``) a trusted publisher signature, with
    ``identities`` every AEAD tag (like :func:`tensorseal.verify_file`); ``expect`` takes
    ``require_signature``, ``expect_name``, ``expect_version``, ``min_version`` and
    ``expect_file``. A check that fails deletes the partial file and its sidecar; an
    interrupted download keeps them for the next pull.

    Raises NotSealedError, FormatError (truncated, trailing data, malformed),
    SignatureError, AuthenticationError, NoIdentityMatchError, ModelMismatchError,
    StorageError (refused, unreachable, interrupted, object changed, digest mismatch),
    UsageError, OSError.
    """
    from .. import files

    target = parse_url(url) if isinstance(url, str) else url
    if target.is_prefix:
        raise UsageError(f"{target} names no object", hint="write s3://BUCKET/KEY")
    _check_concurrency(concurrency)
    checks = Checks.build(signers, **expect)
    checks.require_source(identities)
    dst = os.fspath(dst)
    partial, sidecar = dst + PARTIAL_SUFFIX, dst + SIDECAR_SUFFIX  # what partial_download opens
    client = client or make_client(max_pool=concurrency + 2)
    head = call(client, "head_object", str(target), Bucket=target.bucket, Key=target.key)
    size, etag = int(head["ContentLength"]), str(head["ETag"])
    digest = (head.get("Metadata") or {}).get(META_DIGEST)
    check_remote_header(client, target, etag, size)

    with partial_download(dst, StorageError) as download:
        fd = download.fd
        old = _State.load(sidecar) if resume else None
        fresh = old is None or (old.bucket, old.key, old.etag, old.size) != (target.bucket, target.key, etag, size) \
            or not _usable_part_size(size, old.part_size) or os.fstat(fd).st_size != size  # fmt: skip
        if fresh:
            state = _State(target.bucket, target.key, etag, size, _part_size(size, part_size), set())
            os.ftruncate(fd, 0)
            os.ftruncate(fd, size)
            state.save(sidecar)
        else:
            assert old is not None
            state = old
            state.done &= set(range(len(_parts(size, state.part_size))))
        resumed = sum(end - start for i, (start, end) in enumerate(_parts(size, state.part_size)) if i in state.done)
        if progress is not None and resumed:
            progress(resumed)
        _download(client, target, fd, state, sidecar, concurrency, progress)

        download.all_bytes_in()  # from now on a failed check discards the file
        if digest is not None and blake3_of_fd(fd, size) != digest.lower():
            raise StorageError(
                f"{target}: the downloaded bytes do not match the object's tensorseal-blake3 digest",
                hint="run the pull again (the partial download was discarded)",
            )
        signature_checked = checks.signers is not None
        try:
            if identities is not None or signature_checked:
                header = files.verify_file(partial, identities, signers=signers, threads=threads, **expect)
            else:
                with SealedFile(partial) as sealed:  # strict parse; size = layout + at most a signature block
                    header = sealed.header
        except (FormatError, AuthenticationError, ModelMismatchError) as exc:
            raise exc.at(str(target)) from None
        download.commit()
    return PullResult(
        url=target, path=dst, size=size, etag=etag, resumed_bytes=resumed, digest_checked=digest is not None,
        signature_checked=signature_checked, tags_checked=identities is not None, header=header,
    )  # fmt: skip


def object_size(url: str | S3Url, *, client: Any = None) -> int:
    """The size of the object at ``url`` in bytes. Raises StorageError, UsageError."""
    target = parse_url(url) if isinstance(url, str) else url
    client = client or make_client()
    return int(call(client, "head_object", str(target), Bucket=target.bucket, Key=target.key)["ContentLength"])


__all__: Sequence[str] = ["PullResult", "PushResult", "object_size", "pull", "push"]
