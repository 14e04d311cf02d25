"""Offline device licences: a signed ~1 KB blob that opens one model version on one device.

The vendor seals a model version to its master key (:class:`~.master.MasterKey`, MCK) and
issues a licence per customer device (:func:`issue_licence`): a random licence key
(``TSEAL-LICENCE-KEY-1...``, given to the customer) and the device's fingerprint
(``tensorseal device-id``) give a user key

    UK = HKDF-SHA256(ikm = fingerprint ‖ licence key, salt = s, info = "tensorseal/v1/licence-user-key")

under which the blob carries the MCK; the blob is signed by the vendor's Ed25519 key.
:class:`LicenceIdentity` checks the signature (against trusted vendor keys), the expiry,
the device, opens the MCK and then the file's ``licence`` stanza. Blob layout
(big-endian; docs/KEYS.md "Offline licences"):

    magic "TSEALLIC" (8) | version u16 = 1 | licence id (16) | issued u64 | expires u64
    | MCK key id (16) | salt s (16) | device check (16) | model name, model version,
    licensee (each u16 length + UTF-8, 1..256 bytes) | wrapped MCK (48) | vendor key (32)
    | signature (64)

``device check = HKDF(fingerprint, s, "licence-device-check", 16 bytes)`` tells a wrong
device from a wrong licence key (fingerprints are not secret); the wrapped MCK is
ChaCha20-Poly1305(UK, nonce 0^12, MCK, aad = every byte before it); the signature is
Ed25519 over ``"tensorseal/v1/licence" ‖`` every byte before it. Times are Unix seconds
(UTC); the licence opens while ``now < expires``.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ..device import DeviceFingerprint, this_device
from ..errors import (
    FormatError,
    IncorrectIdentityError,
    InvalidKeyError,
    LicenceError,
    LicenceExpiredError,
    LimitExceededError,
    SignatureError,
    TrailingDataError,
    TruncatedError,
    UnsupportedVersionError,
    UsageError,
    WrongDeviceError,
    WrongLicenceKeyError,
)
from ..format.constants import KEY_SIZE, MAX_IDENTITY_FIELD, NONCE_SIZE
from ..format.header import ModelIdentity, Stanza
from ..format.keys import hkdf
from ..format.signatures import Signature
from ..signing import SigningKey, VerifyingKey, to_verifying_keys
from .base import NO_CONTEXT, KeyContext, decode_key_string, encode_key_string
from .master import KEY_ID_SIZE, STANZA_TYPE, MasterKey

__all__ = [
    "LICENCE_KEY_PREFIX",
    "IssuedLicence",
    "Licence",
    "LicenceIdentity",
    "LicenceKey",
    "issue_licence",
]

LICENCE_KEY_PREFIX = "TSEAL-LICENCE-KEY-1"
MAGIC = b"TSEALLIC"
FORMAT_VERSION = 1
SIGNATURE_CONTEXT = b"tensorseal/v1/licence"
ID_SIZE = SALT_SIZE = CHECK_SIZE = 16
WRAPPED_MCK_SIZE = KEY_SIZE + 16
MAX_FIELD = MAX_IDENTITY_FIELD  # model name, model version, licensee: 1..256 bytes of UTF-8
_FIXED = 8 + 2 + ID_SIZE + 8 + 8 + KEY_ID_SIZE + SALT_SIZE + CHECK_SIZE + 3 * 2 + WRAPPED_MCK_SIZE + 32 + 64
MIN_LICENCE_SIZE = _FIXED + 3
MAX_LICENCE_SIZE = 1024  # checked before parsing; the largest valid blob is _FIXED + 3 * 256 = 1006
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z
assert _FIXED + 3 * MAX_FIELD <= MAX_LICENCE_SIZE


class LicenceKey:
    """The customer's secret licence key (32 random bytes), ``TSEAL-LICENCE-KEY-1...``."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise InvalidKeyError(f"a licence key is {KEY_SIZE} bytes")
        self._key = bytes(key)

    @classmethod
    def generate(cls) -> LicenceKey:
        return cls(os.urandom(KEY_SIZE))

    @classmethod
    def parse(cls, text: str) -> LicenceKey:
        """Parse ``TSEAL-LICENCE-KEY-1...``. Raises InvalidKeyError."""
        return cls(decode_key_string(LICENCE_KEY_PREFIX, text, KEY_SIZE, "licence key"))

    def __str__(self) -> str:
        return encode_key_string(LICENCE_KEY_PREFIX, self._key, upper=True)

    def __repr__(self) -> str:
        return "LicenceKey(<secret>)"

    def secret_bytes(self) -> bytes:
        """The raw 32-byte key. Handle as a secret."""
        return self._key


def _user_key(device: DeviceFingerprint, key: LicenceKey, salt: bytes) -> bytes:
    return hkdf(device.raw + key.secret_bytes(), salt, "licence-user-key")


def _device_check(device: DeviceFingerprint, salt: bytes) -> bytes:
    return hkdf(device.raw, salt, "licence-device-check", CHECK_SIZE)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _seconds(value: datetime, what: str) -> int:
    """Unix seconds of ``value`` (naive: UTC). Raises UsageError outside 1970..9999."""
    seconds = int(_utc(value).timestamp())
    if not 0 <= seconds <= MAX_TIME:
        raise UsageError(f"the licence {what} time is out of range")
    return seconds


def _text_field(value: str, what: str) -> bytes:
    if not isinstance(value, str) or not value or not value.isprintable():
        raise UsageError(f"the {what} must be a non-empty string of printable characters")
    raw = value.encode("utf-8")  # printable: no lone surrogates
    if len(raw) > MAX_FIELD:
        raise UsageError(f"the {what} is longer than {MAX_FIELD} bytes")
    return raw


@dataclass(frozen=True)
class Licence:
    """A parsed licence whose vendor signature verified. Build with :meth:`parse`."""

    licence_id: bytes
    issued: datetime
    expires: datetime
    master_key_id: bytes
    model: ModelIdentity
    licensee: str
    vendor: VerifyingKey
    salt: bytes = field(repr=False)
    device_check: bytes = field(repr=False)
    wrapped_master: bytes = field(repr=False)
    aad: bytes = field(repr=False)  # every byte before the wrapped MCK

    @classmethod
    def parse(cls, blob: bytes, trusted_vendors: Iterable[VerifyingKey | str] | VerifyingKey | str) -> Licence:
        """Parse ``blob`` strictly and verify its signature by one of ``trusted_vendors``.

        Raises LimitExceededError (over 1024 bytes, or a field over 256 bytes),
        TruncatedError, TrailingDataError, UnsupportedVersionError, FormatError (not a
        licence, malformed field), SignatureError (signed by an untrusted key, or modified),
        UsageError / InvalidKeyError (no or malformed trusted vendor keys).
        """
        trusted = to_verifying_keys(trusted_vendors)
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise UsageError("a licence is bytes (read the licence file)")
        blob = bytes(blob)
        if len(blob) > MAX_LICENCE_SIZE:
            raise LimitExceededError(f"a licence is at most {MAX_LICENCE_SIZE} bytes, got {len(blob)}")
        if blob[: len(MAGIC)] != MAGIC[: len(blob)]:
            raise FormatError("not a tensorseal licence (bad magic)", hint="pass the licence file the vendor issued")
        if len(blob) < len(MAGIC) + 2:
            raise TruncatedError("the licence ends early")
        (version,) = struct.unpack_from(">H", blob, len(MAGIC))
        if version != FORMAT_VERSION:
            raise UnsupportedVersionError(f"licence format version {version} is not supported (this reader knows 1)")
        r = _Reader(blob, len(MAGIC) + 2)
        licence_id = r.take(ID_SIZE)
        issued, expires = struct.unpack(">QQ", r.take(16))
        key_id, salt, check = r.take(KEY_ID_SIZE), r.take(SALT_SIZE), r.take(CHECK_SIZE)
        name, version_text, licensee = r.text("model name"), r.text("model version"), r.text("licensee")
        aad_end = r.pos
        wrapped, vendor_raw = r.take(WRAPPED_MCK_SIZE), r.take(32)
        signed_end = r.pos
        signature = r.take(64)
        if r.pos != len(blob):
            raise TrailingDataError(f"the licence has {len(blob) - r.pos} bytes after its signature")
        vendor = next((k for k in trusted if k.raw == vendor_raw), None)
        if vendor is None:
            raise SignatureError(
                "the licence is signed by a vendor key that is not trusted",
                hint="pass the vendor's public key tsealpub1... (--vendor)",
            )
        if not vendor.verifies(Signature("ed25519", vendor_raw, signature), blob[:signed_end], SIGNATURE_CONTEXT):
            raise SignatureError(
                "the licence signature does not verify: the licence was modified",
                hint="ask the vendor for the licence file again",
            )
        # signed by a trusted vendor from here on
        if not (0 <= issued < expires <= MAX_TIME) or not licensee.isprintable():
            raise FormatError("the licence has an invalid time range or licensee")
        return cls(
            licence_id=licence_id, issued=datetime.fromtimestamp(issued, timezone.utc),
            expires=datetime.fromtimestamp(expires, timezone.utc), master_key_id=key_id,
            model=ModelIdentity(name=name, version=version_text), licensee=licensee, vendor=vendor,
            salt=salt, device_check=check, wrapped_master=wrapped, aad=blob[:aad_end],
        )  # fmt: skip

    def check_expiry(self, now: datetime | None = None) -> None:
        """Raises LicenceExpiredError if ``now`` (default: this machine's clock, UTC) is at or past the expiry."""
        current = datetime.now(timezone.utc) if now is None else _utc(now)
        if current >= self.expires:
            raise LicenceExpiredError(
                f"the licence for {self.model.name} {self.model.version} expired on {self.expires.isoformat()}"
            )

    def open_master_key(self, device: DeviceFingerprint, licence_key: LicenceKey) -> MasterKey:
        """The MCK, if this licence is for ``device`` and ``licence_key`` opens it.

        Raises WrongDeviceError, WrongLicenceKeyError, LicenceError (the MCK does not match
        its key id: the vendor issued an inconsistent licence).
        """
        if not hmac.compare_digest(_device_check(device, self.salt), self.device_check):
            raise WrongDeviceError(
                f"the licence for {self.model.name} {self.model.version} was issued for another device"
            )
        try:
            raw = ChaCha20Poly1305(_user_key(device, licence_key, self.salt)).decrypt(
                bytes(NONCE_SIZE), self.wrapped_master, self.aad
            )
        except InvalidTag:
            raise WrongLicenceKeyError("the licence key does not open this licence (the device matches)") from None
        assert self.model.name is not None and self.model.version is not None
        master = MasterKey(raw, self.model.name, self.model.version)
        if not hmac.compare_digest(master.key_id, self.master_key_id):
            raise LicenceError("the licence's master key does not match its key id")
        return master


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise TruncatedError("the licence ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def text(self, what: str) -> str:
        (n,) = struct.unpack(">H", self.take(2))
        if n > MAX_FIELD:
            raise LimitExceededError(f"the licence's {what} is longer than {MAX_FIELD} bytes")
        if n == 0:
            raise FormatError(f"the licence's {what} is empty")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"the licence's {what} is not valid UTF-8") from None


class IssuedLicence(NamedTuple):
    blob: bytes  # the licence file's content (not secret)
    licence_key: LicenceKey  # the customer's secret
    licence: Licence


def issue_licence(
    master: MasterKey,
    vendor: SigningKey,
    *,
    licensee: str,
    device: DeviceFingerprint | str,
    expires: datetime,
    licence_key: LicenceKey | str | None = None,
    now: datetime | None = None,
) -> IssuedLicence:
    """Issue a licence for ``master``'s model version on ``device`` until ``expires``
    (naive datetimes are UTC), signed by ``vendor``. A fresh licence key is generated
    unless one is given (e.g. to renew a customer's licence under the key they have).

    Raises UsageError (expiry not after now, bad licensee), InvalidKeyError (malformed
    fingerprint or licence key string).
    """
    fingerprint = DeviceFingerprint.parse(device) if isinstance(device, str) else device
    key = LicenceKey.parse(licence_key) if isinstance(licence_key, str) else licence_key or LicenceKey.generate()
    issued = datetime.now(timezone.utc) if now is None else now
    return _issue_from_parts(
        master, vendor, licensee, fingerprint, key, issued, expires, os.urandom(ID_SIZE), os.urandom(SALT_SIZE)
    )


def _issue_from_parts(
    master: MasterKey, vendor: SigningKey, licensee: str, device: DeviceFingerprint, key: LicenceKey,
    issued: datetime, expires: datetime, licence_id: bytes, salt: bytes,
) -> IssuedLicence:  # fmt: skip
    """Deterministic entry point for test vectors."""
    issued_s, expires_s = _seconds(issued, "issue"), _seconds(expires, "expiry")
    if expires_s <= issued_s:
        raise UsageError("the licence expiry must be after its issue time")
    fields = [
        _text_field(master.name, "model name"),
        _text_field(master.version, "model version"),
        _text_field(licensee, "licensee"),
    ]
    aad = b"".join(
        [MAGIC, struct.pack(">H", FORMAT_VERSION), licence_id, struct.pack(">QQ", issued_s, expires_s),
         master.key_id, salt, _device_check(device, salt)]
        + [struct.pack(">H", len(f)) + f for f in fields]
    )  # fmt: skip
    wrapped = ChaCha20Poly1305(_user_key(device, key, salt)).encrypt(bytes(NONCE_SIZE), master.secret_bytes(), aad)
    signed = aad + wrapped + vendor.public_key().raw
    blob = signed + vendor.sign(signed, SIGNATURE_CONTEXT).sig
    return IssuedLicence(blob, key, Licence.parse(blob, [vendor.public_key()]))


class LicenceIdentity:
    """Opens files sealed to a model version's master key, on the licensed device, with
    the licence key, until the licence expires.

    Construction checks everything that can be checked without a file: the vendor
    signature (against ``trusted_vendors``: ``tsealpub1...`` strings or VerifyingKeys),
    the expiry (``now``: a fixed time or a zero-argument clock, for tests; default this
    machine's clock, read at each check), the device (``fingerprint``: default this machine's, ``tensorseal device-id``)
    and the licence key. :meth:`unwrap` checks the expiry again.

    Raises the errors of :meth:`Licence.parse`, LicenceExpiredError, WrongDeviceError,
    WrongLicenceKeyError, LicenceError (no readable machine id), InvalidKeyError
    (malformed licence key or fingerprint string).
    """

    def __init__(
        self,
        blob: bytes,
        licence_key: LicenceKey | str,
        *,
        trusted_vendors: Iterable[VerifyingKey | str] | VerifyingKey | str,
        fingerprint: DeviceFingerprint | str | None = None,
        now: datetime | Callable[[], datetime] | None = None,
    ) -> None:
        self.licence = Licence.parse(blob, trusted_vendors)
        self._now = now
        self.licence.check_expiry(self._time())
        key = LicenceKey.parse(licence_key) if isinstance(licence_key, str) else licence_key
        if not isinstance(key, LicenceKey):
            raise UsageError("licence_key must be a LicenceKey or a TSEAL-LICENCE-KEY-1... string")
        if fingerprint is None:
            device = this_device()
        else:
            device = DeviceFingerprint.parse(fingerprint) if isinstance(fingerprint, str) else fingerprint
        self._master = self.licence.open_master_key(device, key)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        licence_key: LicenceKey | str,
        *,
        trusted_vendors: Iterable[VerifyingKey | str] | VerifyingKey | str,
        fingerprint: DeviceFingerprint | str | None = None,
        now: datetime | Callable[[], datetime] | None = None,
    ) -> LicenceIdentity:
        """Read a licence file (at most 1024 bytes) and build the identity. Raises OSError
        and the errors of the constructor."""
        with open(path, "rb") as f:
            blob = f.read(MAX_LICENCE_SIZE + 1)
        return cls(blob, licence_key, trusted_vendors=trusted_vendors, fingerprint=fingerprint, now=now)

    def __repr__(self) -> str:
        lic = self.licence
        model = f"{lic.model.name} {lic.model.version}"
        return f"LicenceIdentity(model={model!r}, licensee={lic.licensee!r}, expires={lic.expires.isoformat()!r})"

    def audit_info(self) -> dict[str, str | None]:
        """How audit records name this identity (tensorseal.audit): stanza type and
        ``<master key id>/<licence id>`` (hex), which tells which licence opened a file."""
        return {"kind": STANZA_TYPE, "key_id": f"{self.licence.master_key_id.hex()}/{self.licence.licence_id.hex()}"}

    def unwrap(self, stanzas: Sequence[Stanza], context: KeyContext = NO_CONTEXT) -> bytes:
        """Open the file's ``licence`` stanza for this licence's master key.

        Raises IncorrectIdentityError (the file is for another model version or master
        key), LicenceExpiredError, FormatError, HeaderAuthenticationError (see
        :meth:`MasterKey.unwrap`).
        """
        try:
            file_key = self._master.unwrap(stanzas, context)
        except IncorrectIdentityError:
            m = self.licence.model
            raise IncorrectIdentityError(
                f"the licence is for {m.name} {m.version}: the file is not sealed to its master key"
            ) from None
        self.licence.check_expiry(self._time())
        return file_key

    def _time(self) -> datetime | None:
        return self._now() if callable(self._now) else self._now
