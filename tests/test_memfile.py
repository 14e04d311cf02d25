"""Path-only frameworks: a sealed model decrypted into an anonymous memory file (memfd, or
an unlinked /dev/shm file), handed out as a path, wiped and closed after the block."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat

import numpy as np
import pytest

import tensorseal
import tensorseal.numpy as tsnp
from tensorseal.errors import ModelMismatchError, NoIdentityMatchError, SegmentAuthenticationError, UsageError
from tensorseal.memfile import MEMORY_FILE_SYSTEMS, _mount_fs_type, plaintext_path
from tensorseal.format.header import ModelIdentity
from tensorseal.writer import SealOptions

from .conftest import SMALL_SEGMENT, assert_same, sample_tensors

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="Linux /proc needed")


def _memfds() -> list[str]:
    """This process's open memfds made by tensorseal."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with_target = os.path.join("/proc/self/fd", fd)
        try:
            target = os.readlink(with_target)
        except OSError:
            continue
        if target.startswith("/memfd:tensorseal"):
            out.append(target)
    return out


def _assert_gone(path: str) -> None:
    with pytest.raises(FileNotFoundError):
        open(path, "rb")
    assert not os.path.lexists(path)


@pytest.fixture
def shm_dir():
    """A private directory on /dev/shm, to see exactly what the fallback leaves there."""
    if not os.path.isdir("/dev/shm") or _mount_fs_type("/dev/shm") not in MEMORY_FILE_SYSTEMS:
        pytest.skip("no tmpfs /dev/shm")
    d = os.path.join("/dev/shm", f"tensorseal-test-{os.getpid()}-{os.urandom(4).hex()}")
    os.mkdir(d, 0o700)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def sealed_tensors(tmp_path, identity):
    """A multi-segment tensors-mode file, and the safetensors bytes it must give back."""
    import safetensors.numpy

    plain, sealed = tmp_path / "plain.safetensors", tmp_path / "model.tseal"
    safetensors.numpy.save_file(sample_tensors(), plain, metadata={"m": "1"})
    opts = SealOptions(segment_size=SMALL_SEGMENT)
    tensorseal.encrypt_file(plain, sealed, [identity.recipient()], options=opts)
    return sealed, plain.read_bytes()


def test_memfd_gives_back_safetensors_bytes_then_wipes(sealed_tensors, identity):
    import safetensors.numpy

    sealed, original = sealed_tensors
    assert _memfds() == []
    with plaintext_path(sealed, [identity]) as path:
        assert path.startswith("/proc/self/fd/")
        assert os.readlink(path).startswith("/memfd:tensorseal")
        with open(path, "rb") as f:
            assert f.read() == original
        assert_same(sample_tensors(), safetensors.numpy.load_file(path))  # path-only reader, mmaps the file
        # sealed against writes: no write(), no new writable shared mapping, no growth
        with open(path, "r+b") as f:
            seals = fcntl.fcntl(f.fileno(), fcntl.F_GET_SEALS)
            assert seals & fcntl.F_SEAL_GROW and seals & 0x0010  # F_SEAL_FUTURE_WRITE
            with pytest.raises(PermissionError):
                os.pwrite(f.fileno(), b"x", 0)  # inside the file: only the write seal refuses it
        held = os.open(path, os.O_RDONLY)  # a second open file: sees the wipe below
    try:
        assert os.fstat(held).st_size == 0 and os.pread(held, 16, 0) == b""  # truncated
    finally:
        os.close(held)
    _assert_gone(path)
    assert _memfds() == []


def test_torchscript_through_a_path(tmp_path, identity):
    """silero-vad's TorchScript model, sealed as a blob, opened by torch.jit.load(path)."""
    torch = pytest.importorskip("torch")
    silero_vad = pytest.importorskip("silero_vad")
    jit_path = os.path.join(os.path.dirname(silero_vad.__file__), "data", "silero_vad.jit")
    sealed = tmp_path / "vad.jit.tseal"
    opts = SealOptions(identity=ModelIdentity(name="silero-vad"))
    tensorseal.encrypt_file(jit_path, sealed, [identity.recipient()], options=opts)
    reference = torch.jit.load(jit_path)
    chunk = torch.sin(torch.arange(512, dtype=torch.float32) / 7).unsqueeze(0) * 0.3
    with plaintext_path(sealed, [identity], expect_name="silero-vad") as path:
        model = torch.jit.load(path)
    _assert_gone(path)
    assert _memfds() == []
    expected = reference(chunk, 16000)
    assert torch.equal(model(chunk, 16000), expected)  # the loaded model outlives the file


def test_onnxruntime_through_a_path_with_suffix(tmp_path, identity):
    ort = pytest.importorskip("onnxruntime")
    silero_vad = pytest.importorskip("silero_vad")
    onnx_path = os.path.join(os.path.dirname(silero_vad.__file__), "data", "silero_vad_16k_op15.onnx")
    sealed = tmp_path / "vad.onnx.tseal"
    tensorseal.encrypt_file(onnx_path, sealed, [identity.recipient()])
    feeds = {
        "input": (np.sin(np.arange(512, dtype=np.float32) / 5) * 0.3)[None, :],
        "state": np.zeros((2, 1, 128), np.float32),
        "sr": np.array(16000, np.int64),
    }
    with plaintext_path(sealed, [identity], suffix=".onnx") as path:
        assert path.endswith(".onnx") and os.path.islink(path)
        assert os.readlink(path).startswith("/proc/self/fd/")
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    _assert_gone(path)
    assert not os.path.exists(os.path.dirname(path))  # the symlink's directory too
    expected = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = session.run(None, feeds)
    assert all(np.array_equal(a, b) for a, b in zip(expected, got)) and expected[0].size == 1


def test_shm_fallback_is_unlinked_at_once(sealed_tensors, identity, shm_dir):
    sealed, original = sealed_tensors
    with plaintext_path(sealed, [identity], _memfd=False, _shm_dir=shm_dir) as path:
        assert path.startswith("/proc/self/fd/")
        target = os.readlink(path)
        assert target.startswith(shm_dir + "/.tensorseal-") and target.endswith(" (deleted)")
        assert os.listdir(shm_dir) == []  # no name while the plaintext is there
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path, "rb") as f:
            assert f.read() == original
    _assert_gone(path)
    assert os.listdir(shm_dir) == []


def test_shm_fallback_without_proc_keeps_the_name_until_exit(sealed_tensors, identity, shm_dir, tmp_path):
    import safetensors.numpy

    sealed, original = sealed_tensors
    no_proc = str(tmp_path / "no-proc")
    kw = {"_memfd": False, "_shm_dir": shm_dir, "_fd_dir": no_proc}
    with plaintext_path(sealed, [identity], suffix=".safetensors", **kw) as path:
        assert os.path.dirname(path) == shm_dir and path.endswith(".safetensors")
        assert os.listdir(shm_dir) == [os.path.basename(path)]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert_same(sample_tensors(), safetensors.numpy.load_file(path))
        with open(path, "rb") as f:
            assert f.read() == original
    _assert_gone(path)
    assert os.listdir(shm_dir) == []


def test_no_memory_file_system_is_an_error_not_a_disk_fallback(sealed_tensors, identity, tmp_path):
    sealed, _ = sealed_tensors
    entered = False
    with pytest.raises(UsageError, match="no memory-backed file"):
        with plaintext_path(sealed, [identity], _memfd=False, _shm_dir=str(tmp_path / "missing")):
            entered = True
    if _mount_fs_type(str(tmp_path)) in MEMORY_FILE_SYSTEMS:
        pytest.skip("the test's tmp dir is itself in memory")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UsageError, match="not in memory"):
        with plaintext_path(sealed, [identity], _memfd=False, _shm_dir=str(tmp_path)):
            entered = True
    assert not entered and sorted(os.listdir(tmp_path)) == before
    with pytest.raises(UsageError, match="separator"):
        with plaintext_path(sealed, [identity], suffix="/x.onnx"):
            entered = True
    assert not entered


@pytest.mark.parametrize("memfd", [True, False], ids=["memfd", "shm"])
def test_failures_never_yield_and_leave_nothing(tmp_path, identity, other_identity, shm_dir, memfd):
    sealed = tmp_path / "m.tseal"
    tsnp.save_file(sample_tensors(), sealed, [identity.recipient()], name="a", segment_size=SMALL_SEGMENT)
    entered = False
    kw = {"_memfd": memfd, "_shm_dir": shm_dir}
    with pytest.raises(NoIdentityMatchError):
        with plaintext_path(sealed, [other_identity], **kw):
            entered = True
    with pytest.raises(ModelMismatchError):
        with plaintext_path(sealed, [identity], expect_name="b", **kw):
            entered = True
    data = bytearray(sealed.read_bytes())
    data[-7] ^= 1  # the last segment: the memory file already holds the others when this fails
    sealed.write_bytes(bytes(data))
    with pytest.raises(SegmentAuthenticationError):
        with plaintext_path(sealed, [identity], **kw):
            entered = True
    assert not entered
    assert _memfds() == [] and os.listdir(shm_dir) == []


def test_an_error_in_the_block_still_wipes(sealed_tensors, identity):
    sealed, _ = sealed_tensors
    with pytest.raises(RuntimeError, match="framework failed"):
        with plaintext_path(sealed, [identity]) as path:
            held = os.open(path, os.O_RDONLY)
            raise RuntimeError("framework failed")
    try:
        assert os.fstat(held).st_size == 0
    finally:
        os.close(held)
    _assert_gone(path)
    assert _memfds() == []


def test_the_wipe_finds_every_written_byte():
    """The wipe zeroes the ranges that hold data (zeroing holes would only allocate)."""
    from tensorseal.memfile import _data_ranges

    fd = os.memfd_create("tensorseal-test")
    try:
        os.ftruncate(fd, 8 << 20)
        assert list(_data_ranges(fd, 8 << 20)) == []
        os.pwrite(fd, b"x" * 5000, 3 << 20)
        os.pwrite(fd, b"y", (8 << 20) - 1)
        ranges = list(_data_ranges(fd, 8 << 20))
        covered = lambda a, b: any(s <= a and b <= e for s, e in ranges)  # noqa: E731
        assert covered(3 << 20, (3 << 20) + 5000) and covered((8 << 20) - 1, 8 << 20)
        assert sum(e - s for s, e in ranges) < 1 << 20
        os.pwrite(fd, b"z" * (8 << 20), 0)
        assert list(_data_ranges(fd, 8 << 20)) == [(0, 8 << 20)]
    finally:
        os.close(fd)
