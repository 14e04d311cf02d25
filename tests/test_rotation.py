"""rewrap (new stanzas in the spare head slot, data untouched, crash-safe) and rekey."""

from __future__ import annotations

import os

import numpy as np
import pytest

import tensorseal
import tensorseal.numpy as tsnp
from tensorseal import rotation
from tensorseal.errors import LayoutError, NoIdentityMatchError, SignatureError, UsageError
from tensorseal.format import constants as C
from tensorseal.format.header import slot_offset
from tensorseal.reader import SealedFile
from tensorseal.recipients import SymmetricKey, X25519Identity
from tensorseal.signing import SigningKey

from .conftest import SMALL_SEGMENT, assert_same, sample_tensors

ALICE, BOB, CAROL = X25519Identity.generate(), X25519Identity.generate(), X25519Identity.generate()


@pytest.fixture
def sealed(tmp_path):
    path = tmp_path / "m.tseal"
    tensors = sample_tensors()
    tsnp.save_file(tensors, path, [ALICE.recipient()], segment_size=SMALL_SEGMENT, name="m", version="1")
    return path, tensors


def _data(path):
    with SealedFile(path) as f:
        h = f.header
    raw = path.read_bytes()
    return raw[h.tags_offset : h.data_offset + h.data_length]


def test_rewrap_replaces_the_recipients_in_place(sealed):
    path, tensors = sealed
    before, inode = _data(path), os.stat(path).st_ino
    result = rotation.rewrap(path, [ALICE], recipients=[BOB.recipient()])
    assert result.in_place and (result.kept, result.added, result.removed) == (0, 1, 1)
    assert os.stat(path).st_ino == inode and _data(path) == before  # tags and data untouched
    assert_same(tsnp.load_file(path, [BOB]), tensors)
    with pytest.raises(NoIdentityMatchError):
        tsnp.load_file(path, [ALICE])
    with SealedFile(path) as f:
        assert (f.slot, f.header.generation, f.damaged_slots) == (1, 1, [])
    raw = path.read_bytes()  # the old head is gone, not just superseded
    hlen = int.from_bytes(raw[12:16], "little")
    assert raw[slot_offset(0, hlen) : slot_offset(1, hlen)] == bytes(hlen + C.MAC_SIZE)
    rotation.rewrap(path, [BOB], add=[CAROL.recipient()])  # and back into slot 0
    with SealedFile(path) as f:
        assert (f.slot, f.header.generation, len(f.header.recipients)) == (0, 2, 2)
    for ident in (BOB, CAROL):
        assert_same(tsnp.load_file(path, [ident]), tensors)
    tensorseal.verify_file(path, [CAROL])


def test_rewrap_removes_a_recipient_by_its_identity(sealed):
    path, tensors = sealed
    rotation.rewrap(path, [ALICE], add=[BOB.recipient(), CAROL.recipient()])
    result = rotation.rewrap(path, [ALICE], remove=[BOB])
    assert (result.kept, result.removed) == (2, 1)
    with pytest.raises(NoIdentityMatchError):
        tsnp.load_file(path, [BOB])
    assert_same(tsnp.load_file(path, [CAROL]), tensors)
    with pytest.raises(UsageError, match="matches none"):
        rotation.rewrap(path, [ALICE], remove=[BOB])
    with pytest.raises(UsageError, match="do not name their recipient"):
        rotation.rewrap(path, [ALICE], remove=[CAROL.recipient()])  # an X25519 stanza is unlinkable
    with pytest.raises(UsageError, match="no recipient left"):
        rotation.rewrap(path, [ALICE], remove=[ALICE, CAROL])


def test_rewrap_needs_a_key_that_opens_the_file(sealed):
    path, _ = sealed
    before = path.read_bytes()
    with pytest.raises(NoIdentityMatchError):
        rotation.rewrap(path, [BOB], recipients=[BOB.recipient()])
    assert path.read_bytes() == before


@pytest.mark.parametrize("stop_after", [1, 2, 3])
def test_a_crash_between_steps_leaves_a_valid_file(sealed, stop_after):
    path, tensors = sealed
    rotation.rewrap(path, [ALICE], recipients=[BOB.recipient()], _stop_after=stop_after)
    opener = ALICE if stop_after < 2 else BOB  # the new head counts once it is written
    assert_same(tsnp.load_file(path, [opener]), tensors)
    if stop_after == 2:  # both heads valid: the newer wins, the older still opens
        assert_same(tsnp.load_file(path, [ALICE]), tensors)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 0.99])
def test_a_torn_write_of_either_slot_leaves_a_valid_file(sealed, tmp_path, fraction):
    """Power loss in the middle of writing a slot: a prefix of the new bytes landed."""
    path, tensors = sealed
    old = path.read_bytes()
    new_path = tmp_path / "new.tseal"
    new_path.write_bytes(old)
    rotation.rewrap(new_path, [ALICE], recipients=[BOB.recipient()])
    new = new_path.read_bytes()
    hlen = int.from_bytes(old[12:16], "little")
    size = hlen + C.MAC_SIZE
    s0, s1 = slot_offset(0, hlen), slot_offset(1, hlen)
    cut = int(size * fraction)
    # step 2 torn: slot 1 partly written, slot 0 still the old head -> the old recipients
    torn = bytearray(old)
    torn[s1 : s1 + cut] = new[s1 : s1 + cut]
    path.write_bytes(bytes(torn))
    assert_same(tsnp.load_file(path, [ALICE]), tensors)
    # step 3 torn: slot 1 complete, slot 0 partly zeroed -> the new recipients
    torn = bytearray(new)
    torn[s0 + cut : s0 + size] = old[s0 + cut : s0 + size]
    path.write_bytes(bytes(torn))
    assert_same(tsnp.load_file(path, [BOB]), tensors)
    if 0 < cut:  # a half-cleared old head is a damaged slot: verify reports it, rewrap repairs it
        with pytest.raises(LayoutError, match="slot 0 is damaged"):
            tensorseal.verify_file(path, [BOB])
        rotation.rewrap(path, [BOB])
        tensorseal.verify_file(path, [BOB])


def test_rewrap_drops_signatures_and_can_sign_again(sealed):
    path, tensors = sealed
    key = SigningKey.generate()
    tensorseal.sign_file(path, [key])
    result = rotation.rewrap(path, [ALICE], add=[BOB.recipient()])
    assert result.dropped_signatures == 1
    with pytest.raises(SignatureError, match="not signed"):
        tsnp.load_file(path, [BOB], signers=[key.public_key()])
    tensorseal.sign_file(path, [key])
    assert_same(tsnp.load_file(path, [BOB], signers=[key.public_key()]), tensors)


def test_rewrap_copies_the_file_when_the_header_outgrows_its_slot(tmp_path):
    path = tmp_path / "m.tseal"
    tensors = {"w": np.arange(5000, dtype=np.float32)}
    tsnp.save_file(tensors, path, [ALICE.recipient()], segment_size=SMALL_SEGMENT)
    many = [X25519Identity.generate() for _ in range(40)]  # ~40 x 160 bytes > the 4 KiB reserve
    result = rotation.rewrap(path, [ALICE], add=[i.recipient() for i in many])
    assert not result.in_place and result.added == 40
    for ident in (ALICE, many[-1]):
        assert_same(tsnp.load_file(path, [ident]), tensors)
    tensorseal.verify_file(path, [many[0]])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_rekey_re_encrypts_under_a_new_file_key(tmp_path):
    path = tmp_path / "m.tseal"
    tensors = sample_tensors()
    tsnp.save_file(tensors, path, [ALICE.recipient()], segment_size=SMALL_SEGMENT, plain=["ids"], name="m")
    before = _data(path)
    with SealedFile(path) as f:
        f.unlock([ALICE])
        old_key, old_header = f.file_key, f.header
    new_key = SymmetricKey.generate()
    header = rotation.rekey(path, [ALICE], [new_key])
    with SealedFile(path) as f:
        f.unlock([new_key])
        assert f.file_key != old_key and f.header.salt != old_header.salt
        assert (f.header.plain, f.header.identity, f.header.segment_size) == (old_header.plain, old_header.identity, SMALL_SEGMENT)
    assert header.segment_count == old_header.segment_count
    assert _data(path) != before
    assert_same(tsnp.load_file(path, [new_key]), tensors)
    with pytest.raises(NoIdentityMatchError):
        tsnp.load_file(path, [ALICE])


def test_rekey_of_a_tampered_file_fails_and_keeps_it(tmp_path):
    path = tmp_path / "m.tseal"
    tsnp.save_file(sample_tensors(), path, [ALICE.recipient()], segment_size=SMALL_SEGMENT)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(tensorseal.errors.SegmentAuthenticationError):
        rotation.rekey(path, [ALICE], [BOB.recipient()])
    assert path.read_bytes() == bytes(raw)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_cli_rewrap_and_rekey(tmp_path, capsys):
    from safetensors.numpy import save_file as st_save

    from tensorseal.cli import main

    src = tmp_path / "model.safetensors"
    st_save(sample_tensors(), src)
    keys = {}
    for who in ("alice", "bob"):
        keys[who] = tmp_path / f"{who}.txt"
        assert main(["keygen", "-o", str(keys[who])]) == 0
    capsys.readouterr()
    pub = {}
    for who in keys:
        assert main(["keygen", "-y", str(keys[who])]) == 0
        pub[who] = capsys.readouterr().out.strip()
    sealed = tmp_path / "m.tseal"
    assert main(["encrypt", str(src), "-o", str(sealed), "-r", pub["alice"], "-q"]) == 0
    assert main(["rewrap", str(sealed), "-i", str(keys["alice"]), "--add", "-r", pub["bob"]]) == 0
    assert "1 kept, 1 added, 0 removed" in capsys.readouterr().err
    assert main(["rewrap", str(sealed), "-i", str(keys["bob"]), "--remove-identity", str(keys["alice"])]) == 0
    assert main(["verify", str(sealed), "-i", str(keys["alice"]), "-q"]) == 4  # no identity matched
    assert main(["verify", str(sealed), "-i", str(keys["bob"]), "-q"]) == 0
    capsys.readouterr()
    assert main(["rewrap", str(sealed), "-i", str(keys["bob"]), "--add"]) == 2
    assert "--add needs recipients" in capsys.readouterr().err
    assert main(["rewrap", str(sealed), "-i", str(keys["bob"]), "--remove", pub["alice"]]) == 2
    assert "do not name their recipient" in capsys.readouterr().err
    out = tmp_path / "rekeyed.tseal"
    assert main(["rekey", str(sealed), "-i", str(keys["bob"]), "-r", pub["alice"], "-o", str(out), "-q"]) == 0
    back = tmp_path / "back.safetensors"
    assert main(["decrypt", str(out), "-i", str(keys["alice"]), "-o", str(back), "-q"]) == 0
    assert back.read_bytes() == src.read_bytes()
    assert main(["rekey", str(sealed), "-i", str(keys["bob"])]) == 2  # no recipients


def test_rewrap_of_a_truncated_or_foreign_file_changes_nothing(sealed, tmp_path):
    path, _ = sealed
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(tensorseal.errors.TruncatedError):
        rotation.rewrap(path, [ALICE], add=[BOB.recipient()])
    assert path.read_bytes() == raw[:-10]
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"not sealed" * 100)
    with pytest.raises(tensorseal.errors.NotSealedError):
        rotation.rewrap(plain, [ALICE], add=[BOB.recipient()])
    assert plain.read_bytes() == b"not sealed" * 100
