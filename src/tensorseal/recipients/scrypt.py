"""Passphrase recipient/identity (scrypt), age-style.

Stanza ``scrypt``: args = [base64 16-byte salt, decimal log2(N)]; wrap key =
scrypt(passphrase, salt = "tensorseal/v1/scrypt" | salt, N = 2^logN, r = 8, p = 1, 32
bytes); body = the file key sealed with ChaCha20-Poly1305. A passphrase stanza must be the
only stanza of a file, so a passphrase cannot silently sit beside a public key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import FormatError, IncorrectIdentityError, UsageError, WorkFactorError
from ..format.header import Stanza, b64encode
from .base import NO_CONTEXT, KeyContext, b64arg, open_key, seal_key

STANZA_TYPE = "scrypt"
SALT_LABEL = b"tensorseal/v1/scrypt"
SALT_SIZE = 16
DEFAULT_WORK_FACTOR = 18  # N = 2^18: about a second and 256 MiB, as age
MAX_WORK_FACTOR = 22


_WORK_FACTOR = re.compile(r"[1-9]|[12][0-9]|30")  # ASCII digits, no leading zero


def _derive(passphrase: bytes, salt: bytes, log_n: int) -> bytes:
    return Scrypt(SALT_LABEL + salt, 32, 1 << log_n, 8, 1).derive(passphrase)


class Passphrase:
    """A passphrase that wraps (with ``work_factor``) and unwraps (up to ``max_work_factor``)."""

    def __init__(
        self, passphrase: str | bytes, *, work_factor: int = DEFAULT_WORK_FACTOR, max_work_factor: int = MAX_WORK_FACTOR
    ) -> None:
        if not passphrase:
            raise UsageError("the passphrase is empty")
        if not 1 <= work_factor <= 30:
            raise UsageError(f"scrypt work factor {work_factor} outside 1..30")
        self._passphrase = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
        self.work_factor = work_factor
        self.max_work_factor = max_work_factor

    def __repr__(self) -> str:
        return f"Passphrase(<secret>, work_factor={self.work_factor})"

    def audit_info(self) -> dict[str, str | None]:
        """How audit records name this key (tensorseal.audit): stanza type and no key id."""
        return {"kind": STANZA_TYPE, "key_id": None}

    def wrap(self, file_key: bytes, context: KeyContext = NO_CONTEXT) -> list[Stanza]:
        """Wrap ``file_key``; ``context`` is not used by this key type."""
        return [self._wrap_with(file_key, os.urandom(SALT_SIZE))]

    def _wrap_with(self, file_key: bytes, salt: bytes) -> Stanza:
        wrap_key = _derive(self._passphrase, salt, self.work_factor)
        return Stanza(STANZA_TYPE, (b64encode(salt), str(self.work_factor)), seal_key(wrap_key, file_key))

    def unwrap(self, stanzas: Sequence[Stanza], context: KeyContext = NO_CONTEXT) -> bytes:
        for stanza in stanzas:
            if stanza.type != STANZA_TYPE:
                continue
            if len(stanzas) != 1:
                raise FormatError("a passphrase stanza must be the only recipient of a file")
            if len(stanza.args) != 2:
                raise FormatError("scrypt stanza must have two arguments")
            salt = b64arg(stanza.args[0], SALT_SIZE, "scrypt salt")
            if not _WORK_FACTOR.fullmatch(stanza.args[1]):
                raise FormatError("scrypt work factor must be a decimal integer in 1..30")
            log_n = int(stanza.args[1])
            if log_n > self.max_work_factor:
                raise WorkFactorError(
                    f"scrypt work factor {log_n} is above the limit {self.max_work_factor}",
                    hint="raise max_work_factor if you trust this file",
                )
            file_key = open_key(_derive(self._passphrase, salt, log_n), stanza.body)
            if file_key is None:
                raise IncorrectIdentityError("wrong passphrase")
            return file_key
        raise IncorrectIdentityError("no passphrase stanza in this file")
