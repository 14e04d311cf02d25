"""Key schedule of format v1: subkeys, key commitment, header MAC, associated data.

All subkeys come from the 256-bit file key by HKDF-SHA256 with the header's random
salt, one ``info`` label per purpose, so no key is ever used for two jobs.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import HeaderAuthenticationError, KeyCommitmentError
from . import constants as C
from .header import Header, ModelIdentity

_INFO = b"tensorseal/v1/"
_CIPHER_IDS = {"aes-256-gcm": 1, "chacha20-poly1305": 2}
_MODE_IDS = {"tensors": 1, "blob": 2}

AEAD = AESGCM | ChaCha20Poly1305


def hkdf(ikm: bytes, salt: bytes, label: str, length: int = C.KEY_SIZE) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, _INFO + label.encode("ascii")).derive(ikm)


def make_aead(cipher: str, key: bytes) -> AEAD:
    return AESGCM(key) if cipher == "aes-256-gcm" else ChaCha20Poly1305(key)


@dataclass(frozen=True)
class FileKeys:
    """The subkeys of one file. Build with :meth:`derive`. Its repr shows no key."""

    commitment: bytes = field(repr=False)
    mac_key: bytes = field(repr=False)
    index_key: bytes = field(repr=False)
    data_key: bytes = field(repr=False)
    plain_key: bytes = field(repr=False)  # authenticates tensors stored in clear (GMAC / Poly1305 over AAD)

    @classmethod
    def derive(cls, file_key: bytes, salt: bytes) -> FileKeys:
        return cls(
            commitment=hkdf(file_key, salt, "commitment"),
            mac_key=hkdf(file_key, salt, "header-mac"),
            index_key=hkdf(file_key, salt, "index"),
            data_key=hkdf(file_key, salt, "data"),
            plain_key=hkdf(file_key, salt, "plain"),
        )

    def check_commitment(self, header: Header) -> None:
        if not hmac.compare_digest(self.commitment, header.commitment):
            raise KeyCommitmentError("file key does not match the header's key commitment")

    def header_mac(self, authenticated: bytes) -> bytes:
        return hmac.new(self.mac_key, authenticated, hashlib.sha256).digest()

    def check_header_mac(self, authenticated: bytes, mac: bytes) -> None:
        if not hmac.compare_digest(self.header_mac(authenticated), mac):
            raise HeaderAuthenticationError("header MAC does not verify: the header or index was modified")


def identity_digest(identity: ModelIdentity) -> bytes:
    h = hashlib.sha256()
    for value in (identity.name, identity.version, identity.file):
        raw = b"" if value is None else value.encode("utf-8")
        h.update(struct.pack(">I", len(raw)) + raw)
    return h.digest()


def associated_data(header: Header) -> bytes:
    """AAD of the index and of every segment: binds suite, layout unit, salt, model identity."""
    return (
        b"tensorseal/v1"
        + struct.pack(">BBI", _CIPHER_IDS[header.cipher], _MODE_IDS[header.mode], header.segment_size)
        + header.salt
        + identity_digest(header.identity)
    )


INDEX_NONCE = bytes(C.NONCE_SIZE)
