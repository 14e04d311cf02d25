"""Offline device licences: model master keys, licence blobs, device fingerprints, CLI."""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from datetime import datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from safetensors.numpy import save_file as st_save

import tensorseal.numpy
from tensorseal.cli import main
from tensorseal.device import DeviceFingerprint, _linux_machine_id, this_device
from tensorseal.errors import (
    FormatError,
    HeaderAuthenticationError,
    IncorrectIdentityError,
    InvalidKeyError,
    LicenceError,
    LicenceExpiredError,
    LimitExceededError,
    NoIdentityMatchError,
    SignatureError,
    TensorSealError,
    TrailingDataError,
    TruncatedError,
    UnsupportedVersionError,
    UsageError,
    WrongDeviceError,
    WrongLicenceKeyError,
)
from tensorseal.format.header import ModelIdentity
from tensorseal.recipients import KeyContext, X25519Identity, load_identities
from tensorseal.recipients.licence import (
    MAX_LICENCE_SIZE,
    Licence,
    LicenceIdentity,
    LicenceKey,
    _issue_from_parts,
    issue_licence,
)
from tensorseal.recipients.master import MasterKey
from tensorseal.signing import SigningKey

from .conftest import assert_same, sample_tensors

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
EXPIRES = datetime(2027, 1, 1, tzinfo=timezone.utc)
DEVICE_A = DeviceFingerprint.from_machine_id("0123456789abcdef0123456789abcdef")
DEVICE_B = DeviceFingerprint.from_machine_id("fedcba9876543210fedcba9876543210")


@pytest.fixture(scope="module")
def vendor() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def master() -> MasterKey:
    return MasterKey.generate("acme-llm", "1.0")


@pytest.fixture(scope="module")
def issued(master, vendor):
    return issue_licence(
        master, vendor, licensee="Jane Doe <jane@example.org>", device=DEVICE_A, expires=EXPIRES, now=NOW
    )


@pytest.fixture
def sealed(tmp_path, master):
    tensors = sample_tensors()
    path = tmp_path / "model.tseal"
    tensorseal.numpy.save_file(tensors, path, [master], name="acme-llm", version="1.0", segment_size=4096)
    return path, tensors


def identity(issued, vendor, **kw) -> LicenceIdentity:
    kw.setdefault("fingerprint", DEVICE_A)
    kw.setdefault("now", NOW)
    return LicenceIdentity(issued.blob, issued.licence_key, trusted_vendors=[vendor.public_key()], **kw)


def assert_no_secret(exc: BaseException, *secrets: object) -> None:
    text = f"{exc} {getattr(exc, 'hint', '')}"
    for secret in secrets:
        assert str(secret) not in text


# ---- end to end ----------------------------------------------------------------------
def test_licensed_device_loads_the_model(issued, vendor, sealed):
    path, tensors = sealed
    assert_same(tensorseal.numpy.load_file(path, identities=[identity(issued, vendor)]), tensors)


def test_licence_key_as_string_and_vendor_as_string(issued, vendor, sealed):
    path, tensors = sealed
    ident = LicenceIdentity(
        issued.blob,
        str(issued.licence_key),
        trusted_vendors=str(vendor.public_key()),
        fingerprint=str(DEVICE_A),
        now=NOW,
    )
    assert_same(tensorseal.numpy.load_file(path, [ident]), tensors)


def test_vendor_opens_with_the_master_key(master, sealed, tmp_path):
    path, tensors = sealed
    assert_same(tensorseal.numpy.load_file(path, [master]), tensors)
    keyfile = tmp_path / "acme.mck"
    keyfile.write_text(f"# a comment\n{master}\n")
    assert_same(tensorseal.numpy.load_file(path, load_identities(keyfile)), tensors)


def test_other_device_is_refused(issued, vendor, master):
    with pytest.raises(WrongDeviceError, match="another device") as exc:
        identity(issued, vendor, fingerprint=DEVICE_B)
    assert exc.value.hint and "device-id" in exc.value.hint
    assert_no_secret(exc.value, issued.licence_key, master, DEVICE_A)


def test_other_device_and_wrong_key_says_device(issued, vendor):
    with pytest.raises(WrongDeviceError):
        LicenceIdentity(
            issued.blob, LicenceKey.generate(), trusted_vendors=[vendor.public_key()], fingerprint=DEVICE_B, now=NOW
        )


def test_wrong_licence_key_is_refused(issued, vendor, master):
    other = LicenceKey.generate()
    with pytest.raises(WrongLicenceKeyError, match="licence key does not open") as exc:
        LicenceIdentity(issued.blob, other, trusted_vendors=[vendor.public_key()], fingerprint=DEVICE_A, now=NOW)
    assert_no_secret(exc.value, issued.licence_key, other, master)


def test_licence_key_typo_is_caught(issued, vendor):
    text = str(issued.licence_key)
    typo = text[:-3] + ("A" if text[-3] != "A" else "B") + text[-2:]
    with pytest.raises(InvalidKeyError, match="checksum|canonical"):
        LicenceIdentity(issued.blob, typo, trusted_vendors=[vendor.public_key()], fingerprint=DEVICE_A, now=NOW)


def test_expired_licence_is_refused(issued, vendor):
    identity(issued, vendor, now=EXPIRES - timedelta(seconds=1))
    for late in (EXPIRES, EXPIRES + timedelta(days=400)):
        with pytest.raises(LicenceExpiredError, match="expired on 2027-01-01") as exc:
            identity(issued, vendor, now=late)
        assert exc.value.hint
    with pytest.raises(LicenceExpiredError):  # naive times are UTC
        identity(issued, vendor, now=EXPIRES.replace(tzinfo=None))


def test_expiry_is_checked_again_when_the_file_is_opened(issued, vendor, sealed):
    path, tensors = sealed
    clock = [EXPIRES - timedelta(minutes=1)]
    ident = identity(issued, vendor, now=lambda: clock[0])
    assert_same(tensorseal.numpy.load_file(path, [ident]), tensors)
    clock[0] = EXPIRES
    with pytest.raises(LicenceExpiredError):
        tensorseal.numpy.load_file(path, [ident])


def test_licence_identity_reports_its_fields(issued, vendor):
    ident = identity(issued, vendor)
    lic = ident.licence
    assert (lic.licensee, lic.model, lic.expires) == (
        "Jane Doe <jane@example.org>",
        ModelIdentity("acme-llm", "1.0"),
        EXPIRES,
    )
    assert lic.issued == NOW and lic.vendor == vendor.public_key() and len(lic.licence_id) == 16
    assert str(issued.licence_key) not in repr(ident) and "Jane Doe" in repr(ident)
    assert repr(issued.licence_key) == "LicenceKey(<secret>)"


def test_blob_is_small(issued, master, vendor):
    assert 200 < len(issued.blob) < 400
    big = MasterKey.generate("m" * 256, "v" * 256)
    blob = issue_licence(big, vendor, licensee="x" * 256, device=DEVICE_A, expires=EXPIRES, now=NOW).blob
    assert len(blob) <= MAX_LICENCE_SIZE == 1024


# ---- the file side: stanzas for other models / master keys ---------------------------
def test_licence_for_another_model_version_does_not_match(issued, vendor, tmp_path):
    """Key rotation: a new MCK for a new version; old licences do not open it."""
    v2 = MasterKey.generate("acme-llm", "2.0")
    path = tmp_path / "v2.tseal"
    tensors = sample_tensors(1)
    tensorseal.numpy.save_file(tensors, path, [v2], name="acme-llm", version="2.0")
    old = identity(issued, vendor)
    with pytest.raises(NoIdentityMatchError):
        tensorseal.numpy.load_file(path, [old])
    # the customer's renewal for 2.0 under the same licence key opens it; the old licence still opens 1.0
    renewed = issue_licence(
        v2, vendor, licensee="Jane", device=DEVICE_A, expires=EXPIRES, licence_key=issued.licence_key, now=NOW
    )
    assert renewed.licence_key is issued.licence_key
    assert_same(tensorseal.numpy.load_file(path, [old, identity(renewed, vendor)]), tensors)


def test_rotated_master_key_of_the_same_version_does_not_match(issued, vendor, tmp_path):
    rotated = MasterKey.generate("acme-llm", "1.0")
    path = tmp_path / "rotated.tseal"
    tensorseal.numpy.save_file(sample_tensors(), path, [rotated], name="acme-llm", version="1.0")
    with pytest.raises(NoIdentityMatchError):
        tensorseal.numpy.load_file(path, [identity(issued, vendor)])
    with pytest.raises(IncorrectIdentityError, match="not sealed to its master key"):
        identity(issued, vendor).unwrap(rotated.wrap(bytes(32), KeyContext(rotated.model)), KeyContext(rotated.model))


def test_non_matching_licence_falls_through_to_the_next_identity(issued, vendor, tmp_path):
    x = X25519Identity.generate()
    path = tmp_path / "other.tseal"
    tensors = sample_tensors(2)
    tensorseal.numpy.save_file(tensors, path, [x.recipient()], name="acme-llm", version="1.0")
    assert_same(tensorseal.numpy.load_file(path, [identity(issued, vendor), x]), tensors)


def test_master_key_refuses_a_file_of_another_model(master):
    for ident in (
        ModelIdentity(),
        ModelIdentity("acme-llm"),
        ModelIdentity("acme-llm", "2.0"),
        ModelIdentity("other", "1.0"),
    ):
        with pytest.raises(UsageError, match="master key is for 'acme-llm'"):
            master.wrap(bytes(32), KeyContext(ident))


def test_stanza_moved_to_another_identity_is_refused(master):
    ctx = KeyContext(ModelIdentity("acme-llm", "1.0", "model-00001-of-00002"))
    stanzas = master.wrap(b"k" * 32, ctx)
    assert master.unwrap(stanzas, ctx) == b"k" * 32
    with pytest.raises(HeaderAuthenticationError):  # another version in the header
        master.unwrap(stanzas, KeyContext(ModelIdentity("acme-llm", "2.0", "model-00001-of-00002")))
    with pytest.raises(HeaderAuthenticationError):  # another shard: the AAD differs
        master.unwrap(stanzas, KeyContext(ModelIdentity("acme-llm", "1.0", "model-00002-of-00002")))


def test_stanza_shape(master):
    ctx = KeyContext(master.model)
    (stanza,) = master.wrap(bytes(32), ctx)
    assert stanza.type == "licence" and len(stanza.args) == 2 and len(stanza.body) == 48
    assert str(master) not in repr(stanza) and master.secret_bytes().hex() not in repr(stanza)
    bad = [
        type(stanza)(stanza.type, stanza.args[:1], stanza.body),
        type(stanza)(stanza.type, (stanza.args[0], "!!"), stanza.body),
        type(stanza)(stanza.type, stanza.args, stanza.body[:-1]),
    ]
    for s in bad:
        with pytest.raises(FormatError):
            master.unwrap([s], ctx)


def test_master_key_string(master, tmp_path):
    text = str(master)
    assert text.startswith("TSEAL-MASTER-KEY-1")
    again = MasterKey.parse(text.lower())
    assert (again.key_id, again.name, again.version) == (master.key_id, "acme-llm", "1.0")
    assert text not in repr(master) and master.key_id.hex() in repr(master)
    unicode = MasterKey.generate("modèle ✓", "2024.1")
    assert MasterKey.parse(str(unicode)).name == "modèle ✓"
    for broken in (
        text[:-1],
        text[:-2] + ("A" if text[-2] != "A" else "B") + text[-1],
        "TSEAL-MASTER-KEY-1AAAA",
        "TSEAL-SYMMETRIC-KEY-1" + text[18:],
    ):
        with pytest.raises(InvalidKeyError):
            MasterKey.parse(broken)
    two = tmp_path / "two.mck"
    two.write_text(f"{master}\n{master}\n")
    with pytest.raises(InvalidKeyError, match="one master key"):
        MasterKey.from_file(two)


def test_master_key_needs_a_model():
    for name, version in (("", "1"), ("a", ""), ("a" * 257, "1")):
        with pytest.raises(UsageError):
            MasterKey.generate(name, version)


# ---- the blob: strict parsing and signature -------------------------------------------
def _offsets(blob: bytes) -> dict[str, tuple[int, int]]:
    pos, out = 0, {}
    for field, size in (
        ("magic", 8),
        ("version", 2),
        ("id", 16),
        ("issued", 8),
        ("expires", 8),
        ("key_id", 16),
        ("salt", 16),
        ("check", 16),
    ):
        out[field] = (pos, pos + size)
        pos += size
    for field in ("name", "model_version", "licensee"):
        (n,) = struct.unpack_from(">H", blob, pos)
        out[field + "_len"] = (pos, pos + 2)
        out[field] = (pos + 2, pos + 2 + n)
        pos += 2 + n
    for field, size in (("wrapped", 48), ("vendor", 32), ("signature", 64)):
        out[field] = (pos, pos + size)
        pos += size
    assert pos == len(blob)
    return out


def _parse(blob: bytes, vendor: SigningKey) -> Licence:
    return Licence.parse(blob, [vendor.public_key()])


EXPECTED = {
    "magic": FormatError, "version": UnsupportedVersionError, "id": SignatureError, "issued": SignatureError,
    "expires": SignatureError, "key_id": SignatureError, "salt": SignatureError, "check": SignatureError,
    "name": SignatureError, "model_version": SignatureError, "licensee": SignatureError,
    "wrapped": SignatureError, "vendor": SignatureError, "signature": SignatureError,
}  # fmt: skip


def test_every_byte_of_the_blob_is_protected(issued, vendor):
    offsets = _offsets(issued.blob)
    where = {i: f for f, (a, b) in offsets.items() for i in range(a, b)}
    for i in range(len(issued.blob)):
        for flip in (0x01, 0x80):
            bad = bytearray(issued.blob)
            bad[i] ^= flip
            with pytest.raises((FormatError, SignatureError)) as exc:
                LicenceIdentity(
                    bytes(bad), issued.licence_key, trusted_vendors=[vendor.public_key()], fingerprint=DEVICE_A, now=NOW
                )
            field = where[i]
            expected = EXPECTED.get(field, FormatError if field.endswith("_len") else None)
            if field.endswith("_len"):
                assert isinstance(exc.value, (FormatError, SignatureError)), (i, field)
            elif field in ("name", "model_version", "licensee") and flip == 0x80:
                assert isinstance(exc.value, (FormatError, SignatureError)), (i, field)  # may break UTF-8 first
            else:
                assert type(exc.value) is expected, (i, field, exc.value)


def test_extending_the_expiry_breaks_the_signature(issued, vendor):
    o = _offsets(issued.blob)["expires"]
    later = (
        issued.blob[: o[0]]
        + struct.pack(">Q", int(datetime(2099, 1, 1, tzinfo=timezone.utc).timestamp()))
        + issued.blob[o[1] :]
    )
    with pytest.raises(SignatureError, match="was modified"):
        _parse(later, vendor)


def test_truncated_blob(issued, vendor):
    for n in range(len(issued.blob)):
        with pytest.raises(TruncatedError):
            _parse(issued.blob[:n], vendor)


def test_appended_and_oversized_blob(issued, vendor, tmp_path):
    with pytest.raises(TrailingDataError):
        _parse(issued.blob + b"\x00", vendor)
    with pytest.raises(LimitExceededError):
        _parse(issued.blob + bytes(MAX_LICENCE_SIZE), vendor)
    big = tmp_path / "big.tsl"
    big.write_bytes(issued.blob + bytes(5000))
    with pytest.raises(LimitExceededError):
        LicenceIdentity.from_file(
            big, issued.licence_key, trusted_vendors=[vendor.public_key()], fingerprint=DEVICE_A, now=NOW
        )


def test_not_a_licence_and_unknown_version(issued, vendor):
    with pytest.raises(FormatError, match="not a tensorseal licence"):
        _parse(b"PK\x03\x04" + issued.blob[4:], vendor)
    with pytest.raises(UnsupportedVersionError):
        _parse(issued.blob[:8] + b"\x00\x02" + issued.blob[10:], vendor)


def test_untrusted_vendor_is_refused(issued, vendor, master):
    other = SigningKey.generate()
    with pytest.raises(SignatureError, match="not trusted"):
        LicenceIdentity(
            issued.blob, issued.licence_key, trusted_vendors=[other.public_key()], fingerprint=DEVICE_A, now=NOW
        )
    # a licence made by someone else (who somehow has the MCK) for the same model
    forged = issue_licence(master, other, licensee="Mallory", device=DEVICE_B, expires=EXPIRES, now=NOW)
    with pytest.raises(SignatureError, match="not trusted"):
        LicenceIdentity(
            forged.blob, forged.licence_key, trusted_vendors=[vendor.public_key()], fingerprint=DEVICE_B, now=NOW
        )
    # several trusted vendors: any one will do
    ident = LicenceIdentity(
        forged.blob,
        forged.licence_key,
        trusted_vendors=[vendor.public_key(), other.public_key()],
        fingerprint=DEVICE_B,
        now=NOW,
    )
    assert ident.licence.licensee == "Mallory"


def test_no_trusted_vendor_is_a_usage_error(issued):
    with pytest.raises(UsageError):
        LicenceIdentity(issued.blob, issued.licence_key, trusted_vendors=[], fingerprint=DEVICE_A, now=NOW)


def test_issue_refuses_bad_input(master, vendor):
    with pytest.raises(UsageError, match="after its issue"):
        issue_licence(master, vendor, licensee="x", device=DEVICE_A, expires=NOW, now=NOW)
    for licensee in ("", "a\nb", "x" * 257):
        with pytest.raises(UsageError):
            issue_licence(master, vendor, licensee=licensee, device=DEVICE_A, expires=EXPIRES, now=NOW)
    with pytest.raises(InvalidKeyError):
        issue_licence(master, vendor, licensee="x", device="tsealdev1abc", expires=EXPIRES, now=NOW)


def test_documented_derivation_and_golden_blob():
    """The layout and key derivation written in docs/KEYS.md, checked with cryptography
    directly; the digest pins the bytes so that licences already issued stay valid."""
    mck = MasterKey(bytes(range(32)), "acme-llm", "1.0")
    vendor = SigningKey(Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32))
    key = LicenceKey(bytes([9]) * 32)
    salt, lid = bytes([5]) * 16, bytes([3]) * 16
    out = _issue_from_parts(mck, vendor, "Jane", DEVICE_A, key, NOW, EXPIRES, lid, salt)
    blob = out.blob
    o = _offsets(blob)
    uk = HKDF(hashes.SHA256(), 32, salt, b"tensorseal/v1/licence-user-key").derive(DEVICE_A.raw + key.secret_bytes())
    a, b = o["wrapped"]
    assert ChaCha20Poly1305(uk).decrypt(bytes(12), blob[a:b], blob[:a]) == bytes(range(32))
    check = HKDF(hashes.SHA256(), 16, salt, b"tensorseal/v1/licence-device-check").derive(DEVICE_A.raw)
    assert blob[slice(*o["check"])] == check
    assert blob[slice(*o["key_id"])] == HKDF(hashes.SHA256(), 16, b"", b"tensorseal/v1/master-key-id").derive(
        bytes(range(32))
    )
    assert struct.unpack(">QQ", blob[26:42]) == (int(NOW.timestamp()), int(EXPIRES.timestamp()))
    assert blob[slice(*o["vendor"])] == vendor.public_key().raw
    Ed25519PublicKey.from_public_bytes(vendor.public_key().raw).verify(
        blob[slice(*o["signature"])], b"tensorseal/v1/licence" + blob[: o["signature"][0]]
    )
    assert hashlib.sha256(blob).hexdigest() == GOLDEN_SHA256


GOLDEN_SHA256 = "b8a4ca7f08bcb5a06b6e9af28b63c332f5bc1575f40caec0ec015e36fdb7827a"


# ---- device fingerprints --------------------------------------------------------------
def test_fingerprint_hides_the_machine_id_and_normalises_it():
    mid = "0123456789abcdef0123456789abcdef"
    fp = DeviceFingerprint.from_machine_id(mid)
    assert fp == DeviceFingerprint.from_machine_id("01234567-89AB-CDEF-0123-456789ABCDEF\n")
    assert mid not in str(fp) and bytes.fromhex(mid) not in fp.raw
    assert str(fp).startswith("tsealdev1") and DeviceFingerprint.parse(str(fp)) == fp
    assert fp != DEVICE_B
    for bad in ("", "xyz", "0" * 32, "0123456789abcdef0123456789abcde", "uninitialized"):
        with pytest.raises(LicenceError):
            DeviceFingerprint.from_machine_id(bad)


def test_linux_machine_id_fallback(tmp_path):
    first, second = tmp_path / "etc-machine-id", tmp_path / "dbus-machine-id"
    second.write_text("fedcba9876543210fedcba9876543210\n")
    assert _linux_machine_id([first, second]) == "fedcba9876543210fedcba9876543210"
    first.write_text("uninitialized\n")
    assert _linux_machine_id([first, second]) == "fedcba9876543210fedcba9876543210"
    first.write_text("0123456789abcdef0123456789abcdef\n")
    assert _linux_machine_id([first, second]) == "0123456789abcdef0123456789abcdef"
    second.unlink()
    first.write_text("")
    with pytest.raises(LicenceError, match="no initialised machine id"):
        _linux_machine_id([first, second])


def _here() -> DeviceFingerprint:
    try:
        return this_device()
    except LicenceError as exc:
        pytest.skip(f"this machine has no readable machine id: {exc}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /etc/machine-id")
def test_this_device_on_linux():
    here = _here()
    if os.path.exists("/etc/machine-id"):
        with open("/etc/machine-id") as f:
            text = f.read().strip()
        if text and text != "uninitialized":
            assert here == DeviceFingerprint.from_machine_id(text)
    assert this_device() == here  # stable


# ---- CLI ----------------------------------------------------------------------------
def run(capsys, *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def vendor_files(tmp_path, capsys):
    model = tmp_path / "model.safetensors"
    st_save(sample_tensors(), model)
    skey = tmp_path / "vendor.key"
    assert run(capsys, "keygen", "--signing", "-o", skey)[0] == 0
    code, pub, _ = run(capsys, "keygen", "-y", skey)
    assert code == 0
    mck = tmp_path / "acme-1.0.mck"
    code, _, err = run(capsys, "license", "new-master", "--model", "acme-llm", "--version", "1.0", "-o", mck)
    assert code == 0 and "Master key id:" in err, err
    assert oct(mck.stat().st_mode & 0o777) == "0o600" and "TSEAL-MASTER-KEY-1" in mck.read_text()
    sealed = tmp_path / "model.tseal"
    code, _, err = run(capsys, "encrypt", model, "--master", mck, "-o", sealed)  # name/version from the MCK
    assert code == 0, err
    return model, skey, pub.strip(), mck, sealed


def test_cli_device_id(capsys):
    here = _here()
    code, out, _ = run(capsys, "device-id")
    assert code == 0 and out.strip() == str(here)


def test_cli_issue_and_decrypt(capsys, tmp_path, vendor_files, monkeypatch):
    model, skey, pub, mck, sealed = vendor_files
    here = _here()
    lic = tmp_path / "jane.tsl"
    code, out, err = run(capsys, "license", "issue", "--master", mck, "--sign-key", skey, "--licensee", "Jane",
                         "--device", here, "--expires", "2099-01-01", "-o", lic)  # fmt: skip
    assert code == 0, err
    key = out.strip()
    assert key.startswith("TSEAL-LICENCE-KEY-1") and "Jane" in err and "2099-01-01" in err
    assert key not in err and len(lic.read_bytes()) < 1024
    out_file = tmp_path / "out.safetensors"
    code, _, err = run(
        capsys, "decrypt", sealed, "--license", lic, "--license-key", key, "--vendor", pub, "-o", out_file
    )
    assert code == 0, err
    assert out_file.read_bytes() == model.read_bytes()
    code, _, err = run(capsys, "verify", sealed, "--license", lic, "--license-key", key, "--vendor", pub)
    assert code == 0 and "segment(s) verified" in err, err
    monkeypatch.setenv("TENSORSEAL_LICENSE_KEY", key)
    code, out, err = run(capsys, "inspect", sealed, "--licence", lic, "--vendor", pub, "--json")
    assert code == 0 and '"authenticated": true' in out and '"licence"' in out, err
    # the vendor opens it with the master key itself
    code, _, err = run(capsys, "decrypt", sealed, "-i", mck, "-o", tmp_path / "vendor.safetensors")
    assert code == 0, err


def test_cli_refusals(capsys, tmp_path, vendor_files):
    model, skey, pub, mck, sealed = vendor_files
    here = _here()
    other = DEVICE_A if here != DEVICE_A else DEVICE_B
    lic = tmp_path / "other.tsl"
    code, out, err = run(capsys, "license", "issue", "--master", mck, "--sign-key", skey, "--licensee", "Bob",
                         "--device", other, "--expires", "2099-01-01T00:00:00Z", "-o", lic)  # fmt: skip
    assert code == 0, err
    key = out.strip()
    dst = tmp_path / "x.safetensors"
    code, _, err = run(capsys, "decrypt", sealed, "--license", lic, "--license-key", key, "--vendor", pub, "-o", dst)
    assert code == 4 and "another device" in err and "hint:" in err and key not in err and not dst.exists()
    stranger = SigningKey.generate().public_key()
    code, _, err = run(
        capsys, "decrypt", sealed, "--license", lic, "--license-key", key, "--vendor", stranger, "-o", dst
    )
    assert code == 5 and "not trusted" in err
    code, _, err = run(capsys, "decrypt", sealed, "--license", lic, "--vendor", pub, "-o", dst)
    assert code == 2 and "licence key" in err
    code, _, err = run(capsys, "decrypt", sealed, "--license", lic, "--license-key", key, "-o", dst)
    assert code == 2 and "--vendor" in err
    code, _, err = run(capsys, "decrypt", sealed, "-i", mck, "--license-key", key, "-o", dst)
    assert code == 2 and "go with --license" in err
    code, _, err = run(capsys, "license", "issue", "--master", mck, "--sign-key", skey, "--licensee", "Bob",
                       "--device", other, "--expires", "2001-01-01", "-o", tmp_path / "old.tsl")  # fmt: skip
    assert code == 2 and "after its issue time" in err
    code, _, err = run(capsys, "license", "issue", "--master", mck, "--sign-key", skey, "--licensee", "Bob",
                       "--device", other, "--expires", "next year", "-o", tmp_path / "bad.tsl")  # fmt: skip
    assert code == 2 and "not a date" in err
    code, _, err = run(
        capsys, "encrypt", model, "--master", mck, "--name", "acme-llm", "--model-version", "2.0", "-o", tmp_path / "m2"
    )
    assert code == 2 and "master key is for 'acme-llm' version '1.0'" in err


def test_cli_issue_with_a_given_licence_key(capsys, tmp_path, vendor_files):
    _, skey, pub, mck, sealed = vendor_files
    key = LicenceKey.generate()
    lic = tmp_path / "renewed.tsl"
    code, out, err = run(capsys, "license", "issue", "--master", mck, "--sign-key", skey, "--licensee", "Jane",
                         "--device", DEVICE_A, "--expires", "2099-01-01", "--licence-key", key, "-o", lic)  # fmt: skip
    assert code == 0 and out == "", err
    ident = LicenceIdentity.from_file(lic, key, trusted_vendors=pub, fingerprint=DEVICE_A, now=NOW)
    assert tensorseal.numpy.load_file(sealed, [ident]).keys() == sample_tensors().keys()


def test_errors_are_typed():
    for cls in (LicenceExpiredError, WrongDeviceError, WrongLicenceKeyError):
        assert issubclass(cls, LicenceError) and issubclass(cls, TensorSealError)


def test_audit_names_the_licence_without_secrets(issued, vendor, master):
    ident = identity(issued, vendor)
    info = ident.audit_info()
    assert info == {"kind": "licence", "key_id": f"{master.key_id.hex()}/{ident.licence.licence_id.hex()}"}
    assert master.audit_info() == {"kind": "licence", "key_id": master.key_id.hex()}
