"""The activation server's licence database (SQLAlchemy 2.x: SQLite by default, PostgreSQL by URL).

Two tables:

* ``tensorseal_licences``: one row per licence sold: a public id (16 random bytes, hex),
  the SHA-256 of its licence key (the key itself is never stored: the client sends it with
  each activation, and the server needs it only to issue the blob), model name and
  version, licensee, seat count, expiry, revocation time and reason;
* ``tensorseal_activations``: one row per device holding a seat: licence, seat number,
  device fingerprint, first and last activation, the client certificate's subject.

Seat limits cannot be over-issued, by two independent means:

1. every activation runs in one transaction that first locks the licence row: ``SELECT
   ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` (the database's write lock) on
   SQLite; it counts the seats taken and inserts the new one before it commits;
2. the schema itself: a seat is a number in 1..seats (checked in the transaction) and
   ``UNIQUE (licence_id, seat)`` and ``UNIQUE (licence_id, device)`` hold even if the lock
   were missing, so at most ``seats`` rows can exist per licence. A violation (which the
   lock prevents) rolls back and the transaction is retried.

A device that already holds a seat re-activates on it (a renewed blob, no new seat). An
activation is committed before its licence blob is sent: a crash loses nothing that a
client was told, and a client that got no answer simply asks again.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..device import DeviceFingerprint
from ..errors import (
    LicenceExpiredError,
    LicenceRevokedError,
    SeatLimitError,
    ServerError,
    UsageError,
    WrongLicenceKeyError,
)
from ..recipients.licence import LicenceKey

__all__ = [
    "DB_ENV",
    "DEFAULT_DB",
    "Activation",
    "LicenceRecord",
    "LicenceStore",
    "database_url",
]

DB_ENV = "TENSORSEAL_DB"
DEFAULT_DB = "sqlite:///tensorseal-licences.sqlite3"
MAX_SEATS = 1_000_000
KEY_HASH_LABEL = b"tensorseal/v1/licence-key-lookup"
_RETRIES = 8


def database_url(url: str | None) -> str:
    """The SQLAlchemy URL for ``url`` (``None``: ``$TENSORSEAL_DB``, else a SQLite file
    ``tensorseal-licences.sqlite3`` here). ``postgresql://`` means psycopg 3
    (``postgresql+psycopg://``); a bare path means a SQLite file. Raises UsageError."""
    url = url or os.environ.get(DB_ENV) or DEFAULT_DB
    if "://" not in url:
        return "sqlite:///" + os.path.abspath(url)
    scheme = url.split("://", 1)[0]
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if scheme in ("sqlite", "postgresql+psycopg", "postgresql+psycopg2"):
        return url
    raise UsageError(f"unsupported database URL scheme {scheme!r}",
                     hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")  # fmt: skip


def key_hash(key: LicenceKey) -> str:
    """The lookup value stored for a licence key: hex SHA-256 of a label and the key.
    The key is 256 random bits, so the hash cannot be inverted. Raises nothing."""
    return hashlib.sha256(KEY_HASH_LABEL + key.secret_bytes()).hexdigest()


def _now() -> int:
    return int(time.time())


def _dt(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


@dataclass(frozen=True)
class LicenceRecord:
    """A licence as stored (without its key)."""

    licence_id: str
    model_name: str
    model_version: str
    licensee: str
    seats: int
    expires: datetime
    created: datetime
    revoked: datetime | None
    revoke_reason: str | None
    seats_used: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "licence_id": self.licence_id, "model": {"name": self.model_name, "version": self.model_version},
            "licensee": self.licensee, "seats": self.seats, "seats_used": self.seats_used,
            "expires": self.expires.isoformat(), "created": self.created.isoformat(),
            "revoked": self.revoked.isoformat() if self.revoked else None, "revoke_reason": self.revoke_reason,
        }  # fmt: skip


@dataclass(frozen=True)
class Activation:
    """A committed activation: the licence and the seat the device holds."""

    licence: LicenceRecord
    seat: int
    reactivation: bool  # the device already held this seat


class LicenceStore:
    """Licences and activations in a database (see the module doc).

    Raises UsageError (bad URL), ImportError (SQLAlchemy or the PostgreSQL driver missing:
    ``pip install 'tensorseal[server]'``), and SQLAlchemy's errors when the database is
    unreachable.
    """

    def __init__(self, url: str | None = None, *, pool_size: int = 8) -> None:
        try:
            import sqlalchemy as sa
        except ImportError:
            raise UsageError("the licence database needs SQLAlchemy", hint="pip install 'tensorseal[server]'") from None
        self.url = database_url(url)
        self.dialect = self.url.split(":", 1)[0].split("+", 1)[0]
        if self.dialect == "sqlite":
            path = self.url[len("sqlite:///") :]
            if path and path != ":memory:" and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
                raise UsageError(f"the directory of the database {path} does not exist")
            engine = sa.create_engine(self.url, connect_args={"timeout": 60}, pool_size=pool_size, max_overflow=pool_size)
            sa.event.listen(engine, "connect", _sqlite_connect)
            sa.event.listen(engine, "begin", _sqlite_begin)
        else:
            try:
                engine = sa.create_engine(self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
            except ImportError:
                raise UsageError("a PostgreSQL licence database needs psycopg", hint="pip install 'tensorseal[postgres]'") from None
        self.engine = engine
        self._tables = _tables(sa)
        try:
            self._tables.metadata.create_all(engine)
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            where = sa.engine.make_url(self.url).render_as_string(hide_password=True)
            reason = str(exc.orig).strip().splitlines()[0][:300] if exc.orig is not None else type(exc).__name__
            raise ServerError(f"the licence database {where} cannot be used: {reason}", hint="check --db (or TENSORSEAL_DB)") from None

    def close(self) -> None:
        """Close every pooled connection. Raises nothing."""
        self.engine.dispose()

    def __enter__(self) -> LicenceStore:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- vendor side ------------------------------------------------------------------
    def add(
        self, *, model: str, version: str, licensee: str, seats: int, expires: datetime, now: int | None = None
    ) -> tuple[LicenceKey, LicenceRecord]:
        """Create a licence of ``seats`` seats for model ``model`` version ``version`` until
        ``expires`` (naive: UTC); returns its new licence key (shown once, never stored) and
        its record. Raises UsageError (bad fields, expiry not in the future)."""
        for what, value in (("model name", model), ("model version", version), ("licensee", licensee)):
            if not isinstance(value, str) or not value or not value.isprintable() or len(value.encode()) > 256:
                raise UsageError(f"the {what} must be 1..256 bytes of printable text")
        if not isinstance(seats, int) or not 1 <= seats <= MAX_SEATS:
            raise UsageError(f"seats must be 1..{MAX_SEATS}")
        created = _now() if now is None else now
        expiry = int((expires if expires.tzinfo else expires.replace(tzinfo=timezone.utc)).timestamp())
        if expiry <= created:
            raise UsageError("the licence expiry must be in the future")
        key = LicenceKey.generate()
        licence_id = os.urandom(16).hex()
        t = self._tables
        with self.engine.begin() as conn:
            conn.execute(t.licences.insert().values(
                id=licence_id, key_hash=key_hash(key), model_name=model, model_version=version,
                licensee=licensee, seats=seats, expires=expiry, created=created,
            ))  # fmt: skip
        return key, self.get(licence_id)

    def get(self, licence_id: str) -> LicenceRecord:
        """The licence with this id (hex). Raises UsageError if there is none."""
        records = [r for r in self._records(licence_id) if r.licence_id == licence_id]
        if not records:
            raise UsageError(f"no licence {licence_id!r} in the database", hint="list them with `tensorseal license list`")
        return records[0]

    def find(self, ident: str) -> LicenceRecord:
        """The licence named by its id (hex) or its licence key (``TSEAL-LICENCE-KEY-1...``).
        Raises UsageError (none), InvalidKeyError (a malformed licence key)."""
        ident = ident.strip()
        if ident.upper().startswith("TSEAL-LICENCE-KEY-1"):
            sa, t = self._sa, self._tables
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t.licences.c.id).where(t.licences.c.key_hash == key_hash(LicenceKey.parse(ident)))).first()
            if row is None:
                raise UsageError("no licence with this licence key in the database")
            ident = row[0]
        if not re.fullmatch(r"[0-9a-f]{32}", ident):
            raise UsageError(f"{ident!r} is not a licence id (32 hex digits) or licence key")
        return self.get(ident)

    def list(self) -> list[LicenceRecord]:
        """Every licence, oldest first, with its seats in use. Raises nothing of its own."""
        return self._records(None)

    def revoke(self, ident: str, *, reason: str | None = None, now: int | None = None) -> LicenceRecord:
        """Revoke a licence (by id or key): it can no longer be activated or re-activated.
        Blobs already issued open until they expire. Revoking twice keeps the first time.
        Raises UsageError, InvalidKeyError."""
        record = self.find(ident)
        if reason is not None and (len(reason) > 256 or not reason.isprintable()):
            raise UsageError("the reason must be at most 256 printable characters")
        t = self._tables
        with self.engine.begin() as conn:
            conn.execute(
                t.licences.update().where(t.licences.c.id == record.licence_id, t.licences.c.revoked.is_(None))
                .values(revoked=_now() if now is None else now, revoke_reason=reason)
            )  # fmt: skip
        return self.get(record.licence_id)

    def activations(self, licence_id: str) -> list[dict[str, Any]]:
        """The seats of a licence: seat, device, first and last activation, count, client subject."""
        sa, t = self._sa, self._tables
        a = t.activations
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(a).where(a.c.licence_id == licence_id).order_by(a.c.seat)).mappings().all()
        return [dict(r) for r in rows]

    # ---- server side ------------------------------------------------------------------
    def activate(
        self,
        key: LicenceKey,
        device: DeviceFingerprint,
        *,
        client: str | None = None,
        now: int | None = None,
        check_model: Callable[[str, str], None] | None = None,
    ) -> Activation:
        """Give ``device`` a seat of the licence whose key is ``key`` (or re-activate the seat
        it holds), committed before this returns. ``check_model(name, version)`` runs inside
        the transaction before a seat is taken (the server refuses models it holds no master
        key for).

        Raises WrongLicenceKeyError (no such licence), LicenceRevokedError,
        LicenceExpiredError, SeatLimitError (every seat taken), what ``check_model`` raises.
        """
        import sqlalchemy as sa
        from sqlalchemy.exc import IntegrityError, OperationalError

        t = self._tables
        lic, act = t.licences, t.activations
        h, dev = key_hash(key), str(device)
        subject = None if client is None else client[:1024]
        for attempt in range(_RETRIES):
            when = _now() if now is None else now
            try:
                with self.engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE (see _sqlite_begin)
                    query = sa.select(lic).where(lic.c.key_hash == h)
                    if self.dialect != "sqlite":
                        query = query.with_for_update()
                    row = conn.execute(query).mappings().first()
                    if row is None:
                        raise WrongLicenceKeyError("the server knows no licence with this licence key")
                    record = _record(row, 0)
                    if row["revoked"] is not None:
                        raise LicenceRevokedError(f"the licence for {row['model_name']} {row['model_version']} was revoked")
                    if when >= row["expires"]:
                        raise LicenceExpiredError(
                            f"the licence for {row['model_name']} {row['model_version']} expired on {record.expires.isoformat()}"
                        )
                    if check_model is not None:
                        check_model(row["model_name"], row["model_version"])
                    held = conn.execute(
                        sa.select(act.c.id, act.c.seat).where(act.c.licence_id == row["id"], act.c.device == dev)
                    ).first()
                    if held is not None:
                        conn.execute(act.update().where(act.c.id == held.id).values(
                            last_activated=when, activations=act.c.activations + 1, client=subject))  # fmt: skip
                        used = conn.execute(sa.select(sa.func.count()).select_from(act).where(act.c.licence_id == row["id"])).scalar_one()
                        return Activation(_record(row, used), held.seat, True)
                    taken = set(conn.execute(sa.select(act.c.seat).where(act.c.licence_id == row["id"])).scalars())
                    free = next((s for s in range(1, row["seats"] + 1) if s not in taken), None)
                    if free is None:
                        raise SeatLimitError(
                            f"all {row['seats']} seat(s) of the licence for {row['model_name']} {row['model_version']} are taken"
                        )
                    conn.execute(act.insert().values(
                        licence_id=row["id"], seat=free, device=dev, first_activated=when, last_activated=when,
                        activations=1, client=subject,
                    ))  # fmt: skip
                return Activation(_record(row, len(taken) + 1), free, False)
            except (IntegrityError, OperationalError):
                # a unique constraint (the lock makes this unreachable) or a lock timeout /
                # serialisation failure: nothing was committed, try again
                if attempt == _RETRIES - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- helpers ----------------------------------------------------------------------
    @property
    def _sa(self) -> Any:
        import sqlalchemy

        return sqlalchemy

    def _records(self, licence_id: str | None) -> list[LicenceRecord]:
        sa, t = self._sa, self._tables
        lic, act = t.licences, t.activations
        used = sa.select(act.c.licence_id, sa.func.count().label("used")).group_by(act.c.licence_id).subquery()
        query = sa.select(lic, sa.func.coalesce(used.c.used, 0).label("used")).outerjoin(used, used.c.licence_id == lic.c.id)
        if licence_id is not None:
            query = query.where(lic.c.id == licence_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(lic.c.created, lic.c.id)).mappings().all()
        return [_record(r, int(r["used"])) for r in rows]


def _record(row: Any, used: int) -> LicenceRecord:
    return LicenceRecord(
        licence_id=row["id"], model_name=row["model_name"], model_version=row["model_version"],
        licensee=row["licensee"], seats=row["seats"], expires=_dt(row["expires"]), created=_dt(row["created"]),
        revoked=None if row["revoked"] is None else _dt(row["revoked"]), revoke_reason=row["revoke_reason"],
        seats_used=used,
    )  # fmt: skip


@dataclass(frozen=True)
class _Tables:
    metadata: Any
    licences: Any
    activations: Any


def _tables(sa: Any) -> _Tables:
    metadata = sa.MetaData()
    licences = sa.Table(
        "tensorseal_licences", metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("model_version", sa.String(256), nullable=False),
        sa.Column("licensee", sa.String(256), nullable=False),
        sa.Column("seats", sa.Integer, nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("revoked", sa.BigInteger, nullable=True),
        sa.Column("revoke_reason", sa.String(256), nullable=True),
        sa.CheckConstraint("seats >= 1", name="tensorseal_licences_seats"),
    )  # fmt: skip
    activations = sa.Table(
        "tensorseal_activations", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("licence_id", sa.String(32), sa.ForeignKey("tensorseal_licences.id"), nullable=False),
        sa.Column("seat", sa.Integer, nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("first_activated", sa.BigInteger, nullable=False),
        sa.Column("last_activated", sa.BigInteger, nullable=False),
        sa.Column("activations", sa.Integer, nullable=False),
        sa.Column("client", sa.String(1024), nullable=True),
        sa.UniqueConstraint("licence_id", "seat", name="tensorseal_activations_seat"),
        sa.UniqueConstraint("licence_id", "device", name="tensorseal_activations_device"),
        sa.CheckConstraint("seat >= 1", name="tensorseal_activations_seat_positive"),
    )  # fmt: skip
    return _Tables(metadata, licences, activations)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # let SQLAlchemy's "begin" event emit BEGIN IMMEDIATE instead of pysqlite's deferred BEGIN
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
        cursor.execute("PRAGMA synchronous=FULL")  # a commit survives a power loss, not only a crash
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
    finally:
        cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock first: seat counts cannot race
