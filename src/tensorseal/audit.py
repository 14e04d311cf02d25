"""Audit log: one structured record for every attempt to unwrap a file key.

:meth:`tensorseal.reader.SealedFile.unlock` tries identities one after the other; each one
tried produces exactly one record, whatever happens: ``ok`` (it opened the file),
``not-mine`` (it has no stanza in the file, or its stanza does not open with it),
``refused`` (a key service refused or could not be reached) or ``error`` (anything else:
a malformed stanza, a key that fails the key commitment, a changed header...).

Each record goes to two places:

* a JSON-lines file, if one is set (``configure(path=...)`` or ``TENSORSEAL_AUDIT_LOG``):
  opened with ``O_APPEND | O_CREAT`` (mode 0600 when it is created) and written with one
  ``write`` per record, so that processes appending to the same local file do not
  interleave; re-opened for every record, so log rotation by renaming just works;
* the Python logger ``tensorseal.audit`` (or ``configure(logger=...)``): INFO for ``ok``,
  WARNING otherwise; the message is the JSON line and ``record.audit`` holds the fields.
  The logger has a ``NullHandler``: records show only where the application configured
  logging.

A record never holds key material: no file key, KEK, passphrase, licence key, secret key
or stanza body; recipients are named by what the key type already makes public (a KMS
key ARN, a Vault mount and key, a keyring entry, an X25519 public key), see
:func:`recipient_info`. docs/KEYS.md, "Audit log", lists the fields.

A record that cannot be written is never silent: by default an :class:`AuditWarning` is
issued (Python's ``warnings``, shown once per distinct problem) and an ERROR is logged,
and the unwrap goes on. With ``TENSORSEAL_AUDIT_REQUIRED=1`` (or
``configure(required=True)``) the log fails closed instead: :class:`AuditError` is raised
before any key is used if the log file cannot be opened (or none is set), and after an
attempt whose record could not be written; the file stays locked.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .errors import AuditError, IncorrectIdentityError, KeyServiceError, UsageError
from .format.header import Header

__all__ = [
    "LOGGER_NAME",
    "LOG_ENV",
    "REQUIRED_ENV",
    "AuditWarning",
    "configure",
    "file_id",
    "is_required",
    "log_path",
    "recipient_info",
    "record",
    "unwrap_attempt",
    "unwrap_event",
]

LOG_ENV = "TENSORSEAL_AUDIT_LOG"
REQUIRED_ENV = "TENSORSEAL_AUDIT_REQUIRED"
LOGGER_NAME = "tensorseal.audit"
FILE_ID_LABEL = b"tensorseal/v1/file-id"
MAX_DETAIL = 300  # characters of an error message kept in a record
_OFF = frozenset({"", "0", "false", "no", "off"})  # anything else in REQUIRED_ENV turns it on

_logger = logging.getLogger(LOGGER_NAME)
_logger.addHandler(logging.NullHandler())


class AuditWarning(UserWarning):
    """An audit record could not be written to the audit log file (it still went to the logger)."""


@dataclass(frozen=True)
class _Config:
    path: str | None = None
    logger: logging.Logger | None = None
    required: bool = False


_config = _Config()


def configure(
    path: str | os.PathLike[str] | None = None, *, logger: logging.Logger | None = None, required: bool = False
) -> None:
    """Set where audit records go, replacing what an earlier call set.

    ``path``: the JSON-lines file (``None``: ``TENSORSEAL_AUDIT_LOG``, read at each record,
    if set). ``logger``: the ``logging.Logger`` that also gets every record (``None``: the
    ``tensorseal.audit`` logger). ``required``: fail closed (see the module doc);
    ``TENSORSEAL_AUDIT_REQUIRED=1`` turns it on whatever is passed here, so an application
    cannot switch off what the operator demanded. ``configure()`` restores the defaults.

    Raises UsageError if ``path`` is empty.
    """
    global _config
    if path is not None and not os.fspath(path):
        raise UsageError("the audit log path is empty")
    _config = _Config(None if path is None else os.fspath(path), logger, bool(required))


def log_path() -> str | None:
    """The audit log file records are appended to now, or ``None``. Raises nothing."""
    if _config.path is not None:
        return _config.path
    return os.environ.get(LOG_ENV) or None


def is_required() -> bool:
    """Whether the audit log fails closed now. Raises nothing."""
    value = os.environ.get(REQUIRED_ENV)
    return _config.required or (value is not None and value.strip().lower() not in _OFF)


# ---- what a record says -----------------------------------------------------------------
def file_id(header: Header) -> str:
    """A stable, non-secret id of a sealed file: the first 128 bits (hex) of
    SHA-256("tensorseal/v1/file-id" ‖ header salt).

    The salt is public (it is in the header, in clear) and random per file, so the id
    reveals nothing and links every record about one file, whatever its path or host. It
    survives ``rewrap`` (same salt) and changes with ``rekey`` (new file key, new salt).
    Raises nothing.
    """
    return hashlib.sha256(FILE_ID_LABEL + header.salt).hexdigest()[:32]


def recipient_info(identity: object) -> dict[str, str | None]:
    """``{"kind": ..., "key_id": ...}`` naming an identity in a record, from its
    ``audit_info()`` method (every built-in key type has one): ``kind`` is the stanza type
    it opens; ``key_id`` what the key type makes public (KMS key ARN or name, Vault
    ``mount/key``, key URL, keyring ``service/name``, X25519 recipient), ``None`` for types
    with no public name (passphrase, symmetric key). Other identities: the ``STANZA_TYPE``
    of their module, else their class name, and no key id. Raises nothing.
    """
    audit_info = getattr(identity, "audit_info", None)
    if callable(audit_info):
        try:
            info = audit_info()
            kind, key_id = info["kind"], info.get("key_id")
            if isinstance(kind, str) and (key_id is None or isinstance(key_id, str)):
                return {"kind": kind, "key_id": key_id}
        except Exception:  # noqa: BLE001, S110 - a broken third-party audit_info must not stop the unwrap
            pass
    kind = getattr(sys.modules.get(type(identity).__module__), "STANZA_TYPE", None)
    return {"kind": kind if isinstance(kind, str) else type(identity).__name__, "key_id": None}


def unwrap_event(
    path: str | os.PathLike[str], header: Header, identity: object, outcome: str, error: BaseException | None = None
) -> dict[str, Any]:
    """The fields of one ``unwrap`` record (without time and process, which :func:`record`
    adds). ``model`` and ``file_id`` are what the header claims: authenticated only in an
    ``ok`` record. Raises nothing."""
    detail = None
    if error is not None:
        lines = str(error).strip().splitlines()
        detail = lines[0][:MAX_DETAIL] if lines else None
    model = header.identity
    try:
        where = path if isinstance(path, str) and "://" in path else os.path.abspath(os.fspath(path))  # a URL as given
    except OSError:  # the working directory was removed
        where = os.fspath(path)
    return {
        "event": "unwrap",
        "outcome": outcome,
        "error": None if error is None else type(error).__name__,
        "detail": detail,
        "file": where,
        "file_id": file_id(header),
        "model": {"name": model.name, "version": model.version, "file": model.file},
        "recipient": recipient_info(identity),
    }


def _user() -> tuple[str | None, int | None]:
    """(name, uid) of the real user: from the uid, not from ``$USER``, which anyone can set."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    name: str | None = None
    try:
        import pwd

        name = pwd.getpwuid(uid).pw_name if uid is not None else None
    except (ImportError, KeyError):
        pass
    if name is None:
        try:
            import getpass  # only where pwd is missing (Windows): not at import time

            name = getpass.getuser()
        except Exception:  # noqa: BLE001 - getpass raises OSError or KeyError depending on version
            name = None
    return name, uid


def _process() -> dict[str, Any]:
    user, uid = _user()
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c") else sys.executable
    name = os.path.basename(argv0 or "")
    if name == "__main__.py":  # python -m package: name the package
        name = os.path.basename(os.path.dirname(argv0))
    return {
        "user": user,
        "uid": uid,
        "host": _host(),
        "pid": os.getpid(),
        "process": name or None,
    }


def _host() -> str:
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket  # Windows

    return socket.gethostname()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


# ---- writing ----------------------------------------------------------------------------
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def _append(path: str, data: bytes) -> None:
    fd = os.open(path, _FLAGS, 0o600)
    try:
        written = os.write(fd, data)  # one write: O_APPEND keeps concurrent records whole
    finally:
        os.close(fd)
    if written != len(data):
        raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)")


def _check_writable() -> None:
    """Fail closed before a key is used: the log must be set and open for appending."""
    path = log_path()
    if path is None:
        raise AuditError(f"the audit log is required ({REQUIRED_ENV}) but no audit log file is set ({LOG_ENV})")
    try:
        os.close(os.open(path, _FLAGS, 0o600))
    except OSError as exc:
        raise AuditError(f"the audit log is required but {path} cannot be opened: {exc.strerror or exc}") from None


def record(event: Mapping[str, Any]) -> None:
    """Write one audit record: ``time`` (ISO-8601 UTC), the fields of ``event``, then
    ``user``, ``uid``, ``host``, ``pid`` and ``process``; as one JSON line appended to the
    audit log file (if one is set) and as one message to the audit logger (INFO if
    ``event["outcome"]`` is ``"ok"``, else WARNING).

    Raises AuditError if the log is required and the line could not be written (or no
    file is set); otherwise such a failure issues an AuditWarning and logs an ERROR.
    """
    fields = {"time": _now(), **event, **_process()}
    line = json.dumps(fields, ensure_ascii=True, separators=(",", ":"), default=str)
    problem: str | None = None
    path = log_path()
    if path is not None:
        try:
            _append(path, (line + "\n").encode("ascii"))
        except OSError as exc:
            problem = f"the audit log {path} cannot be written: {exc.strerror or exc}"
    elif is_required():
        problem = f"no audit log file is set ({LOG_ENV})"
    logger = _config.logger or _logger
    logger.log(logging.INFO if fields.get("outcome") == "ok" else logging.WARNING, "%s", line, extra={"audit": fields})
    if problem is None:
        return
    if is_required():
        raise AuditError(f"{problem}; refusing to go on without an audit record ({REQUIRED_ENV})")
    logger.error("%s; the record went to this logger only", problem)
    warnings.warn(
        f"tensorseal: {problem}; the record went to the {LOGGER_NAME!r} logger only", AuditWarning, stacklevel=2
    )


@contextlib.contextmanager
def unwrap_attempt(path: str | os.PathLike[str], header: Header, identity: object) -> Iterator[None]:
    """Record the unwrap attempt made in the ``with`` block: ``ok`` if it ends normally,
    else ``not-mine`` (IncorrectIdentityError), ``refused`` (KeyServiceError) or ``error``,
    with the error's class name; the block's exception then propagates unchanged.

    Raises AuditError when the log is required: before the block if the log file is not
    set or cannot be opened (no key service is contacted), after it if the record could
    not be written (replacing the block's exception, which stays as ``__context__``).
    """
    if is_required():
        _check_writable()
    try:
        yield
    except IncorrectIdentityError as exc:
        record(unwrap_event(path, header, identity, "not-mine", exc))
        raise
    except KeyServiceError as exc:
        record(unwrap_event(path, header, identity, "refused", exc))
        raise
    except Exception as exc:
        record(unwrap_event(path, header, identity, "error", exc))
        raise
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: recorded, never replaced
        with contextlib.suppress(AuditError):
            record(unwrap_event(path, header, identity, "error", exc))
        raise
    record(unwrap_event(path, header, identity, "ok"))
