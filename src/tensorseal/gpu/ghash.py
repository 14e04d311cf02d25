"""GCM tags checked from the ciphertext alone, without decrypting (NIST SP 800-38D).

AES-GCM is CTR encryption plus a tag ``T = E_K(J0) xor GHASH_H(A, C)``. GHASH reads the
associated data ``A`` and the ciphertext ``C``, both zero-padded to 16 bytes, then the
length block ``L = [8 len(A)]_64 || [8 len(C)]_64``. ``cryptography`` computes exactly the
same function when ``A' = A || pad || C`` is given as associated data with an empty
plaintext: the blocks are the same, only the length block differs,
``L' = [8 len(A')]_64 || [0]_64``. GHASH ends with ``X = (X_prev xor L) . H``, which is
linear in ``L``, so

    T = T' xor ((L xor L') . H),        H = E_K(0^128)

in GCM's bit-reflected GF(2^128). ``T'`` is the tag of the "AAD only" call, computed by
``cryptography`` (OpenSSL, GIL released); the correction is one field multiplication per
distinct segment length, cached. This is not a new construction: it is GCM's own tag
with a documented linear correction, and ``tests/test_gpu_pipeline.py`` checks it against
``AESGCM`` on random keys, nonces, associated data and lengths.

The point is the GPU path: the host verifies every tag from the ciphertext it has just
read into a staging buffer while the GPU decrypts the same bytes with AES-CTR, so no
plaintext ever exists in host memory.
"""

from __future__ import annotations

import hmac
import threading

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_R = 0xE1 << 120  # x^128 + x^7 + x^2 + x + 1, bit-reflected
_MASK64 = (1 << 64) - 1

BytesLike = bytes | bytearray | memoryview


def gf_mul(x: int, y: int) -> int:
    """Product of two GF(2^128) elements in GCM's bit order (block bytes read big-endian:
    the first bit of the block is the most significant bit of the int). Raises nothing."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _pad16(n: int) -> int:
    return -n % 16


class GcmTagChecker:
    """Verifies AES-256-GCM tags of ``(nonce, ciphertext)`` pairs under one key and one
    associated data, reading only the ciphertext. Thread-safe.

    ``key`` must be 32 bytes (``cryptography`` raises ValueError otherwise; callers pass
    the file's data key, already checked).
    """

    def __init__(self, key: bytes, aad: bytes) -> None:
        self._key = key
        self._algorithm = algorithms.AES(key)
        enc = Cipher(self._algorithm, modes.ECB()).encryptor()
        self._h = int.from_bytes(enc.update(bytes(16)) + enc.finalize(), "big")
        self._prefix = bytes(aad) + bytes(_pad16(len(aad)))  # A || zero padding: ends on a block
        self._alen = len(aad)
        self._corrections: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def correction(self, length: int) -> bytes:
        """``(L xor L') . H`` for a ciphertext of ``length`` bytes, as 16 bytes."""
        c = self._corrections.get(length)
        if c is None:
            real = ((self._alen * 8) << 64) | (length * 8)
            fed = (((len(self._prefix) + length) * 8) & _MASK64) << 64
            c = gf_mul(real ^ fed, self._h).to_bytes(16, "big")
            with self._lock:
                self._corrections[length] = c
        return c

    def tag(self, nonce: bytes, ciphertext: BytesLike) -> bytes:
        """The GCM tag of ``ciphertext`` (as ``AESGCM.encrypt`` would append it)."""
        enc = Cipher(self._algorithm, modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(self._prefix)
        n = memoryview(ciphertext).nbytes
        if n:
            enc.authenticate_additional_data(ciphertext)
        enc.finalize()
        fed = int.from_bytes(enc.tag, "big")
        return (fed ^ int.from_bytes(self.correction(n), "big")).to_bytes(16, "big")

    def verify(self, nonce: bytes, ciphertext: BytesLike, tag: bytes) -> bool:
        """True if ``tag`` is the GCM tag of ``ciphertext``; compared in constant time."""
        return hmac.compare_digest(self.tag(nonce, ciphertext), tag)


class GmacChecker:
    """Verifies the tags of segments stored in clear (FORMAT 10.5): GCM with an empty
    plaintext over ``aad || segment``, fed to ``cryptography`` in two calls (no copy)."""

    def __init__(self, key: bytes, aad: bytes) -> None:
        self._algorithm = algorithms.AES(key)
        self._aad = bytes(aad)

    def verify(self, nonce: bytes, segment: BytesLike, tag: bytes) -> bool:
        """True if ``tag`` authenticates ``segment``; compared in constant time."""
        enc = Cipher(self._algorithm, modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(self._aad)
        if memoryview(segment).nbytes:
            enc.authenticate_additional_data(segment)
        enc.finalize()
        return hmac.compare_digest(enc.tag, tag)
