"""Key files: every kind is read by one helper, and every bad file is a one-line InvalidKeyError."""

from __future__ import annotations

import pytest

from tensorseal.errors import InvalidKeyError
from tensorseal.recipients import SymmetricKey, load_identities, load_recipients
from tensorseal.recipients.master import MasterKey
from tensorseal.signing import SigningKey, load_trusted_signers

READERS = {
    "signing": (SigningKey.from_file, lambda: str(SigningKey.generate())),
    "master": (MasterKey.from_file, lambda: str(MasterKey.generate("m", "1"))),
    "symmetric": (SymmetricKey.from_file, lambda: str(SymmetricKey.generate())),
}


@pytest.mark.parametrize("kind", READERS)
def test_one_key_per_file(kind, tmp_path):
    read, make = READERS[kind]
    good = tmp_path / "good"
    good.write_text(f"# a comment\n\n{make()}\n")
    read(good)
    cases = {
        "two": (f"{make()}\n{make()}\n", "expected one .* line, found 2"),
        "empty": ("# only a comment\n\n", "no .* in file"),
        "binary": (b"\xff\xfe" * 40, "is not text"),
    }
    for name, (content, message) in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(InvalidKeyError, match=message):
            read(bad)


@pytest.mark.parametrize("reader", [load_identities, load_recipients, load_trusted_signers])
def test_lists_of_keys_refuse_empty_and_binary_files(reader, tmp_path):
    empty, binary = tmp_path / "empty", tmp_path / "binary"
    empty.write_text("# nothing\n")
    binary.write_bytes(b"\x00\xff" * 100)
    with pytest.raises(InvalidKeyError, match="no .* in file"):
        reader(empty)
    with pytest.raises(InvalidKeyError, match="not text"):
        reader(binary)
