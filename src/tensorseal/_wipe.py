"""Best-effort wiping of key material held in mutable buffers.

Only a ``bytearray`` can be wiped: ``bytes`` objects (what ``os.urandom``, ``cryptography``
and the key-service SDKs return) are immutable and are freed without being zeroed. What is
and is not wiped is listed in docs/SECURITY.md, "Key hygiene".
"""

from __future__ import annotations


def wipe(buf: bytearray | None) -> None:
    """Overwrite ``buf`` with zeros, in place (its length is kept). ``None``: nothing. Raises nothing."""
    if buf is not None:
        buf[:] = bytes(len(buf))
