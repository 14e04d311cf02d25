#!/usr/bin/env python
"""The GPU path: correctness checks and benchmark, one command ("GPU path" in BENCHMARKS.md).

    pip install -e '.[torch,cuda,bench]'          # a CUDA build of torch, CuPy, safetensors
    python bench/gpu.py [--sizes 4G,16G] [--dtypes f32,bf16] [--runs 3] [--dir /tmp/tsgpu]

On a machine with CUDA and CuPy it

1. checks the AES-256-CTR kernel against ``cryptography`` on random keys, nonces and
   lengths (1 byte to 64 MiB, many segments per launch), then loads a small sealed file
   to the GPU and compares it byte for byte with the CPU loader, and checks that a
   flipped byte raises SegmentAuthenticationError with every GPU buffer zeroed;
2. for each size and dtype writes a plain safetensors file and the same model sealed
   (AES-256-GCM, 1 MiB segments) under ``--dir`` (deleted afterwards), reads both once
   into the page cache, then times, each run in a fresh process:
   ``safetensors.torch.load_file(p, device="cuda")`` and
   ``tensorseal.torch.load_file(p, key, device="cuda")`` (CUDA already initialised in
   both; the CuPy kernel is loaded inside the timed call), each followed by
   ``torch.cuda.synchronize()``; the child reports the load wall time, host peak RSS
   (VmHWM from /proc/self/status) and its RSS before the load, the kernel time from
   CUDA events, and a checksum of the tensors (both contenders must agree);
3. measures the kernel alone (1 GiB in 1 MiB segments, CUDA events) and pinned
   host-to-device copies, for reference;
4. prints a markdown table with the targets (4 GiB: >= 1.5x safetensors; kernel >= 200
   GB/s; host RSS growth <= the staging buffers) and writes
   ``bench/results/gpu-latest.{md,json}``.

Without CUDA (or CuPy) it says so, runs the same pipeline on the CPU backend on a small
model (``--cpu-size``) to show the logic works, and exits with status 2: the GPU part was
NOT run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as C

DTYPES = {"f32": ("F32", 4), "bf16": ("BF16", 2)}
SEGMENT = 1 << 20


# ---- the model files ------------------------------------------------------------------------
def write_model(path: str, total: int, dtype: str) -> None:
    """A safetensors file of ``total`` bytes of tensors: the shapes of the main benchmark
    (16-64 MiB weights plus small biases), random bytes (what AES and DMA see does not
    depend on the values)."""
    import numpy as np

    st, size = DTYPES[dtype]
    spec = C.model_spec(total)
    header: dict[str, Any] = {"__metadata__": {"generator": "tensorseal bench/gpu.py"}}
    off = 0
    shapes = []
    for name, shape in spec:
        n = 4
        for d in shape:
            n *= d
        shape2 = (*shape[:-1], shape[-1] * 4 // size)
        header[name] = {"dtype": st, "shape": list(shape2), "data_offsets": [off, off + n]}
        shapes.append((name, n))
        off += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(C.SEED)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for _, n in shapes:
            f.write(rng.bytes(n))


def seal(plain: str, sealed: str, key: Any) -> float:
    import tensorseal
    from tensorseal.writer import SealOptions

    t0 = time.perf_counter()
    tensorseal.encrypt_file(plain, sealed, [key], options=SealOptions(segment_size=SEGMENT))
    return time.perf_counter() - t0


# ---- the measured child process ------------------------------------------------------------------
def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _checksum(tensors: dict[str, Any]) -> str:
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].reshape(-1).view(torch.uint8)
        words = t[: t.numel() // 4 * 4].view(torch.int32)
        h.update(name.encode())
        h.update(str(int(words.sum(dtype=torch.int64))).encode())
        h.update(t[::4099].cpu().numpy().tobytes())
    return h.hexdigest()


def child(contender: str, path: str, keyfile: str, threads: int | None) -> None:
    import torch

    torch.cuda.init()
    torch.empty(1, device="cuda")
    torch.cuda.synchronize()
    import safetensors.torch  # noqa: F401

    import tensorseal.torch
    from tensorseal.gpu import cuda as tcuda

    before = _status("VmRSS")
    out: dict[str, Any] = {}
    if contender == "safetensors":
        from safetensors.torch import load_file

        t0 = time.perf_counter()
        tensors = load_file(path, device="cuda")
        torch.cuda.synchronize()
        out["load_s"] = time.perf_counter() - t0
    else:
        from tensorseal.recipients import SymmetricKey

        key = SymmetricKey.parse(Path(keyfile).read_text().strip())
        t0 = time.perf_counter()
        backend = tcuda.CudaBackend("cuda", timing=True)
        tensors = tensorseal.torch.load_file(path, [key], device="cuda", threads=threads, _pipeline=backend)
        torch.cuda.synchronize()
        out["load_s"] = time.perf_counter() - t0
        seconds, nbytes = backend.kernel_seconds()
        out.update(kernel_s=seconds, kernel_bytes=nbytes, staging=backend.staging_allocated)
    out.update(hwm=_status("VmHWM"), rss_before=before, checksum=_checksum(tensors),
               data_bytes=sum(t.numel() * t.element_size() for t in tensors.values()))  # fmt: skip
    print("RESULT " + json.dumps(out))


def run_child(contender: str, path: str, keyfile: str, threads: int | None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", contender, path, keyfile]
    if threads:
        cmd += ["--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{contender} child failed ({done.returncode}):\n{done.stderr[-3000:]}")


# ---- correctness on the GPU ----------------------------------------------------------------------
def gpu_checks(workdir: str) -> list[str]:
    """Kernel vs cryptography, a load vs the CPU loader, tamper detection. Returns lines."""
    import random

    import torch
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    import tensorseal.numpy as tsn
    import tensorseal.torch as tspt
    from tensorseal.errors import SegmentAuthenticationError
    from tensorseal.gpu.cuda import CudaBackend
    from tensorseal.gpu.pipeline import CtrJob, counter_block
    from tensorseal.recipients import SymmetricKey

    lines = []
    rng = random.Random(2024)
    backend = CudaBackend("cuda")
    cases = 0
    for _ in range(20):
        key = rng.randbytes(32)
        lengths = [1, 15, 16, 17, 4095, 4096, 1 << 20, 64 << 20] + [rng.randrange(1, 5 << 20) for _ in range(24)]
        nonces = [rng.randbytes(12) for _ in lengths]
        plains = [os.urandom(n) for n in lengths]
        cts = [AESGCM(key).encrypt(nc, p, b"aad")[:-16] for nc, p in zip(nonces, plains)]
        dests = [torch.frombuffer(bytearray(c), dtype=torch.uint8).to("cuda") for c in cts]
        backend.ctr_decrypt_inplace(key, [CtrJob(d, 0, d.numel(), counter_block(n)) for d, n in zip(dests, nonces)])
        backend.synchronize()
        for d, p in zip(dests, plains):
            if bytes(d.cpu().numpy()) != p:
                raise SystemExit(f"KERNEL MISMATCH: a {len(p)}-byte segment differs from cryptography's AES-GCM")
        cases += len(lengths)
    backend.close()
    lines.append(f"- kernel vs cryptography AES-GCM: {cases} random segments (1 B to 64 MiB), all identical")

    import numpy as np

    rng2 = np.random.default_rng(1)
    tensors = {
        f"t{i}": rng2.standard_normal(n).astype(np.float32) for i, n in enumerate([1, 7, 1000, 300_001, 2_000_003])
    }
    tensors["empty"] = np.zeros((0, 3), dtype=np.float32)
    key = SymmetricKey.generate()
    path = os.path.join(workdir, "check.tseal")
    tsn.save_file(tensors, path, [key], segment_size=64 << 10)
    cpu = tspt.load_file(path, [key])
    gpu = tspt.load_file(path, [key], device="cuda", _pipeline="cuda")
    for k in cpu:
        if not torch.equal(cpu[k].view(torch.uint8), gpu[k].cpu().view(torch.uint8)) or gpu[k].device.type != "cuda":
            raise SystemExit(f"LOAD MISMATCH in tensor {k!r}")
    lines.append("- load_file(device='cuda') through the kernel: bit-identical to the CPU loader")

    class Recording(CudaBackend):
        def __init__(self) -> None:
            super().__init__("cuda")
            self.dests: list[Any] = []

        def allocate(self, nbytes: int) -> Any:
            d = super().allocate(nbytes)
            self.dests.append(d)
            return d

    from tensorseal.reader import SealedFile

    with SealedFile(path) as sf:
        sf.unlock([key])
        seg = sf.segments(sf.index.by_name()["t4"])[3]
        where = sf.header.data_offset + seg.start + 5
    with open(path, "r+b") as f:
        f.seek(where)
        b = f.read(1)
        f.seek(where)
        f.write(bytes([b[0] ^ 1]))
    rec = Recording()
    try:
        tspt.load_file(path, [key], device="cuda", _pipeline=rec)
    except SegmentAuthenticationError as exc:
        if any(int(d.count_nonzero()) for d in rec.dests):
            raise SystemExit("TAMPER: a GPU buffer was not zeroed after the failure") from None
        lines.append(f"- tampered byte: SegmentAuthenticationError ({exc}); all {len(rec.dests)} GPU buffers zeroed")
    else:
        raise SystemExit("TAMPER NOT DETECTED")
    return lines


def kernel_bench() -> tuple[float, float]:
    """(kernel GB/s on 1 GiB in 1 MiB segments, pinned H2D copy GB/s), best of 5."""
    import torch

    from tensorseal.gpu.cuda import CudaBackend
    from tensorseal.gpu.pipeline import CtrJob, counter_block

    n = 1 << 30
    buf = torch.empty(n, dtype=torch.uint8, device="cuda")
    backend = CudaBackend("cuda", timing=True)
    jobs = [CtrJob(buf, off, SEGMENT, counter_block(off.to_bytes(12, "big"))) for off in range(0, n, SEGMENT)]
    best = 0.0
    for _ in range(5):
        backend.reset_timing()
        backend.ctr_decrypt_inplace(bytes(32), jobs)
        backend.synchronize()
        s, b = backend.kernel_seconds()
        best = max(best, b / s / 1e9)
    backend.close()
    host = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    copy = 0.0
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        buf.copy_(host, non_blocking=True)
        end.record()
        torch.cuda.synchronize()
        copy = max(copy, n / (start.elapsed_time(end) / 1000) / 1e9)
    return best, copy


# ---- without a GPU -----------------------------------------------------------------------------
def cpu_demo(size: int, threads: int | None) -> None:
    """The pipeline on the CPU backend vs the host loader, in this process."""
    import tensorseal.numpy as tsn
    from tensorseal.gpu.pipeline import CpuBackend, Stats, load_tensors
    from tensorseal.reader import SealedFile
    from tensorseal.recipients import SymmetricKey

    with tempfile.TemporaryDirectory(prefix="tsgpu-") as d:
        plain, sealed = os.path.join(d, "m.safetensors"), os.path.join(d, "m.tseal")
        write_model(plain, size, "f32")
        key = SymmetricKey.generate()
        seal(plain, sealed, key)
        C.warm(sealed)
        rows = []
        for label in (
            "host loader (device='cpu')",
            "staged pipeline, CpuBackend",
            "host loader (device='cpu')",
            "staged pipeline, CpuBackend",
        ):
            t0 = time.perf_counter()
            if label.startswith("host"):
                out = tsn.load_file(sealed, [key], threads=threads)
                stats = None
            else:
                stats = Stats()
                with SealedFile(sealed) as sf:
                    sf.unlock([key])
                    backend = CpuBackend()
                    dests = load_tensors(sf, backend, threads=threads, stats=stats)
                    out = {e.name: backend.tensor(dests[i], e) for i, e in enumerate(sf.index.entries)}
            dt = time.perf_counter() - t0
            digest = hashlib.sha256()
            for name in sorted(out):
                digest.update(out[name].tobytes())
            rows.append((label, dt, digest.hexdigest()[:16], stats))
            del out
    print(f"\nCPU backend demonstration ({C.fmt_size(size)} float32, 1 MiB segments, {os.cpu_count()} cores):\n")
    print("| loader | load call | GB/s | tensors sha256 |")
    print("|---|---|---|---|")
    for label, dt, digest, _ in rows:
        print(f"| {label} | {dt:.3f} s | {size / dt / 1e9:.2f} | {digest} |")
    same = len({r[2] for r in rows}) == 1
    print(f"\nidentical output: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


# ---- the orchestrator ------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="4G,16G")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dir", default=None, help="where the model files go (needs 2x the largest size free)")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--cpu-size", default="256M", help="model size of the CPU demonstration (no GPU)")
    ap.add_argument("--child", nargs=3, metavar=("CONTENDER", "PATH", "KEYFILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.threads)
        return 0

    from tensorseal.gpu import cuda as tcuda

    try:
        import cupy  # noqa: F401

        have_cupy = True
    except ImportError:
        have_cupy = False
    if not tcuda.cuda_available() or not have_cupy:
        why = (
            "no CUDA device visible to torch"
            if not tcuda.cuda_available()
            else "CuPy is not installed (pip install 'tensorseal[cuda]')"
        )
        print(f"bench/gpu.py: {why}.\nThe GPU checks and the GPU benchmark were NOT run; no GPU numbers were produced.")
        cpu_demo(C.parse_size(args.cpu_size), args.threads)
        return 2

    import torch

    sizes = [C.parse_size(s) for s in args.sizes.split(",")]
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    workdir = args.dir or tempfile.mkdtemp(prefix="tsgpu-")
    os.makedirs(workdir, exist_ok=True)
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "gpu": torch.cuda.get_device_name(0),
        "host": f"{platform.node()} {os.cpu_count()} cores",
        "torch": torch.__version__,
        "runs": args.runs,
        "results": [],
    }
    print("## Correctness\n")
    checks = gpu_checks(workdir)
    print("\n".join(checks))
    report["checks"] = checks
    kernel_gbs, h2d_gbs = kernel_bench()
    report.update(kernel_gbs=kernel_gbs, h2d_gbs=h2d_gbs)
    print(f"\nkernel alone: {kernel_gbs:.1f} GB/s (1 GiB, 1 MiB segments); pinned H2D copy: {h2d_gbs:.1f} GB/s\n")

    from tensorseal.recipients import SymmetricKey

    key = SymmetricKey.generate()
    keyfile = os.path.join(workdir, "key.txt")
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(str(key))
    try:
        for size in sizes:
            for dtype in dtypes:
                plain, sealed = os.path.join(workdir, "m.safetensors"), os.path.join(workdir, "m.tseal")
                write_model(plain, size, dtype)
                seal_s = seal(plain, sealed, key)
                C.warm(plain)
                C.warm(sealed)
                row: dict[str, Any] = {"size": size, "dtype": dtype, "seal_s": seal_s}
                for contender, path in (("safetensors", plain), ("tensorseal", sealed)):
                    runs = [run_child(contender, path, keyfile, args.threads) for _ in range(args.runs)]
                    row[contender] = runs
                    print(f"{C.fmt_size(size)} {dtype} {contender}: " + ", ".join(f"{r['load_s']:.3f}s" for r in runs))
                sums = {r["checksum"] for c in ("safetensors", "tensorseal") for r in row[c]}
                row["identical"] = len(sums) == 1
                report["results"].append(row)
                os.unlink(plain)
                os.unlink(sealed)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    md = render(report)
    print(md)
    os.makedirs(args.out, exist_ok=True)
    Path(args.out, "gpu-latest.md").write_text(md)
    Path(args.out, "gpu-latest.json").write_text(json.dumps(report, indent=1))
    return 0 if all(r["identical"] for r in report["results"]) else 1


def render(report: dict[str, Any]) -> str:
    gib = 1 << 30
    out = [f"### GPU path: {report['gpu']}, {report['host']}, torch {report['torch']}, {report['when']}", ""]
    out += report["checks"] + [""]
    out.append(
        f"Kernel alone: **{report['kernel_gbs']:.1f} GB/s** (target >= 200); pinned H2D copy {report['h2d_gbs']:.1f} GB/s."
    )
    out += [
        "",
        f"Medians of {report['runs']} runs, each in a fresh process, files in the page cache, CUDA initialised before timing.",
        "",
    ]
    out.append(
        "| model | loader | load call | GB/s | vs safetensors | in-load kernel GB/s | host peak RSS | RSS growth | staging | same tensors |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for row in report["results"]:
        size = row["size"]
        base = statistics.median(r["load_s"] for r in row["safetensors"])
        for contender in ("safetensors", "tensorseal"):
            runs = row[contender]
            t = statistics.median(r["load_s"] for r in runs)
            hwm = statistics.median(r["hwm"] for r in runs)
            growth = statistics.median(r["hwm"] - r["rss_before"] for r in runs)
            kern = staging = "-"
            if contender == "tensorseal":
                ks = statistics.median(r["kernel_bytes"] / r["kernel_s"] / 1e9 for r in runs if r["kernel_s"])
                kern, staging = f"{ks:.0f}", f"{runs[0]['staging'] / gib:.2f} GiB"
            out.append(
                f"| {C.fmt_size(size)} {row['dtype']} | {contender} | {t:.3f} s | {size / t / 1e9:.1f} | "
                f"{base / t:.2f}x | {kern} | {hwm / gib:.2f} GiB | {growth / gib:.2f} GiB | {staging} | "
                f"{'yes' if row['identical'] else 'NO'} |"
            )
    out += ["", "Targets: 4 GiB tensorseal >= 1.5x safetensors; kernel >= 200 GB/s; RSS growth <= staging."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
