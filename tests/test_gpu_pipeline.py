"""The staged (GPU) load pipeline: GCM tags from ciphertext, the pipeline on the CPU
backend, the AES-256-CTR kernel emulated on the host, and, with a GPU, the CUDA backend."""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import struct
import subprocess

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import tensorseal.numpy as tsn
from tensorseal.errors import SegmentAuthenticationError, UsageError
from tensorseal.format.segments import Segment
from tensorseal.gpu import aes_kernel, loader
from tensorseal.gpu.ghash import GcmTagChecker, GmacChecker, gf_mul
from tensorseal.gpu.pipeline import CpuBackend, Stats, counter_block, load_tensors, plan_groups
from tensorseal.reader import SealedFile

from .conftest import SMALL_SEGMENT, assert_same, sample_tensors


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


needs_cuda = pytest.mark.skipif(not _cuda(), reason="no CUDA device (the CUDA backend is not tested here)")


# ---- GCM tags from the ciphertext alone ------------------------------------------------
def test_ghash_correction_gives_aesgcm_tag_on_random_inputs():
    rng = random.Random(20240611)
    lengths = [0, 1, 15, 16, 17, 31, 32, 33, 83, 255, 4096, 4097]
    for case in range(400):
        key, nonce = rng.randbytes(32), rng.randbytes(12)
        alen = rng.choice([0, 1, 15, 16, 17, 83, 83, rng.randrange(300)])
        clen = lengths[case % len(lengths)] if case < 2 * len(lengths) else rng.randrange(20000)
        aad, plaintext = rng.randbytes(alen), rng.randbytes(clen)
        sealed = AESGCM(key).encrypt(nonce, plaintext, aad)
        ciphertext, tag = sealed[:-16], sealed[-16:]
        checker = GcmTagChecker(key, aad)
        assert checker.tag(nonce, ciphertext) == tag, (alen, clen)
        assert checker.verify(nonce, memoryview(bytearray(ciphertext)), tag)


def test_ghash_check_rejects_changes():
    rng = random.Random(7)
    key, nonce, aad = rng.randbytes(32), rng.randbytes(12), rng.randbytes(83)
    sealed = AESGCM(key).encrypt(nonce, rng.randbytes(1000), aad)
    ciphertext, tag = bytearray(sealed[:-16]), sealed[-16:]
    checker = GcmTagChecker(key, aad)
    assert checker.verify(nonce, ciphertext, tag)
    ciphertext[500] ^= 1
    assert not checker.verify(nonce, ciphertext, tag)
    ciphertext[500] ^= 1
    assert not checker.verify(nonce, ciphertext[:-1], tag)  # truncated
    assert not checker.verify(nonce[::-1], ciphertext, tag)  # another segment's nonce
    assert not GcmTagChecker(key, aad[:-1] + b"x").verify(nonce, ciphertext, tag)
    assert not checker.verify(nonce, ciphertext, bytes(16))


def test_gmac_checker_matches_plain_segment_tags():
    rng = random.Random(3)
    for n in (1, 15, 16, 4096, 5000):
        key, nonce, aad, data = rng.randbytes(32), rng.randbytes(12), rng.randbytes(83), rng.randbytes(n)
        tag = AESGCM(key).encrypt(nonce, b"", aad + data)
        assert GmacChecker(key, aad).verify(nonce, data, tag)
        assert not GmacChecker(key, aad).verify(nonce, data[:-1] + bytes([data[-1] ^ 1]), tag)


def test_gf_mul_identity_and_commutativity():
    one = 1 << 127  # the field's 1 in GCM's bit-reflected order
    rng = random.Random(1)
    for _ in range(50):
        x, y = rng.getrandbits(128), rng.getrandbits(128)
        assert gf_mul(x, one) == x and gf_mul(one, y) == y
        assert gf_mul(x, y) == gf_mul(y, x)
        assert gf_mul(x, 0) == 0


# ---- planning ------------------------------------------------------------------------------
def test_plan_groups_cuts_at_limits_and_gaps():
    segs = [Segment(0, i, i == 3, i * 10, 10, i) for i in range(4)] + [Segment(2, 0, True, 100, 5, 4)]
    groups = plan_groups(segs, 25)
    assert [(g.start, g.length, len(g.segments)) for g in groups] == [(0, 20, 2), (20, 20, 2), (100, 5, 1)]
    assert [len(g.segments) for g in plan_groups(segs, 1)] == [1, 1, 1, 1, 1]  # a segment never splits
    assert plan_groups([], 10) == []


# ---- the pipeline on the CPU backend -----------------------------------------------------
class RecordingBackend(CpuBackend):
    """A CPU backend that keeps every destination, and what they held when zeroed."""

    def __init__(self) -> None:
        super().__init__()
        self.buffers: list[np.ndarray] = []
        self.before_zeroing: list[bytes] = []
        self.ctr_calls = 0

    def allocate(self, nbytes):
        buf = super().allocate(nbytes)
        self.buffers.append(buf)
        return buf

    def ctr_decrypt_inplace(self, key, jobs):
        self.ctr_calls += 1
        super().ctr_decrypt_inplace(key, jobs)

    def zero_and_free(self, dest):
        self.before_zeroing.append(bytes(dest))
        super().zero_and_free(dest)


def _seal(path, tensors=None, **kw):
    from tensorseal.recipients import SymmetricKey

    key = SymmetricKey.generate()
    tensors = sample_tensors() if tensors is None else tensors
    kw.setdefault("segment_size", SMALL_SEGMENT)
    tsn.save_file(tensors, path, [key], metadata={"m": "1"}, **kw)
    return key, tensors


def _pipeline_numpy(path, key, backend=None, **kw):
    backend = backend or CpuBackend()
    with SealedFile(path) as sealed:
        sealed.unlock([key])
        dests = load_tensors(sealed, backend, **kw)
        return {e.name: backend.tensor(dests[i], e) for i, e in enumerate(sealed.index.entries)}


@pytest.mark.parametrize("staging", [SMALL_SEGMENT, 3 * SMALL_SEGMENT + 1, 1 << 20])
@pytest.mark.parametrize("threads", [1, 3])
def test_cpu_pipeline_is_bit_identical_to_the_loader(tmp_path, staging, threads):
    path = tmp_path / "m.tseal"
    key, tensors = _seal(path)
    stats = Stats()
    got = _pipeline_numpy(path, key, threads=threads, staging_bytes=staging, stats=stats)
    assert_same(tensors, got)
    assert_same(tsn.load_file(path, [key]), got)
    assert stats.bytes_read == stats.bytes_decrypted == sum(t.nbytes for t in tensors.values())
    assert stats.bytes_plain == 0
    segments = sum(-(-t.nbytes // SMALL_SEGMENT) for t in tensors.values())
    assert -(-stats.bytes_read // max(staging, SMALL_SEGMENT)) <= stats.groups <= segments
    assert stats.staging_bytes <= max(staging, SMALL_SEGMENT)


def test_cpu_pipeline_default_segment_size(tmp_path):
    path = tmp_path / "m.tseal"
    rng = np.random.default_rng(5)
    tensors = {"big": rng.standard_normal(700_001).astype(np.float32), "b": rng.standard_normal(3).astype(np.float16)}
    key, _ = _seal(path, tensors, segment_size=1 << 20)
    assert_same(tensors, _pipeline_numpy(path, key, threads=2))


def test_cpu_pipeline_subset_of_tensors(tmp_path):
    path = tmp_path / "m.tseal"
    key, tensors = _seal(path)
    with SealedFile(path) as sealed:
        sealed.unlock([key])
        entries = sealed.index.entries
        wanted = [i for i, e in enumerate(entries) if e.name in ("embed.weight", "ids", "empty")]
        backend = CpuBackend()
        dests = load_tensors(sealed, backend, wanted)
        assert sorted(dests) == wanted
        for i in wanted:
            assert np.array_equal(backend.tensor(dests[i], entries[i]), tensors[entries[i].name])


def _locate(path, key, name, index):
    """(data offset in the file, length, tag offset) of segment ``index`` of ``name``."""
    with SealedFile(path) as sealed:
        sealed.unlock([key])
        t = sealed.index.by_name()[name]
        seg = sealed.segments(t)[index]
        h = sealed.header
        return h.data_offset + seg.start, seg.length, h.tags_offset + 16 * seg.tag_index


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def _load_expecting_failure(path, key, threads=1):
    backend = RecordingBackend()
    with pytest.raises(SegmentAuthenticationError) as info:
        _pipeline_numpy(path, key, backend, threads=threads, staging_bytes=2 * SMALL_SEGMENT)
    assert backend.buffers and len(backend.before_zeroing) == len(backend.buffers)
    for buf in backend.buffers:
        assert not buf.any(), "a destination kept bytes after the failure"
    return backend, str(info.value)


@pytest.mark.parametrize("threads", [1, 2])
def test_tampered_ciphertext_fails_and_zeroes_every_buffer(tmp_path, threads):
    path = tmp_path / "m.tseal"
    key, tensors = _seal(path)
    with SealedFile(path) as sealed:  # the last segment of the last tensor in data order
        sealed.unlock([key])
        last = sealed.index.entries[max(i for i, r in enumerate(sealed.runs) if r.length)].name
    where, n, _ = _locate(path, key, last, -1)
    _flip(path, where + n - 1)
    backend, message = _load_expecting_failure(path, key, threads)
    assert repr(last) in message
    if threads == 1:  # the good tensors were decrypted before the bad one was found, then wiped
        plain = {bytes(t.reshape(-1).view(np.uint8)) for t in tensors.values() if t.nbytes}
        assert any(b in plain for b in backend.before_zeroing)


def test_tampered_middle_segment_is_named(tmp_path):
    path = tmp_path / "m.tseal"
    key, _ = _seal(path)
    where, _, _ = _locate(path, key, "embed.weight", 2)
    _flip(path, where + 17)
    _, message = _load_expecting_failure(path, key)
    assert "segment 2 of tensor 'embed.weight'" in message


def test_tampered_tag_fails(tmp_path):
    path = tmp_path / "m.tseal"
    key, _ = _seal(path)
    _, _, tag = _locate(path, key, "ids", 0)
    _flip(path, tag + 3)
    _, message = _load_expecting_failure(path, key, threads=2)
    assert "segment 0 of tensor 'ids'" in message


def test_swapped_segments_fail(tmp_path):
    path = tmp_path / "m.tseal"
    key, _ = _seal(path)
    a, n, _ = _locate(path, key, "exact", 0)
    b, m, _ = _locate(path, key, "exact", 1)
    assert n == m
    with open(path, "r+b") as f:
        f.seek(a)
        first = f.read(n)
        f.seek(b)
        second = f.read(n)
        f.seek(a)
        f.write(second)
        f.seek(b)
        f.write(first)
    _, message = _load_expecting_failure(path, key)
    assert "tensor 'exact'" in message


def test_chacha_file_falls_back_to_the_host_loader(tmp_path):
    path = tmp_path / "m.tseal"
    key, _ = _seal(path, cipher="chacha20-poly1305")
    backend = RecordingBackend()
    with SealedFile(path) as sealed:
        sealed.unlock([key])
        assert loader.select_backend(CpuBackend()._fw, sealed, "cpu") is None
        assert loader.select_backend(CpuBackend()._fw, sealed, backend) is None
        with pytest.raises(UsageError):
            load_tensors(sealed, backend)
    assert not backend.buffers


def test_selective_file_verifies_plain_segments_and_decrypts_the_rest(tmp_path):
    path = tmp_path / "m.tseal"
    key, tensors = _seal(path, plain=["embed.*", "ids"])
    stats = Stats()
    got = _pipeline_numpy(path, key, threads=2, stats=stats)
    assert_same(tensors, got)
    assert stats.bytes_plain == tensors["embed.weight"].nbytes + tensors["ids"].nbytes
    assert stats.bytes_decrypted == sum(t.nbytes for t in tensors.values()) - stats.bytes_plain
    where, _, _ = _locate(path, key, "embed.weight", 1)  # a plain segment
    _flip(path, where)
    _, message = _load_expecting_failure(path, key)
    assert "segment 1 of tensor 'embed.weight'" in message


def test_unknown_or_unavailable_pipeline_is_a_usage_error(tmp_path):
    path = tmp_path / "m.tseal"
    key, _ = _seal(path)
    with SealedFile(path) as sealed:
        sealed.unlock([key])
        with pytest.raises(UsageError):
            loader.select_backend(CpuBackend()._fw, sealed, "gpu")
        with pytest.raises(UsageError):
            loader.select_backend(CpuBackend()._fw, sealed, object())
        if not _cuda():
            with pytest.raises(UsageError):
                loader.select_backend(CpuBackend()._fw, sealed, "cuda")


# ---- through tensorseal.torch -----------------------------------------------------------------
torch_dtypes = [
    "bool", "uint8", "int8", "int16", "uint16", "float16", "bfloat16", "int32", "uint32", "float32", "int64",
    "uint64", "float64", "complex64", "float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu",
]  # fmt: skip


def _same_torch(a, b):
    import torch

    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].device == b[k].device, k
        if a[k].numel():
            assert torch.equal(a[k].reshape(-1).view(torch.uint8), b[k].reshape(-1).view(torch.uint8)), k


def test_torch_load_file_through_the_cpu_pipeline_every_dtype(tmp_path):
    torch = pytest.importorskip("torch")
    import tensorseal.torch as tspt
    from tensorseal.recipients import SymmetricKey

    g = torch.Generator().manual_seed(0)
    tensors = {}
    for name in torch_dtypes:
        dtype = getattr(torch, name)
        src = (
            torch.randn(37, 29, generator=g, dtype=torch.complex64)
            if name == "complex64"
            else (torch.randn(37, 29, generator=g) * 4)
        )
        tensors[name] = src.to(dtype)
    tensors.update({"empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5, dtype=torch.float64)})
    key = SymmetricKey.generate()
    path = tmp_path / "m.tseal"
    tspt.save_file(tensors, path, [key], segment_size=SMALL_SEGMENT)
    expected = tspt.load_file(path, [key])
    got = tspt.load_file(path, [key], _pipeline="cpu", threads=2)
    _same_torch(expected, got)
    _same_torch(tensors, got)
    got["float32"] += 1  # writable, own memory
    with tspt.safe_open(path, [key], _pipeline="cpu") as f:
        for name in ("bfloat16", "float8_e4m3fn", "empty", "scalar"):
            _same_torch({name: tensors[name]}, {name: f.get_tensor(name)})
        assert torch.equal(f.get_slice("float32")[3:9], tensors["float32"][3:9])


def test_torch_pipeline_failure_raises_typed_error(tmp_path):
    pytest.importorskip("torch")
    import tensorseal.torch as tspt

    path = tmp_path / "m.tseal"
    key, _ = _seal(path)
    where, _, _ = _locate(path, key, "exact", 2)
    _flip(path, where)
    with pytest.raises(SegmentAuthenticationError, match="segment 2 of tensor 'exact'"):
        tspt.load_file(path, [key], _pipeline="cpu")
    with tspt.safe_open(path, [key], _pipeline="cpu") as f:
        f.get_tensor("ids")
        with pytest.raises(SegmentAuthenticationError):
            f.get_tensor("exact")


def test_torch_chacha_with_pipeline_requested_uses_the_host_loader(tmp_path):
    pytest.importorskip("torch")
    import tensorseal.torch as tspt

    path = tmp_path / "m.tseal"
    key, _ = _seal(path, cipher="chacha20-poly1305")
    _same_torch(tspt.load_file(path, [key]), tspt.load_file(path, [key], _pipeline="cpu"))


@pytest.mark.skipif(_cuda(), reason="checks the fallback on a machine without CUDA")
def test_cuda_device_without_a_gpu_takes_the_host_path(tmp_path):
    pytest.importorskip("torch")
    from tensorseal.torch import _Torch

    path = tmp_path / "m.tseal"
    key, _ = _seal(path)
    with SealedFile(path) as sealed:
        sealed.unlock([key])
        assert loader.select_backend(_Torch("cuda"), sealed, None) is None
        assert loader.select_backend(_Torch("cpu"), sealed, None) is None


# ---- the CUDA kernel, emulated on the host ------------------------------------------------
_PRELUDE = r"""
#define TS_HOST_EMULATION 1
#define TS_BSWAP(x) __builtin_bswap32(x)
#define __global__
#define __constant__ static const
#define __shared__ static
#define __syncthreads() ((void)0)
struct uint4 { unsigned int x, y, z, w; };
struct ts_dim3 { unsigned int x, y, z; };
static ts_dim3 threadIdx, blockIdx, blockDim, gridDim;
"""

_DRIVER = r"""
/* Runs every thread of every block in turn. A first pass over an empty job loads the
   shared tables (a block's threads each load a share of them before __syncthreads). */
extern "C" void ts_emulate(const u32* rk, const Job* jobs, unsigned njobs, unsigned gx, unsigned bx) {
    Job none = {0, 0, 0, 0, 0, 0};
    blockDim.x = bx; blockDim.y = blockDim.z = 1;
    gridDim.x = 1; gridDim.y = 1; gridDim.z = 1;
    for (unsigned t = 0; t < bx; ++t) { blockIdx.x = blockIdx.y = blockIdx.z = 0; threadIdx.x = t; tensorseal_aes256_ctr(rk, &none); }
    gridDim.x = gx; gridDim.y = njobs;
    for (unsigned y = 0; y < njobs; ++y)
        for (unsigned x = 0; x < gx; ++x)
            for (unsigned t = 0; t < bx; ++t) {
                blockIdx.x = x; blockIdx.y = y; threadIdx.x = t;
                tensorseal_aes256_ctr(rk, jobs);
            }
}
"""


@pytest.fixture(scope="module")
def emulated_kernel(tmp_path_factory):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler to run the kernel source on the host")
    out = tmp_path_factory.mktemp("kernel") / "aes_kernel.so"
    source = _PRELUDE + aes_kernel.SOURCE + _DRIVER
    subprocess.run(
        [cxx, "-O2", "-shared", "-fPIC", "-x", "c++", "-", "-o", str(out)], input=source.encode(), check=True
    )
    lib = ctypes.CDLL(str(out))
    lib.ts_emulate.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint]
    return lib


def _run_emulated(lib, key, buffers, counters, gx, bx):
    rk = (ctypes.c_uint32 * 60)(*aes_kernel.expand_key_256(key))
    table = bytearray(aes_kernel.JOB.size * len(buffers))
    for i, (buf, ctr) in enumerate(zip(buffers, counters)):
        aes_kernel.JOB.pack_into(
            table, aes_kernel.JOB.size * i, buf.ctypes.data, buf.nbytes, *struct.unpack(">IIII", ctr)
        )
    jobs = (ctypes.c_char * len(table)).from_buffer(table)
    lib.ts_emulate(ctypes.addressof(rk), ctypes.addressof(jobs), len(buffers), gx, bx)


def test_key_expansion_matches_fips197():
    key = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")  # FIPS-197 A.3
    w = aes_kernel.expand_key_256(key)
    assert (w[8], w[9], w[58], w[59]) == (0x9BA35411, 0x8E6925AF, 0x046DF344, 0x706C631E)
    assert aes_kernel.SBOX[0x00] == 0x63 and aes_kernel.SBOX[0x53] == 0xED and aes_kernel.SBOX[0xFF] == 0x16


@pytest.mark.parametrize("gx,bx", [(1, 1), (2, 4), (64, 32)])
def test_emulated_kernel_decrypts_aesgcm_ciphertext(emulated_kernel, gx, bx):
    rng = random.Random(gx * 1000 + bx)
    for _ in range(4):
        key = rng.randbytes(32)
        lengths = [1, 15, 16, 17, 4096, rng.randrange(1, 20000), rng.randrange(1, 300)]
        nonces = [rng.randbytes(12) for _ in lengths]
        plains = [rng.randbytes(n) for n in lengths]
        buffers = [
            np.frombuffer(bytearray(AESGCM(key).encrypt(nonce, p, b"aad")[:-16]), dtype=np.uint8)
            for nonce, p in zip(nonces, plains)
        ]
        _run_emulated(emulated_kernel, key, buffers, [counter_block(n) for n in nonces], gx, bx)
        for buf, p in zip(buffers, plains):
            assert buf.tobytes() == p


def test_emulated_kernel_counter_is_inc32(emulated_kernel):
    rng = random.Random(9)
    key, nonce = rng.randbytes(32), rng.randbytes(12)
    for low in (0, 7, 0xFFFFFFFE):  # the last one wraps the low 32 bits, as GCM's inc32 does
        n = 80
        ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        stream = b"".join(ecb.update(nonce + struct.pack(">I", (low + b) & 0xFFFFFFFF)) for b in range(5))
        buf = np.zeros(n, dtype=np.uint8)
        _run_emulated(emulated_kernel, key, [buf], [nonce + struct.pack(">I", low)], 1, 2)
        assert buf.tobytes() == stream[:n]
    ctr = Cipher(algorithms.AES(key), modes.CTR(nonce + struct.pack(">I", 2))).encryptor().update(bytes(64))
    buf = np.zeros(64, dtype=np.uint8)
    _run_emulated(emulated_kernel, key, [buf], [counter_block(nonce)], 1, 1)
    assert buf.tobytes() == ctr


def test_cuda_backend_job_table_drives_the_kernel_over_tensor_segments(emulated_kernel):
    """The CUDA backend's job table (pointers + offsets into torch tensors, counters),
    run through the emulated kernel: each segment of two tensors decrypts."""
    torch = pytest.importorskip("torch")
    from tensorseal.gpu.cuda import job_table
    from tensorseal.gpu.pipeline import CtrJob

    rng = random.Random(5)
    key = rng.randbytes(32)
    seg = 4096
    plains = [rng.randbytes(3 * seg + 77), rng.randbytes(seg)]
    dests, jobs = [], []
    for t, p in enumerate(plains):
        buf = bytearray()
        for i, off in enumerate(range(0, len(p), seg)):
            nonce = struct.pack(">III", t, i, int(off + seg >= len(p)))
            buf += AESGCM(key).encrypt(nonce, p[off : off + seg], b"")[:-16]
        dest = torch.frombuffer(buf, dtype=torch.uint8).clone()
        dests.append(dest)
        for i, off in enumerate(range(0, len(p), seg)):
            nonce = struct.pack(">III", t, i, int(off + seg >= len(p)))
            jobs.append(CtrJob(dest, off, min(seg, len(p) - off), counter_block(nonce)))
    table, longest = job_table(jobs)
    assert longest == seg
    rk = (ctypes.c_uint32 * 60)(*aes_kernel.expand_key_256(key))
    raw = (ctypes.c_char * len(table)).from_buffer(table)
    emulated_kernel.ts_emulate(ctypes.addressof(rk), ctypes.addressof(raw), len(jobs), 3, 8)
    for dest, p in zip(dests, plains):
        assert bytes(dest.numpy()) == p
    with pytest.raises(UsageError):
        job_table([CtrJob(dests[0], 1, 16, bytes(16))])


def test_kernel_source_compiles_for_the_gpu_with_nvcc(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    src = tmp_path / "k.cu"
    src.write_text(aes_kernel.SOURCE)
    done = subprocess.run(
        [nvcc, "-arch=sm_90", "-cubin", "-o", str(tmp_path / "k.cubin"), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# ---- the CUDA backend (only with a GPU) -------------------------------------------------------
@needs_cuda
def test_cuda_kernel_matches_cryptography_on_random_data():
    pytest.importorskip("cupy")
    import torch

    from tensorseal.gpu.cuda import CudaBackend
    from tensorseal.gpu.pipeline import CtrJob

    backend = CudaBackend("cuda")
    rng = random.Random(11)
    try:
        for _ in range(10):
            key = rng.randbytes(32)
            lengths = [1, 15, 16, 17, 4096, 1 << 20, rng.randrange(1, 3 << 20)]
            nonces = [rng.randbytes(12) for _ in lengths]
            plains = [os.urandom(n) for n in lengths]
            cts = [AESGCM(key).encrypt(nonce, p, b"")[:-16] for nonce, p in zip(nonces, plains)]
            dests = [torch.frombuffer(bytearray(c), dtype=torch.uint8).to("cuda") for c in cts]
            backend.ctr_decrypt_inplace(key, [CtrJob(d, 0, d.numel(), counter_block(n)) for d, n in zip(dests, nonces)])
            backend.synchronize()
            for d, p in zip(dests, plains):
                assert bytes(d.cpu().numpy()) == p
    finally:
        backend.close()


@needs_cuda
def test_cuda_load_file_matches_cpu_and_detects_tampering(tmp_path):
    pytest.importorskip("cupy")
    import torch

    import tensorseal.torch as tspt
    from tensorseal.gpu.cuda import CudaBackend

    path = tmp_path / "m.tseal"
    key, _ = _seal(path)
    cpu = tspt.load_file(path, [key])
    backend = CudaBackend("cuda", timing=True)
    gpu = tspt.load_file(path, [key], device="cuda", _pipeline=backend)
    assert all(t.device.type == "cuda" for t in gpu.values())
    _same_torch(cpu, {k: v.cpu() for k, v in gpu.items()})
    assert backend.kernel_seconds()[1] == sum(t.numel() * t.element_size() for t in cpu.values())
    _same_torch(cpu, {k: v.cpu() for k, v in tspt.load_file(path, [key], device="cuda").items()})
    with tspt.safe_open(path, [key], device="cuda") as f:
        assert torch.equal(f.get_tensor("ids").cpu(), cpu["ids"])
    where, _, _ = _locate(path, key, "embed.weight", 3)
    _flip(path, where)
    with pytest.raises(SegmentAuthenticationError, match="segment 3 of tensor 'embed.weight'"):
        tspt.load_file(path, [key], device="cuda")
