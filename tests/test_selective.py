"""Selective encryption: tensors left in clear are still authenticated, and a selection
that would leave a file (or a shard) with nothing encrypted is an error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file as st_save

import tensorseal
import tensorseal.numpy as tsnp
from tensorseal import compat, files, writer
from tensorseal.cli import main
from tensorseal.errors import (
    HeaderAuthenticationError,
    LayoutError,
    NotSealedError,
    SegmentAuthenticationError,
    UsageError,
)
from tensorseal.format.keys import FileKeys
from tensorseal.reader import SealedFile
from tensorseal.recipients import SymmetricKey

from .conftest import SMALL_SEGMENT, assert_same, sample_tensors

KEY = SymmetricKey.generate()


def _seal(path, tensors=None, **kw):
    tensors = sample_tensors() if tensors is None else tensors
    tsnp.save_file(tensors, path, [KEY], segment_size=SMALL_SEGMENT, **kw)
    return tensors


def _stored_range(path, name):
    """(offset, length) of a tensor's bytes in the sealed file."""
    with SealedFile(path) as f:
        f.unlock([KEY])
        i = next(i for i, e in enumerate(f.index.entries) if e.name == name)
        return f.header.data_offset + f.runs[i].start, f.runs[i].length


def _flip(path, offset):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def test_plain_tensors_are_stored_in_clear_and_load_back(tmp_path):
    path = tmp_path / "m.tseal"
    tensors = _seal(path, plain=["embed.*", "ids"])
    raw = path.read_bytes()
    assert tensors["embed.weight"].tobytes() in raw and tensors["ids"].tobytes() in raw
    assert tensors["exact"].tobytes() not in raw  # encrypted
    with SealedFile(path) as f:
        f.unlock([KEY])
        names = [e.name for e in f.index.entries]
        assert sorted(names[t] for t in f.header.plain) == ["embed.weight", "ids"]
    assert_same(tsnp.load_file(path, [KEY]), tensors)


def test_encrypt_only_leaves_everything_else_plain(tmp_path):
    path = tmp_path / "m.tseal"
    tensors = _seal(path, encrypt_only=["exact"])
    raw = path.read_bytes()
    assert tensors["exact"].tobytes() not in raw
    assert tensors["embed.weight"].tobytes() in raw
    assert_same(tsnp.load_file(path, [KEY]), tensors)
    with tensorseal.safe_open(path, "numpy", [KEY]) as f:  # row slices of a plain tensor
        np.testing.assert_array_equal(f.get_slice("embed.weight")[3:30], tensors["embed.weight"][3:30])


@pytest.mark.parametrize("where", [0, 1, -1])  # first, second and last byte of a plain tensor
def test_a_changed_byte_of_a_plain_tensor_is_detected(tmp_path, where):
    path = tmp_path / "m.tseal"
    _seal(path, plain=["embed.*"])
    start, length = _stored_range(path, "embed.weight")
    _flip(path, start + (where % length))
    with pytest.raises(SegmentAuthenticationError, match="embed.weight"):
        tsnp.load_file(path, [KEY])
    with pytest.raises(SegmentAuthenticationError):
        files.verify_file(path, [KEY])
    with pytest.raises(SegmentAuthenticationError):
        files.decrypt_file(path, tmp_path / "out.safetensors", [KEY])
    assert not (tmp_path / "out.safetensors").exists()


def test_swapped_plain_segments_are_detected(tmp_path):
    """Two plain segments of the same size swapped: each tag binds its own position."""
    path = tmp_path / "m.tseal"
    tensors = {"a": np.arange(2048, dtype=np.float32), "b": np.arange(2048, 4096, dtype=np.float32), "k": np.ones(8, np.float32)}
    _seal(path, tensors, plain=["a", "b"])
    (sa, n), (sb, _) = _stored_range(path, "a"), _stored_range(path, "b")
    raw = bytearray(path.read_bytes())
    raw[sa : sa + n], raw[sb : sb + n] = raw[sb : sb + n], raw[sa : sa + n]
    path.write_bytes(bytes(raw))
    with pytest.raises(SegmentAuthenticationError):
        tsnp.load_file(path, [KEY])


def test_the_plain_list_is_authenticated(tmp_path):
    """Marking an encrypted tensor plain (or the reverse) in the header breaks the MAC."""
    path = tmp_path / "m.tseal"
    _seal(path, plain=["ids"])
    raw = path.read_bytes()
    with SealedFile(path) as f:
        f.unlock([KEY])
        ids = next(i for i, e in enumerate(f.index.entries) if e.name == "ids")
    old = b'"plain":[%d]' % ids
    assert raw.count(old) == 1
    other = b'"plain":[%d]' % (ids - 1 if ids else ids + 1)
    path.write_bytes(raw.replace(old, other))  # same length: only the MAC can tell
    with pytest.raises(HeaderAuthenticationError):
        tsnp.load_file(path, [KEY])


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"plain": ["nope*"]}, "--plain 'nope\\*' matches no tensor"),
        ({"encrypt_only": ["exact", "missing"]}, "--encrypt-only 'missing' matches no tensor"),
        ({"plain": ["*"]}, "every tensor"),
        ({"encrypt_only": ["empty"]}, "every tensor"),  # only an empty tensor encrypted: nothing is
    ],
)
def test_bad_selections_are_errors_and_write_nothing(tmp_path, kw, message):
    path = tmp_path / "m.tseal"
    with pytest.raises(UsageError, match=message):
        _seal(path, **kw)
    assert not path.exists()


def test_blob_mode_cannot_be_selective(tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(b"x" * 10000)
    opts = writer.SealOptions(plain=("*",))
    with pytest.raises(UsageError, match="selective encryption needs tensors"):
        files.encrypt_file(src, tmp_path / "b.tseal", [KEY], options=opts)
    with pytest.raises(UsageError, match="patterns"):
        writer.SealOptions(plain="*")  # a bare string is not a list of patterns


def _forge(monkeypatch, path, tensors, plain_numbers):
    """A file whose header lists ``plain_numbers``, written past the writer's own checks
    (what an attacker holding the key, or a buggy writer, could produce)."""
    monkeypatch.setattr(writer, "_check_plain", lambda mode, lengths, plain: tuple(sorted(plain)))
    idx = tensorseal.format.safetensors_index.build_index({k: (tsnp._st_dtype(v.dtype), v.shape) for k, v in tensors.items()}, None)
    views = {e.name: memoryview(np.ascontiguousarray(tensors[e.name]).reshape(-1).view(np.uint8)) for e in idx.entries}
    starts = [e.start for e in idx.entries]

    def source(seg, scratch):
        name = idx.entries[seg.tensor].name
        off = seg.start - starts[seg.tensor]
        return views[name][off : off + seg.length]

    writer.write_sealed(path, mode="tensors", lengths=[e.nbytes for e in idx.entries], source=source,
                        recipients=[KEY], index=idx.raw, plain=plain_numbers)  # fmt: skip
    monkeypatch.undo()


def test_reader_refuses_all_plain_and_bad_plain_numbers(tmp_path, monkeypatch):
    tensors = {"a": np.ones(10, np.float32), "b": np.zeros(3, np.float32), "e": np.zeros(0, np.float32)}
    all_plain = tmp_path / "all.tseal"
    _forge(monkeypatch, all_plain, tensors, [0, 1])
    with pytest.raises(LayoutError):  # header rule: at least one segment encrypted
        SealedFile(all_plain)
    empty = tmp_path / "empty.tseal"
    e_number = 2  # data order: a, b, e
    _forge(monkeypatch, empty, tensors, [e_number])
    with pytest.raises(LayoutError, match="empty"):
        tsnp.load_file(empty, [KEY])


def test_plain_segments_use_their_own_key():
    """A plain segment's tag and an encrypted segment's tag share a nonce layout, so they
    must never share a key: the plain key is its own HKDF output."""
    keys = FileKeys.derive(bytes(32), bytes(32))
    assert len({keys.plain_key, keys.data_key, keys.index_key, keys.mac_key, keys.commitment}) == 5


def test_directory_patterns_are_checked_across_shards(tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    st_save({"layer.0.w": np.ones(2000, np.float32), "layer.0.b": np.ones(4, np.float32)}, src / "a.safetensors")
    st_save({"head.w": np.ones(2000, np.float32), "layer.1.w": np.ones(100, np.float32)}, src / "b.safetensors")
    ok = writer.SealOptions(plain=("layer.0.b", "head.*"), segment_size=SMALL_SEGMENT)
    files.encrypt_directory(src, tmp_path / "out", [KEY], options=ok)  # each pattern matches one shard
    assert tsnp.load_file(tmp_path / "out" / "b.safetensors", [KEY])["head.w"].sum() == 2000
    with pytest.raises(UsageError, match="'nothing' matches no tensor"):
        files.encrypt_directory(src, tmp_path / "out2", [KEY], options=writer.SealOptions(plain=("nothing",)))
    with pytest.raises(UsageError, match="b.safetensors"):  # a shard left with nothing encrypted
        files.encrypt_directory(src, tmp_path / "out3", [KEY], options=writer.SealOptions(encrypt_only=("layer.0.*",)))
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out3").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial dirs left


def test_require_encrypted_refuses_plain_files(tmp_path):
    plain = tmp_path / "plain.safetensors"
    st_save({"w": np.ones(4, np.float32)}, plain)
    import safetensors.numpy

    with compat.sealed_safetensors([KEY]):
        assert safetensors.numpy.load_file(plain)["w"].sum() == 4  # pass-through by default
    with compat.sealed_safetensors([KEY], require_encrypted=True):
        with pytest.raises(NotSealedError, match="encryption is required"):
            safetensors.numpy.load_file(plain)
        with pytest.raises(NotSealedError):
            safetensors.safe_open(plain, framework="numpy")


def test_cli_selective_round_trip_and_errors(tmp_path, capsys):
    src = tmp_path / "model.safetensors"
    st_save(sample_tensors(), src, metadata={"k": "v"})
    (tmp_path / "key").write_bytes(bytes(range(32)))
    out = tmp_path / "m.tseal"
    assert main(["encrypt", str(src), "-o", str(out), "--key-file", str(tmp_path / "key"), "--plain", "embed.*", "-q"]) == 0
    back = tmp_path / "back.safetensors"
    assert main(["decrypt", str(out), "-o", str(back), "--key-file", str(tmp_path / "key"), "-q"]) == 0
    assert back.read_bytes() == src.read_bytes()
    capsys.readouterr()
    assert main(["inspect", str(out), "--json", "--key-file", str(tmp_path / "key")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["plain_tensors"] == 1
    assert {t["name"] for t in info["tensors"] if not t["encrypted"]} == {"embed.weight"}
    code = main(["encrypt", str(src), "-o", str(tmp_path / "x.tseal"), "--key-file", str(tmp_path / "key"), "--encrypt-only", "zzz"])
    assert code == 2 and "matches no tensor" in capsys.readouterr().err
    assert not (tmp_path / "x.tseal").exists()


def test_cli_critical_auto_encrypts_what_the_evaluator_needs(tmp_path, capsys):
    """A toy model whose score depends on one tensor only: --critical auto picks it."""
    src = tmp_path / "model.safetensors"
    rng = np.random.default_rng(1)
    st_save({"key.w": rng.standard_normal(64).astype(np.float32), "noise.w": rng.standard_normal(4096).astype(np.float32)}, src)
    ev = tmp_path / "toy_eval.py"
    ev.write_text(
        "import numpy as np\n"
        f"REF = np.load({str(tmp_path / 'ref.npy')!r})\n"
        "def evaluate(t):\n"
        "    return float(np.mean(np.sign(t['key.w']) == np.sign(REF)) * 2 - 1)\n"
    )
    from safetensors.numpy import load_file

    np.save(tmp_path / "ref.npy", load_file(src)["key.w"])
    (tmp_path / "key").write_bytes(bytes(range(32)))
    out = tmp_path / "m.tseal"
    code = main(["encrypt", str(src), "-o", str(out), "--key-file", str(tmp_path / "key"),
                 "--critical", "auto", "--eval", f"{ev}:evaluate", "--critical-threshold", "0.5"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "encrypting 1 of 2 tensors" in err
    with SealedFile(out) as f:
        f.unlock([SymmetricKey(bytes(range(32)))])
        names = [e.name for e in f.index.entries]
        assert [names[t] for t in f.header.plain] == ["noise.w"]
    assert main(["encrypt", str(src), "-o", str(tmp_path / "y.tseal"), "--key-file", str(tmp_path / "key"), "--critical", "auto"]) == 2
    assert "--eval" in capsys.readouterr().err
