"""Helpers shared by the key-service recipients (AWS KMS, Vault, GCP, Azure, OS keyring).

Each service module is a pair of a key class (both recipient and identity: the key lives
in the service, so the same object wraps and unwraps) and a stanza type whose args name
the key, so that :func:`tensorseal.recipients.ambient_identities` can build an identity
from the stanza alone, with credentials taken from the environment.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Sequence
from types import ModuleType

from ..errors import FormatError, InvalidKeyError, KeyServiceError, UsageError
from ..format.constants import KEY_SIZE
from ..format.header import Stanza

MAX_ARG = 1024  # FORMAT.md 6.1: each stanza argument is at most 1024 bytes


def import_sdk(module: str, package: str, extra: str) -> ModuleType:
    """Import an optional SDK; raises UsageError with an install hint if it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(
            f"this key type needs the {package} package, which is not installed",
            hint=f"pip install 'tensorseal[{extra}]'",
        ) from None


def sdk_available(module: str) -> bool:
    """Whether an optional SDK is installed (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def strip_prefix(text: str, prefix: str, what: str) -> str:
    """The part of a recipient string after ``prefix``. Raises InvalidKeyError."""
    text = text.strip()
    if not text.lower().startswith(prefix):
        raise InvalidKeyError(f"{what} recipient must start with {prefix!r}")
    rest = text[len(prefix) :]
    check_name(rest, what)
    return rest


def check_name(value: str, what: str) -> None:
    """A key name that fits in one stanza argument: non-empty, printable, <= 1024 bytes.

    Raises InvalidKeyError.
    """
    if not value or not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidKeyError(f"{what} key name is empty or has spaces or control characters")
    if len(value.encode("utf-8")) > MAX_ARG:
        raise InvalidKeyError(f"{what} key name is longer than {MAX_ARG} bytes")


def own_stanzas(
    stanzas: Sequence[Stanza], stanza_type: str, nargs: int, mine: Callable[[Stanza], bool]
) -> list[Stanza]:
    """The stanzas of ``stanza_type`` that ``mine`` accepts, after checking their shape.

    Raises FormatError if a stanza of this type has the wrong number of arguments or an
    empty argument or body; IncorrectIdentityError is left to the caller (empty result).
    """
    out = []
    for stanza in stanzas:
        if stanza.type != stanza_type:
            continue
        if len(stanza.args) != nargs or not all(stanza.args) or not stanza.body:
            raise FormatError(f"{stanza_type} stanza must have {nargs} non-empty argument(s) and a body")
        if mine(stanza):
            out.append(stanza)
    return out


def first_that_opens(stanzas: Sequence[Stanza], open_one: Callable[[Stanza], bytes]) -> bytes:
    """Try ``open_one`` on each stanza in file order; the first file key wins.

    A KeyServiceError on one stanza (that key is unreachable or refused) moves on to the
    next; if none opens, the first such error is raised. Any other error is fatal.
    """
    refused: KeyServiceError | None = None
    for stanza in stanzas:
        try:
            return open_one(stanza)
        except KeyServiceError as exc:
            refused = refused or exc
    assert refused is not None, "first_that_opens needs at least one stanza"
    raise refused


def check_file_key(key: bytes, what: str) -> bytes:
    """The unwrapped file key, which must be 32 bytes. Raises FormatError."""
    key = bytes(key)
    if len(key) != KEY_SIZE:
        raise FormatError(f"{what} returned {len(key)} bytes, not a {KEY_SIZE}-byte file key")
    return key
