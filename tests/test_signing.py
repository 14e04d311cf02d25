"""Publisher signatures: signed while sealing (one pass), added later, checked without
the decryption key; every change to the file, and every stripped or foreign signature,
is refused."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import tensorseal
import tensorseal.numpy as tsnp
from tensorseal.errors import FormatError, InvalidKeyError, SignatureError, TensorSealError, TrailingDataError
from tensorseal.format.signatures import FOOTER_SIZE, MAGIC, encode_block
from tensorseal.reader import SealedFile
from tensorseal.signing import SigningKey, VerifyingKey, load_trusted_signers

from .conftest import SMALL_SEGMENT, assert_same, sample_tensors


@pytest.fixture(scope="module")
def publisher() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def signed(tmp_path, identity, publisher):
    path = tmp_path / "signed.tseal"
    tsnp.save_file(sample_tensors(), path, [identity.recipient()], segment_size=SMALL_SEGMENT, sign_with=[publisher])
    return path


def test_key_strings(tmp_path, publisher):
    pub = publisher.public_key()
    assert str(pub).startswith("tsealpub1") and VerifyingKey.parse(str(pub)) == pub
    assert str(SigningKey.parse(str(publisher)).public_key()) == str(pub)
    keyfile = tmp_path / "sk"
    keyfile.write_text(f"# mine\n{publisher}\n")
    assert SigningKey.from_file(keyfile).public_key() == pub
    trusted = tmp_path / "trusted"
    trusted.write_text(f"# team\n{pub}\n")
    assert load_trusted_signers(trusted) == [pub]
    with pytest.raises(InvalidKeyError):
        VerifyingKey.parse(str(pub)[:-2] + "aa")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_digest_computed_while_writing_matches_a_fresh_read(tmp_path, identity, publisher, threads):
    """The writer hashes units in its worker threads (units straddling two workers are
    read back); the result must equal the verifier's digest from a plain read."""
    path = tmp_path / "m.tseal"
    tsnp.save_file(sample_tensors(threads), path, [identity.recipient()], segment_size=SMALL_SEGMENT,
                   sign_with=[publisher], threads=threads)  # fmt: skip
    with SealedFile(path) as f:
        assert f.check_signatures([publisher.public_key()], threads=1) == [publisher.public_key()]
        assert f.check_signatures([publisher.public_key()], threads=4) == [publisher.public_key()]


def test_verify_without_the_decryption_key(signed, publisher, other_identity):
    header = tensorseal.verify_file(signed, signers=[publisher.public_key()])
    assert header.mode == "tensors"
    tensorseal.verify_file(signed, signers=str(publisher.public_key()))


def test_load_requires_a_trusted_signature_when_asked(signed, identity, publisher):
    assert_same(sample_tensors(), tsnp.load_file(signed, [identity], signers=[publisher.public_key()]))
    with tensorseal.safe_open(signed, "np", [identity], signers=[str(publisher.public_key())]) as f:
        assert f.keys() == sorted(sample_tensors())
    with pytest.raises(SignatureError):
        tsnp.load_file(signed, [identity], signers=[SigningKey.generate().public_key()])


def test_unsigned_file_is_refused_when_signers_are_given(tmp_path, identity, publisher):
    path = tmp_path / "plain.tseal"
    tsnp.save_file(sample_tensors(), path, [identity.recipient()])
    with pytest.raises(SignatureError, match="not signed"):
        tensorseal.verify_file(path, signers=[publisher.public_key()])
    with pytest.raises(SignatureError):
        tsnp.load_file(path, [identity], signers=[publisher.public_key()])


def test_stripping_the_signature(signed, identity, publisher, tmp_path):
    with SealedFile(signed) as f:
        end = f.header.file_size
    stripped = tmp_path / "stripped.tseal"
    stripped.write_bytes(signed.read_bytes()[:end])
    with pytest.raises(SignatureError):
        tsnp.load_file(stripped, [identity], signers=[publisher.public_key()])
    assert_same(sample_tensors(), tsnp.load_file(stripped, [identity]))  # still a valid unsigned file


def test_any_changed_byte_breaks_the_signature(signed, publisher, tmp_path):
    data = signed.read_bytes()
    with SealedFile(signed) as f:
        h, hlen = f.header, f.header_len
    positions = [3, 20, hlen // 2, 16 + hlen + 5, h.tags_offset + 1, h.data_offset - 1, h.data_offset + 7,
                 h.file_size - 1]  # fmt: skip
    for pos in positions:
        bad = bytearray(data)
        bad[pos] ^= 0x10
        p = tmp_path / "bad.tseal"
        p.write_bytes(bytes(bad))
        with pytest.raises(TensorSealError):  # FormatError where parsing fails, else SignatureError
            tensorseal.verify_file(p, signers=[publisher.public_key()])
    # a flipped bit in the signature itself
    bad = bytearray(data)
    sig_json = data.rindex(b'"sig":"') + 8
    bad[sig_json] = ord("A") if bad[sig_json] != ord("A") else ord("B")
    p = tmp_path / "badsig.tseal"
    p.write_bytes(bytes(bad))
    with pytest.raises(TensorSealError):
        tensorseal.verify_file(p, signers=[publisher.public_key()])


def test_signature_from_another_file_does_not_transfer(tmp_path, identity, publisher):
    a, b = tmp_path / "a.tseal", tmp_path / "b.tseal"
    tsnp.save_file({"w": np.ones(100)}, a, [identity.recipient()], sign_with=[publisher])
    tsnp.save_file({"w": np.zeros(100)}, b, [identity.recipient()])
    with SealedFile(a) as fa:
        block = a.read_bytes()[fa.header.file_size :]
    grafted = tmp_path / "grafted.tseal"
    grafted.write_bytes(b.read_bytes() + block)
    with pytest.raises(SignatureError, match="changed after it was signed"):
        tensorseal.verify_file(grafted, signers=[publisher.public_key()])


def test_sign_existing_file_keeps_other_signatures(tmp_path, identity, publisher):
    path = tmp_path / "m.tseal"
    tsnp.save_file(sample_tensors(), path, [identity.recipient()], segment_size=SMALL_SEGMENT)
    second = SigningKey.generate()
    assert len(tensorseal.sign_file(path, [publisher])) == 1
    assert len(tensorseal.sign_file(path, [second])) == 2
    assert len(tensorseal.sign_file(path, [second])) == 2  # re-signing replaces, does not pile up
    for key in (publisher, second):
        tensorseal.verify_file(path, [identity], signers=[key.public_key()])
    assert_same(sample_tensors(), tsnp.load_file(path, [identity], signers=[second.public_key()]))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_untrusted_signature_only(signed, publisher):
    with pytest.raises(SignatureError, match="no signature from a trusted signer"):
        tensorseal.verify_file(signed, signers=[SigningKey.generate().public_key()])


@pytest.mark.parametrize(
    "tail, error",
    [
        (b"x", TrailingDataError),
        (b"{}" + struct.pack("<I", 2) + b"TSEALSIX", TrailingDataError),
        (b"{}" + struct.pack("<I", 3) + MAGIC, TrailingDataError),
        (b"{}" + struct.pack("<I", 2) + MAGIC, FormatError),
        (b'{"signatures":[]}' + struct.pack("<I", 17) + MAGIC, FormatError),
        (b"{" * 10 + struct.pack("<I", 10) + MAGIC, FormatError),
        (bytes(70_000) + struct.pack("<I", 70_000) + MAGIC, TrailingDataError),
    ],
)
def test_malformed_signature_blocks(tmp_path, identity, tail, error):
    path = tmp_path / "m.tseal"
    tsnp.save_file({"w": np.ones(3)}, path, [identity.recipient()])
    path.write_bytes(path.read_bytes() + tail)
    with pytest.raises(error):
        SealedFile(path)


def test_block_round_trip(publisher):
    sig = publisher.sign(bytes(32))
    block = encode_block([sig])
    assert block.endswith(MAGIC) and struct.unpack("<I", block[-FOOTER_SIZE:-8])[0] == len(block) - FOOTER_SIZE


def test_blob_files_sign_too(tmp_path, identity, publisher):
    src = tmp_path / "m.onnx"
    src.write_bytes(np.random.default_rng(1).bytes(3 * SMALL_SEGMENT + 5))
    out = tmp_path / "m.tseal"
    tensorseal.encrypt_file(src, out, [identity.recipient()], options=tensorseal.writer.SealOptions(segment_size=SMALL_SEGMENT),
                            sign_with=[publisher], threads=2)  # fmt: skip
    tensorseal.verify_file(out, [identity], signers=[publisher.public_key()])
