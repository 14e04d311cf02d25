"""Key files: text, one key per line, blank lines and ``#`` comments ignored."""

from __future__ import annotations

import os

from .errors import InvalidKeyError

MAX_KEY_FILE = 1 << 20  # a key file is read up to this size; more is not a key file


def key_lines(path: str | os.PathLike[str], what: str) -> list[str]:
    """The non-comment lines of a key file. Raises InvalidKeyError (not text, or none), OSError."""
    with open(path, "rb") as f:
        data = f.read(MAX_KEY_FILE)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKeyError(f"{os.fspath(path)}: {what} file is not text") from None
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise InvalidKeyError(f"{os.fspath(path)}: no {what} in file")
    return lines


def one_key_line(path: str | os.PathLike[str], what: str) -> str:
    """The single key line of a key file. Raises InvalidKeyError, OSError."""
    lines = key_lines(path, what)
    if len(lines) != 1:
        raise InvalidKeyError(f"{os.fspath(path)}: expected one {what} line, found {len(lines)}")
    return lines[0]
