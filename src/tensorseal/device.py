"""Device fingerprints for offline licences (``tensorseal device-id``).

The fingerprint is derived from the operating system's machine id, never the id itself:

* Linux: ``/etc/machine-id``, else ``/var/lib/dbus/machine-id`` (systemd / D-Bus);
* macOS: ``IOPlatformUUID`` of ``IOPlatformExpertDevice`` (``ioreg``);
* Windows: ``HKLM\\SOFTWARE\\Microsoft\\Cryptography\\MachineGuid`` (64-bit registry view).

The id (128 bits, written as hex with or without dashes) becomes
``fingerprint = HMAC-SHA256(key = id's 16 bytes, message = "tensorseal/v1/device-fingerprint")``,
as systemd asks applications to do (``sd_id128_get_machine_app_specific``): the raw id,
which other software may use for its own purposes, is not exposed, and fingerprints
computed by tensorseal cannot be linked to those of other applications. The fingerprint
is not a secret (the customer sends it to the vendor); it is written ``tsealdev1...``
(base32 with a checksum, like the key strings, so a typo is caught).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidKeyError, LicenceError
from .recipients.base import decode_key_string, encode_key_string

__all__ = ["FINGERPRINT_PREFIX", "DeviceFingerprint", "this_device"]

FINGERPRINT_PREFIX = "tsealdev1"
FINGERPRINT_LABEL = b"tensorseal/v1/device-fingerprint"
LINUX_MACHINE_ID_PATHS = ("/etc/machine-id", "/var/lib/dbus/machine-id")
_HINT = "licences need a stable machine id (Linux /etc/machine-id, macOS IOPlatformUUID, Windows MachineGuid)"


@dataclass(frozen=True)
class DeviceFingerprint:
    """A device's 32-byte fingerprint. Build with :meth:`parse`, :meth:`from_machine_id`
    or :func:`this_device`."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise InvalidKeyError("a device fingerprint is 32 bytes")

    @classmethod
    def parse(cls, text: str) -> DeviceFingerprint:
        """Parse ``tsealdev1...`` (the output of ``tensorseal device-id``). Raises InvalidKeyError."""
        return cls(decode_key_string(FINGERPRINT_PREFIX, text, 32, "device fingerprint"))

    @classmethod
    def from_machine_id(cls, machine_id: str) -> DeviceFingerprint:
        """The fingerprint of a machine id (32 hex digits, dashes allowed, any case).

        Raises LicenceError if the id is not 128 bits of hex or is all zeros.
        """
        digits = machine_id.strip().replace("-", "").lower()
        if not re.fullmatch(r"[0-9a-f]{32}", digits) or set(digits) == {"0"}:
            raise LicenceError("the machine id is not a 128-bit hexadecimal id", hint=_HINT)
        return cls(hmac.new(bytes.fromhex(digits), FINGERPRINT_LABEL, hashlib.sha256).digest())

    def __str__(self) -> str:
        return encode_key_string(FINGERPRINT_PREFIX, self.raw, upper=False)

    def __repr__(self) -> str:
        return f"DeviceFingerprint({str(self)!r})"


def this_device() -> DeviceFingerprint:
    """This machine's fingerprint. Raises LicenceError if the platform's machine id cannot
    be read (unknown platform, missing or uninitialised id)."""
    if sys.platform.startswith("linux"):
        return DeviceFingerprint.from_machine_id(_linux_machine_id(LINUX_MACHINE_ID_PATHS))
    if sys.platform == "darwin":
        return DeviceFingerprint.from_machine_id(_macos_platform_uuid())
    if sys.platform == "win32":
        return DeviceFingerprint.from_machine_id(_windows_machine_guid())
    raise LicenceError(f"reading the machine id is not supported on {sys.platform}", hint=_HINT)


def _linux_machine_id(paths: Sequence[str | os.PathLike[str]]) -> str:
    """The first readable, initialised machine id among ``paths``. Raises LicenceError."""
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read(128)
        except OSError:
            continue
        text = data.decode("ascii", "replace").strip()
        if re.fullmatch(r"[0-9a-fA-F]{32}", text) and set(text) != {"0"}:
            return text
    raise LicenceError("no initialised machine id in " + " or ".join(os.fspath(p) for p in paths), hint=_HINT)


def _macos_platform_uuid() -> str:
    try:
        out = subprocess.run(
            ["/usr/sbin/ioreg", "-rd1", "-c", "IOPlatformExpertDevice"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        raise LicenceError("cannot run ioreg to read IOPlatformUUID", hint=_HINT) from None
    match = re.search(r'"IOPlatformUUID"\s*=\s*"([0-9A-Fa-f-]{36})"', out)
    if match is None:
        raise LicenceError("ioreg reported no IOPlatformUUID", hint=_HINT)
    return match.group(1)


def _windows_machine_guid() -> str:
    import winreg  # type: ignore[import-not-found,unused-ignore]  # Windows only

    try:
        access = winreg.KEY_READ | winreg.KEY_WOW64_64KEY
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography", 0, access) as key:
            value, _ = winreg.QueryValueEx(key, "MachineGuid")
    except OSError:
        raise LicenceError("cannot read MachineGuid from the registry", hint=_HINT) from None
    if not isinstance(value, str):
        raise LicenceError("MachineGuid in the registry is not a string", hint=_HINT)
    return value
