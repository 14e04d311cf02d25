"""Shared helpers for the benchmark suite: sizes, the synthetic model, file writers,
checksums. Imported by both ``run.py`` (the orchestrator) and ``child.py`` (the measured
process), so it imports only the standard library at module level; numpy is imported
inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Iterator, Mapping
from typing import Any

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
SEED = 20240611

# Big tensors cycle through these sizes (MiB), like the projection/MLP weights of a
# transformer; small tensors (norm weights, biases) through these byte sizes.
BIG_MIB = (16, 32, 48, 64, 24, 40, 56)
SMALL_BYTES = (4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB)
SMALL_COUNT = 32
ROW = 1024  # float32 elements per row of a big tensor (4 KiB rows)

BLOB_MAGIC = b"TSBENCH-BLOB\n"  # not a safetensors file: sealed in blob mode
NAIVE_MAGIC = b"NAIVE001"
NAIVE_PIECE = (1 << 31) - (1 << 20)  # AESGCM takes at most 2**31-1 bytes per call


# ---- sizes ------------------------------------------------------------------------------
def parse_size(text: str) -> int:
    """'256M', '1G', '4G', '64MiB', '1048576' -> bytes (binary units; multiple of 4 KiB)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?[bB])?\s*", text)
    if not m:
        raise ValueError(f"cannot parse size {text!r} (use e.g. 64M, 256M, 1G, 4G)")
    n = float(m.group(1)) * {"": 1, "k": KIB, "m": MIB, "g": GIB}[m.group(2).lower()]
    size = int(n) // (4 * KIB) * (4 * KIB)
    if size < 4 * MIB:
        raise ValueError(f"size {text!r} is too small (at least 4M)")
    return size


def fmt_size(n: int) -> str:
    for unit, mult in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= mult and n % mult == 0:
            return f"{n // mult} {unit}"
    for unit, mult in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= mult:
            return f"{n / mult:.2f} {unit}"
    return f"{n} B"


def size_tag(n: int) -> str:
    return fmt_size(n).replace(" ", "").replace("iB", "")


# ---- the synthetic model ----------------------------------------------------------------
def model_spec(total: int) -> list[tuple[str, tuple[int, ...]]]:
    """Deterministic float32 tensors whose data adds up to exactly ``total`` bytes: big
    tensors of 16-64 MiB (2-D, 1024 columns) plus SMALL_COUNT small 1-D ones."""
    small: list[int] = []
    budget = total // 8  # small tensors never take more than 1/8 of the data
    for i in range(SMALL_COUNT):
        s = SMALL_BYTES[i % len(SMALL_BYTES)]
        if sum(small) + s > budget:
            break
        small.append(s)
    rest = total - sum(small)
    big: list[int] = []
    i = 0
    while rest > 0:
        s = min(BIG_MIB[i % len(BIG_MIB)] * MIB, rest)
        if 0 < rest - s < 4 * MIB:  # no tiny tail tensor: fold it into this one
            s = rest
        big.append(s)
        rest -= s
        i += 1
    spec: list[tuple[str, tuple[int, ...]]] = []
    for i, s in enumerate(big):
        spec.append((f"model.layers.{i:03d}.weight", (s // (4 * ROW), ROW)))
    for j, s in enumerate(small):
        spec.append((f"model.layers.{j % len(big):03d}.norm{j // len(big)}.bias", (s // 4,)))
    assert sum(_nbytes(shape) for _, shape in spec) == total
    return spec


def _nbytes(shape: tuple[int, ...]) -> int:
    n = 4
    for d in shape:
        n *= d
    return n


def make_tensor(index: int, shape: tuple[int, ...]) -> Any:
    """Tensor ``index`` of the model: N(0, 0.02) float32 from a per-tensor seed."""
    import numpy as np

    rng = np.random.default_rng([SEED, index])
    arr = rng.standard_normal(_nbytes(shape) // 4, dtype=np.float32)
    arr *= np.float32(0.02)
    return arr.reshape(shape)


def tensor_digest(name: str, dtype: str, shape: tuple[int, ...] | list[int], sha: str) -> str:
    return f"{name}:{dtype}:{','.join(map(str, shape))}:{sha}\n"


def write_plain_safetensors(path: str, total: int) -> dict[str, Any]:
    """Write the model as a plain safetensors file, one tensor at a time (memory stays at
    one tensor). Returns the manifest entries: per-tensor checksums and the overall one."""
    spec = model_spec(total)
    order = sorted(range(len(spec)), key=lambda i: spec[i][0])  # safetensors: by name
    header: dict[str, Any] = {"__metadata__": {"format": "np", "generator": "tensorseal bench"}}
    off = 0
    for i in order:
        name, shape = spec[i]
        n = _nbytes(shape)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    entries = []
    file_sha = hashlib.sha256()
    with open(path, "wb") as f:
        prefix = struct.pack("<Q", len(raw)) + raw
        f.write(prefix)
        file_sha.update(prefix)
        for i in order:
            name, shape = spec[i]
            arr = make_tensor(i, shape)
            mv = memoryview(arr.reshape(-1).view("u1"))
            f.write(mv)
            file_sha.update(mv)
            entries.append([name, "F32", list(shape), hashlib.sha256(mv).hexdigest()])
    return {
        "tensors": entries,
        "digest": model_digest(entries),
        "n_tensors": len(entries),
        "data_bytes": total,
        "file_bytes": os.path.getsize(path),
        "file_sha256": file_sha.hexdigest(),
    }


def model_digest(entries: list[list[Any]]) -> str:
    h = hashlib.sha256()
    for name, dtype, shape, sha in sorted(entries, key=lambda e: e[0]):
        h.update(tensor_digest(name, dtype, shape, sha).encode())
    return h.hexdigest()


def read_plain_tensors(path: str) -> dict[str, Any]:
    """Read a safetensors file into one owned buffer and return numpy views (no library
    needed). Used by the save contenders to get their input outside the timed region."""
    import numpy as np

    with open(path, "rb", buffering=0) as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        size = os.fstat(f.fileno()).st_size - 8 - n
        buf = np.empty(size, dtype=np.uint8)
        mv = memoryview(buf)
        got = 0
        while got < size:
            r = f.readinto(mv[got : got + 64 * MIB])
            if not r:
                raise OSError("file shrank")
            got += r
    dtypes = {"F32": np.float32, "F16": np.float16, "U8": np.uint8, "I64": np.int64}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        out[name] = buf[b:end].view(dtypes[e["dtype"]]).reshape(e["shape"])
    return out


# ---- other inputs -------------------------------------------------------------------------
def write_blob(path: str, total: int) -> str:
    """A non-safetensors file of ``total`` bytes (deterministic); returns its sha256."""
    import numpy as np

    rng = np.random.default_rng([SEED, 999_999])
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = total
        first = True
        while left:
            n = min(64 * MIB, left)
            chunk = bytearray(rng.bytes(n))
            if first:
                chunk[: len(BLOB_MAGIC)] = BLOB_MAGIC
                first = False
            f.write(chunk)
            h.update(chunk)
            left -= n
    return h.hexdigest()


def write_naive(src: str, dst: str, key: bytes) -> None:
    """The 'naive' sealed format: magic | sha256(plaintext) | u64 length | pieces, each
    nonce(12) + AES-256-GCM ciphertext+tag of up to NAIVE_PIECE bytes. A model under
    ~2 GiB is one piece, i.e. one AESGCM call."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(key)
    size = os.path.getsize(src)
    with open(src, "rb") as f:
        h = hashlib.sha256()
        for chunk in iter(lambda: f.read(64 * MIB), b""):
            h.update(chunk)
        f.seek(0)
        with open(dst, "wb") as out:
            out.write(NAIVE_MAGIC + h.digest() + struct.pack("<Q", size))
            for i, chunk in enumerate(iter(lambda: f.read(NAIVE_PIECE), b"")):
                nonce = struct.pack("<4sQ", b"nv00", i)
                out.write(nonce)
                out.write(aead.encrypt(nonce, chunk, None))
                del chunk


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    buf = bytearray(16 * MIB)
    mv = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(mv[:n])
    return h.hexdigest()


def warm(path: str) -> float:
    """Read the file once so it sits in the page cache; returns seconds taken."""
    import time

    t0 = time.perf_counter()
    buf = bytearray(16 * MIB)
    with open(path, "rb", buffering=0) as f:
        try:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
        except (AttributeError, OSError):
            pass
        while f.readinto(buf):
            pass
    return time.perf_counter() - t0


# ---- checking loaded tensors --------------------------------------------------------------
def _as_numpy(t: Any) -> Any:
    import numpy as np

    if isinstance(t, np.ndarray):
        return t
    # torch.Tensor (without importing torch here)
    return t.detach().cpu().contiguous().numpy()


def loaded_entries(tensors: Mapping[str, Any]) -> Iterator[list[Any]]:
    import numpy as np

    names = {np.dtype(np.float32): "F32"}
    for name, t in tensors.items():
        a = np.ascontiguousarray(_as_numpy(t))
        dtype = names.get(a.dtype, str(a.dtype))
        yield [name, dtype, list(a.shape), hashlib.sha256(a.reshape(-1).view(np.uint8)).hexdigest()]


def check_tensors(tensors: Mapping[str, Any], manifest: Mapping[str, Any]) -> tuple[bool, str]:
    """Compare loaded tensors with the manifest: (ok, detail)."""
    got = list(loaded_entries(tensors))
    if model_digest(got) == manifest["digest"]:
        return True, f"{len(got)} tensors, digest {manifest['digest'][:16]} matches"
    want = {e[0]: e for e in manifest["tensors"]}
    have = {e[0]: e for e in got}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing or extra:
        return False, f"tensor names differ (missing {missing[:3]}, unexpected {extra[:3]})"
    bad = [n for n in want if want[n] != have[n]]
    return False, f"{len(bad)} tensors differ, e.g. {bad[0]!r}: want {want[bad[0]][1:3]}, got {have[bad[0]][1:3]}"
