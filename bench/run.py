#!/usr/bin/env python
"""The tensorseal benchmark suite ("Fast path"). One command:

    python bench/run.py [--sizes 256M,1G,4G] [--runs 5] [--out bench/results]

For each size it builds a deterministic float32 model (big tensors of 16-64 MiB plus
small ones), writes it as plain safetensors, sealed (tensorseal), CryptoTensors and
"naive" (one AES-GCM blob) files, then runs every contender in a fresh process
(``sys.executable bench/child.py ...``, or the ``tensorseal`` CLI) --runs times. Each run
records the whole-process wall time (interpreter start included), the load/save call
alone (timed inside the child), and the child's peak RSS (``ru_maxrss`` from
``os.wait4``). Medians are reported with ratios to plain safetensors and a check of each
target from BENCHMARKS.md. Results: ``<out>/latest.md`` and ``<out>/latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import _common as C  # noqa: E402

CHILD = str(HERE / "child.py")
GB = 1e9  # throughput is in decimal GB/s (10**9 bytes per second)


# ---- contenders -------------------------------------------------------------------------
@dataclass(frozen=True)
class Contender:
    name: str
    label: str
    group: str  # baseline | load | save | file
    requires: tuple[str, ...] = ()
    input: str | None = None  # which prepared file it reads
    output: bool = False  # writes an output file (removed after each run)
    cli: tuple[str, ...] = ()  # `tensorseal` CLI arguments (before IN -o OUT)
    argv: tuple[str, ...] = ()  # a bare command (baselines)
    verify: str = ""  # how the result is checked: child | load:<loader> | sha:<file> | blob


CONTENDERS = [
    Contender("bare", "python -c pass (bare interpreter)", "baseline", argv=("-c", "pass")),
    Contender("import-numpy", "python -c 'import numpy'", "baseline", ("numpy",), argv=("-c", "import numpy")),
    Contender("import-torch", "python -c 'import torch'", "baseline", ("torch",), argv=("-c", "import torch")),
    Contender("st-numpy", "safetensors.numpy.load_file", "load", ("safetensors", "numpy"), "plain", verify="child"),
    Contender("st-torch-clone", "safetensors.torch.load_file + .clone()", "load", ("safetensors", "torch"), "plain", verify="child"),
    Contender("ts-numpy", "tensorseal.numpy.load_file", "load", ("tensorseal", "numpy"), "sealed", verify="child"),
    Contender("ts-numpy-2nd", "tensorseal.numpy.load_file, 2nd load in same process", "load", ("tensorseal", "numpy"), "sealed", verify="child"),
    Contender("ts-torch", "tensorseal.torch.load_file", "load", ("tensorseal", "torch"), "sealed", verify="child"),
    Contender("ct-numpy", "cryptotensors.numpy.load_file", "load", ("cryptotensors", "numpy"), "ct", verify="child"),
    Contender("ct-torch", "cryptotensors.torch.load_file", "load", ("cryptotensors", "torch"), "ct", verify="child"),
    Contender("copy-floor", "no crypto: preadv the plain file into fresh arrays, 2 threads", "load", ("numpy",), "plain", verify="child"),
    Contender("naive", "naive: read all, AESGCM.decrypt, sha256, /dev/shm, safetensors load", "load", ("cryptography", "safetensors"), "naive", verify="child"),
    Contender("st-save-numpy", "safetensors.numpy.save_file", "save", ("safetensors", "numpy"), "plain", True, verify="load:st-numpy"),
    Contender("ts-encrypt", "tensorseal encrypt (CLI, safetensors file)", "save", ("tensorseal",), "plain", True, cli=("encrypt",), verify="load:ts-numpy"),
    Contender("ts-save-numpy", "tensorseal.numpy.save_file", "save", ("tensorseal", "numpy"), "plain", True, verify="load:ts-numpy"),
    Contender("ct-save", "cryptotensors.numpy.save_file (encrypted)", "save", ("cryptotensors", "cryptography", "numpy"), "plain", True, verify="load:ct-numpy"),
    Contender("ts-decrypt", "tensorseal decrypt (CLI) to a file", "file", ("tensorseal",), "sealed", True, cli=("decrypt",), verify="sha:plain"),
    Contender("ts-blob-encrypt", "tensorseal encrypt (CLI), blob mode", "file", ("tensorseal",), "blob", True, cli=("encrypt",), verify="blob"),
    Contender("ts-verify-sig", "tensorseal verify --signer (CLI, no decryption key)", "file", ("tensorseal", "blake3"), "signed", cli=("verify-sig",)),
    Contender("ts-blob-decrypt", "tensorseal decrypt (CLI), blob mode", "file", ("tensorseal",), "blob_sealed", True, cli=("decrypt",), verify="sha:blob"),
]
BY_NAME = {c.name: c for c in CONTENDERS}
# Execution order keeps few large files on disk at once (each is dropped after its last use).
EXEC_ORDER = [
    "bare", "import-numpy", "import-torch",
    "st-numpy", "st-torch-clone", "st-save-numpy",
    "copy-floor", "ts-numpy", "ts-numpy-2nd", "ts-torch", "ts-encrypt", "ts-save-numpy", "ts-decrypt",
    "ct-save", "ct-numpy", "ct-torch",
    "naive",
    "ts-blob-encrypt", "ts-blob-decrypt", "ts-verify-sig",
]  # fmt: skip
assert sorted(EXEC_ORDER) == sorted(BY_NAME)
REFERENCE = {"load": "st-numpy", "save": "st-save-numpy", "file": "st-save-numpy"}
FILE_REQUIRES = {"sealed": ("tensorseal",), "signed": ("tensorseal", "blake3"), "blob_sealed": ("tensorseal",), "ct": ("cryptotensors", "cryptography", "numpy"), "naive": ("cryptography",)}


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---- machine --------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    cpuinfo = _read("/proc/cpuinfo")
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), platform.processor())
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    mem = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in _read("/proc/meminfo").splitlines() if ln.split()[1:2] and ln.split()[1].isdigit()}
    thp = _read("/sys/kernel/mm/transparent_hugepage/enabled").strip()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout.strip())
    except OSError:
        commit, dirty = "", False
    return {
        "cpu_model": model,
        "cpu_cores": os.cpu_count(),
        "cpu_usable": affinity,
        "cpu_flags": [f for f in ("aes", "vaes", "pclmulqdq", "vpclmulqdq", "avx2", "avx512f", "sha_ni") if f in flags],
        "ram_bytes": mem.get("MemTotal"),
        "ram_available_bytes": mem.get("MemAvailable"),
        "kernel": platform.release(),
        "thp": thp,
        "loadavg_start": _read("/proc/loadavg").split()[:3],
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "versions": {d: version(d) for d in ("numpy", "torch", "cryptography", "safetensors", "cryptotensors", "tensorseal", "rich")},
        "tensorseal_commit": commit + ("+dirty src" if dirty else ""),
    }


# ---- running one process ----------------------------------------------------------------
@dataclass
class Proc:
    wall_s: float
    maxrss: int  # bytes
    rc: int
    log: str


# Peak RSS: Linux charges a child, at exec, with the high-water RSS of the address space
# it was forked (or vforked) from, so a child started straight from this orchestrator
# (numpy, tensorseal, rich imported: ~60 MiB) could never read below that. Every
# measured process is therefore started by a tiny launcher (python -I -S, ~9 MiB, less
# than a bare `python -c pass`) with posix_spawn, and reaped with wait4 there.
LAUNCHER = r"""
import os, sys, time, _signal
child = 0
def on_alarm(signum, frame):
    if child:
        try:
            os.kill(child, 9)
        except OSError:
            pass
_signal.signal(_signal.SIGALRM, on_alarm)
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    parts = line.rstrip(b"\n").split(b"\x1f")
    timeout, log, argv = int(parts[0]), os.fsdecode(parts[1]), [os.fsdecode(a) for a in parts[2:]]
    actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
               (os.POSIX_SPAWN_DUP2, 1, 2)]
    t0 = time.perf_counter()
    try:
        child = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions)
    except OSError as e:
        out.write(b"E " + repr(e).encode() + b"\n")
        out.flush()
        continue
    _signal.alarm(timeout)
    _, status, ru = os.wait4(child, 0)
    wall = time.perf_counter() - t0
    _signal.alarm(0)
    child = 0
    out.write(b"%d %s %d\n" % (os.waitstatus_to_exitcode(status), repr(wall).encode(), ru.ru_maxrss))
    out.flush()
"""


class Launcher:
    """Starts measured processes from a small address space (see LAUNCHER)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env
        )

    def run(self, argv: list[str], log_path: str, timeout: float) -> tuple[int, float, int]:
        """(exit code, wall seconds, ru_maxrss in KiB)."""
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        fields = [str(max(1, int(timeout))), log_path, *argv]
        if any("\x1f" in f or "\n" in f for f in fields):
            raise ValueError("argument with a newline or \\x1f")
        self.proc.stdin.write("\x1f".join(fields).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().decode()
        if not line:
            self.start()
            raise RuntimeError("the launcher process died")
        if line.startswith("E "):
            raise OSError(f"cannot start {argv[0]}: {line[2:].strip()}")
        rc, wall, maxrss = line.split()
        return int(rc), float(wall), int(maxrss)

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=10)
            self.proc = None


_LAUNCHER: Launcher | None = None


def spawn(argv: list[str], env: dict[str, str], log_path: str, timeout: float) -> Proc:
    """Run argv to completion: wall time from spawn to reap, peak RSS from wait4."""
    global _LAUNCHER
    if _LAUNCHER is None:
        _LAUNCHER = Launcher(env)
    rc, wall, maxrss = _LAUNCHER.run(argv, log_path, timeout)
    return Proc(wall, maxrss * 1024, rc, _tail(log_path))


def _tail(path: str, n: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def find_cli() -> tuple[list[str] | None, str]:
    """How to run `tensorseal`: the console script beside this interpreter, else one on
    PATH, else tensorseal.cli.main through `python -c`; None: fall back to the API."""
    beside = Path(sys.executable).parent / "tensorseal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)], f"{beside} (console script)"
    on_path = shutil.which("tensorseal")
    if on_path:
        return [on_path], f"{on_path} (on PATH)"
    if have("tensorseal.cli"):
        code = "import sys; from tensorseal.cli import main; sys.argv[0] = 'tensorseal'; sys.exit(main())"
        return [sys.executable, "-c", code], "python -c 'tensorseal.cli.main()'"
    return None, "no tensorseal CLI found: encrypt_file/decrypt_file through bench/child.py"


# ---- one size ---------------------------------------------------------------------------
@dataclass
class Suite:
    args: argparse.Namespace
    env: dict[str, str]
    cli: list[str] | None
    size: int
    dir: str
    manifest: dict[str, Any] = field(default_factory=dict)
    made: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    unmakeable: dict[str, str] = field(default_factory=dict)

    # -- files
    def path(self, key: str) -> str:
        names = {"plain": "model.safetensors", "sealed": "model.tseal", "ct": "model.cryptotensors", "naive": "model.naive",
                 "blob": "blob.bin", "blob_sealed": "blob.bin.tseal", "signed": "signed.tseal", "out": "out.bin", "verify_out": "verify.bin"}  # fmt: skip
        return os.path.join(self.dir, names[key])

    def manifest_path(self) -> str:
        return os.path.join(self.dir, "manifest.json")

    def save_manifest(self) -> None:
        with open(self.manifest_path(), "w") as f:
            json.dump(self.manifest, f)

    def ensure(self, key: str) -> str | None:
        """Make the file ``key`` if needed; returns a reason when it cannot be made."""
        if key in self.made:
            return None
        if key in self.unmakeable:
            return self.unmakeable[key]
        missing = [m for m in FILE_REQUIRES.get(key, ()) if not have(m)]
        if missing:
            self.unmakeable[key] = f"{', '.join(missing)} not installed"
            return self.unmakeable[key]
        t0 = time.perf_counter()
        path = self.path(key)
        try:
            if key == "sealed":
                import tensorseal

                tensorseal.encrypt_file(self.path("plain"), path, [self.manifest["recipient"]])
            elif key == "naive":
                C.write_naive(self.path("plain"), path, bytes.fromhex(self.manifest["naive_key"]))
            elif key == "blob":
                self.manifest["blob_sha256"] = C.write_blob(path, self.size)
                self.save_manifest()
            elif key == "signed":
                import shutil

                import tensorseal

                if (why := self.ensure("sealed")) is not None:
                    raise RuntimeError(why)
                shutil.copyfile(self.path("sealed"), path)
                tensorseal.sign_file(path, [tensorseal.SigningKey.parse(self.manifest["signing_key"])])
            elif key == "blob_sealed":
                import tensorseal

                if (why := self.ensure("blob")) is not None:
                    raise RuntimeError(why)
                tensorseal.encrypt_file(self.path("blob"), path, [self.manifest["recipient"]], mode="blob")
            elif key == "ct":
                res, proc = self.child("ct-save", self.path("plain"), out=path)
                if proc.rc != 0:
                    raise RuntimeError(f"CryptoTensors save failed (rc {proc.rc}): {proc.log[-400:]}")
            else:
                raise KeyError(key)
        except Exception as e:  # noqa: BLE001 - reported as a skip reason
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self.unmakeable[key] = f"could not make the {key} file: {type(e).__name__}: {e}"
            return self.unmakeable[key]
        self.made.add(key)
        self.log(f"  made {key} file ({C.fmt_size(os.path.getsize(path))}) in {time.perf_counter() - t0:.1f}s")
        return None

    def drop(self, key: str) -> None:
        if key in self.made and key != "plain":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(key))
            self.made.discard(key)

    def log(self, msg: str) -> None:
        if not self.args.quiet:
            print(msg, flush=True)

    # -- processes
    def child(self, name: str, file: str | None, *, out: str | None = None, verify: bool = False) -> tuple[dict[str, Any], Proc]:
        result = os.path.join(self.dir, "result.json")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(result)
        argv = [sys.executable, CHILD, name, "--manifest", self.manifest_path(), "--result", result]
        if file:
            argv += ["--file", file]
        if out:
            argv += ["--out", out]
        if verify:
            argv.append("--verify")
        proc = spawn(argv, self.env, os.path.join(self.dir, "child.log"), self.args.timeout)
        res: dict[str, Any] = {}
        if proc.rc == 0:
            with contextlib.suppress(OSError, ValueError):
                with open(result) as f:
                    res = json.load(f)
        return res, proc

    def argv_for(self, c: Contender, src: str, dst: str) -> list[str] | None:
        """The command line of a CLI contender, or None if it runs through child.py."""
        if self.cli is None:
            return None
        op = c.cli[0]
        if op == "verify-sig":
            return [*self.cli, "verify", src, "--signer", self.manifest["signer"], "-q"]
        if op == "encrypt":
            return [*self.cli, "encrypt", src, "-o", dst, "-r", self.manifest["recipient"], "-q"]
        return [*self.cli, "decrypt", src, "-o", dst, "-i", self.manifest["identity_file"], "-q"]

    def run_once(self, c: Contender, *, verify: bool, out: str) -> tuple[dict[str, Any], Proc]:
        src = self.path(c.input) if c.input else None
        if c.output:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out)
        # Every run starts with no dirty pages pending, so writeback of earlier files
        # (the model files, a previous run's output) never lands inside a measurement.
        os.sync()
        if c.argv:
            proc = spawn([sys.executable, *c.argv], self.env, os.path.join(self.dir, "child.log"), self.args.timeout)
            return {}, proc
        if c.cli:
            argv = self.argv_for(c, src, out)
            if argv is None:
                return self.child(f"api-{c.cli[0]}", src, out=out)
            return {}, spawn(argv, self.env, os.path.join(self.dir, "child.log"), self.args.timeout)
        return self.child(c.name, src, out=out if c.output else None, verify=verify and c.verify == "child")

    def check(self, c: Contender, res: dict[str, Any], out: str) -> tuple[bool, str]:
        """Correctness of one (untimed) run's result."""
        kind = c.verify
        if kind == "child":
            return bool(res.get("verify_ok")), res.get("verify_detail", "no verification result")
        if kind.startswith("load:"):
            loader = kind[5:]
            vres, proc = self.child(loader, out, verify=True)
            if proc.rc != 0:
                return False, f"{loader} could not load the output (rc {proc.rc}): {proc.log[-300:]}"
            return bool(vres.get("verify_ok")), f"read back with {loader}: {vres.get('verify_detail')}"
        if kind.startswith("sha:"):
            want = self.manifest["file_sha256"] if kind == "sha:plain" else self.manifest["blob_sha256"]
            got = C.file_sha256(out)
            return got == want, f"sha256 {'matches' if got == want else 'differs from'} the original ({want[:16]})"
        if kind == "blob":
            import tensorseal

            back = self.path("verify_out")
            try:
                header = tensorseal.decrypt_file(out, back, tensorseal.load_identities(self.manifest["identity_file"]))
                got = C.file_sha256(back)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(back)
            ok = got == self.manifest["blob_sha256"] and header.mode == "blob"
            return ok, f"mode {header.mode}; decrypts to {'the original' if ok else 'DIFFERENT bytes'}"
        return True, "no check"

    def start(self, c: Contender) -> dict[str, Any]:
        """Make the contender's input, then one untimed run: correctness check and warm-up.
        Returns its record, with status "ready" unless it was skipped or failed."""
        rec: dict[str, Any] = {"name": c.name, "label": c.label, "group": c.group, "runs": []}
        missing = [m for m in c.requires if not have(m)]
        if missing:
            return {**rec, "status": "skipped", "reason": f"{', '.join(missing)} not installed"}
        if c.input:
            why = self.ensure(c.input)
            if why:
                return {**rec, "status": "skipped", "reason": why}
            rec["warm_s"] = round(C.warm(self.path(c.input)), 3)
        if c.cli:
            rec["invocation"] = "CLI" if self.cli is not None else "API fallback (no CLI)"
            if self.cli is None:
                rec["label"] += " [API fallback: no CLI]"
        out = self.path("out")
        try:
            res, proc = self.run_once(c, verify=bool(c.verify), out=out)
            if proc.rc != 0:
                return {**rec, "status": "failed", "reason": f"exit status {proc.rc}: {proc.log[-600:]}"}
            if c.verify:
                ok, detail = self.check(c, res, out)
                rec["verified"], rec["verify_detail"] = ok, detail
                if not ok:
                    return {**rec, "status": "failed", "reason": f"wrong result: {detail}"}
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out)
        return {**rec, "status": "ready"}

    def time_once(self, c: Contender, rec: dict[str, Any]) -> None:
        """One timed fresh-process run, appended to ``rec`` (status "failed" on error)."""
        if c.input:
            C.warm(self.path(c.input))  # in the page cache, whatever ran before
        out = self.path("out")
        try:
            res, proc = self.run_once(c, verify=False, out=out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out)
        if proc.rc != 0:
            rec.update(status="failed", reason=f"run {len(rec['runs']) + 1}: exit status {proc.rc}: {proc.log[-600:]}")
            return
        run = {"wall_s": proc.wall_s, "maxrss": proc.maxrss}
        for k in ("call_s", "setup_s", "calls"):
            if k in res:
                run[k] = res[k]
        rec["runs"].append(run)

    def finish(self, rec: dict[str, Any]) -> dict[str, Any]:
        if rec["status"] != "ready":
            return rec
        runs = rec["runs"]
        rec["status"] = "ok"
        rec["wall_s"] = statistics.median(r["wall_s"] for r in runs)
        rec["wall_min_s"], rec["wall_max_s"] = min(r["wall_s"] for r in runs), max(r["wall_s"] for r in runs)
        rec["maxrss"] = int(statistics.median(r["maxrss"] for r in runs))
        for k in ("call_s", "setup_s"):
            if all(k in r for r in runs):
                rec[k] = statistics.median(r[k] for r in runs)
        if rec["group"] != "baseline":
            rec["gbps_wall"] = self.size / GB / rec["wall_s"]
            if "call_s" in rec:
                rec["gbps_call"] = self.size / GB / rec["call_s"]
        return rec

    # -- the whole size
    def prepare(self) -> None:
        import tensorseal

        ident = tensorseal.X25519Identity.generate() if have("tensorseal") else None
        ident_file = os.path.join(self.dir, "identity.txt")
        fd = os.open(ident_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{ident}\n")
        signing_key = tensorseal.SigningKey.generate()
        self.manifest.update(
            signing_key=str(signing_key),
            signer=str(signing_key.public_key()),
            identity_file=ident_file,
            recipient=str(ident.recipient()),
            naive_key=secrets.token_bytes(32).hex(),
            naive_stage_dir=self.stage_dir(),
            ct_keys=ct_keys() if have("cryptography") else None,
        )
        t0 = time.perf_counter()
        self.manifest.update(C.write_plain_safetensors(self.path("plain"), self.size))
        self.made.add("plain")
        self.save_manifest()
        self.log(f"  built {self.manifest['n_tensors']} tensors, plain file {C.fmt_size(self.manifest['file_bytes'])} in {time.perf_counter() - t0:.1f}s")

    def stage_dir(self) -> str:
        """Where the naive approach writes its plaintext: /dev/shm if it has room."""
        need = self.size * 1.05 + 64 * C.MIB
        with contextlib.suppress(OSError):
            st = os.statvfs("/dev/shm")
            if os.access("/dev/shm", os.W_OK) and st.f_bavail * st.f_frsize >= need:
                return "/dev/shm"
        self.notes.append("naive: /dev/shm missing or too small, plaintext staged in the work dir instead")
        return self.dir

    def run(self, selected: list[str]) -> dict[str, Any]:
        """Check every contender once, then time them round-robin: run k of every
        contender before run k+1 of any, so slow phases of the machine (this VM backs
        freshly touched memory lazily) land on all contenders alike, not on one."""
        self.prepare()
        order = [BY_NAME[n] for n in EXEC_ORDER if n in selected]
        results: dict[str, dict[str, Any]] = {}
        for c in order:
            self.log(f"  {c.name:16s} checking ...")
            try:
                results[c.name] = self.start(c)
            except Exception as e:  # noqa: BLE001 - one contender's crash must not end the suite
                results[c.name] = {"name": c.name, "label": c.label, "group": c.group, "runs": [], "status": "failed", "reason": f"{type(e).__name__}: {e}"}
            if results[c.name]["status"] != "ready":
                self.log(f"  {c.name:16s} {summary(results[c.name])}")
        for r in range(self.args.runs):
            t0 = time.perf_counter()
            for c in order:
                if results[c.name]["status"] == "ready":
                    try:
                        self.time_once(c, results[c.name])
                    except Exception as e:  # noqa: BLE001
                        results[c.name].update(status="failed", reason=f"{type(e).__name__}: {e}")
            self.log(f"  round {r + 1}/{self.args.runs} done [{time.perf_counter() - t0:.1f}s]")
        for c in order:
            results[c.name] = self.finish(results[c.name])
            self.log(f"  {c.name:16s} {summary(results[c.name])}")
        for key in list(self.made):
            self.drop(key)
        ordered = [results[c.name] for c in CONTENDERS if c.name in results]
        add_ratios(ordered)
        return {
            "size_bytes": self.size,
            "size": C.fmt_size(self.size),
            "model": {k: self.manifest[k] for k in ("n_tensors", "data_bytes", "file_bytes")},
            "contenders": ordered,
            "targets": evaluate_targets(ordered, self.size),
            "notes": self.notes,
            "loadavg_end": _read("/proc/loadavg").split()[:3],
        }


def ct_keys() -> dict[str, Any]:
    """A fresh AES-256-GCM key and Ed25519 signing key in CryptoTensors' JWK form."""
    import base64

    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ed25519

    sk = ed25519.Ed25519PrivateKey.generate()
    d = sk.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())
    x = sk.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return {
        "enc_key": {"kty": "oct", "alg": "aes256gcm", "kid": "tsbench-enc", "k": b64(secrets.token_bytes(32))},
        "sign_key": {"kty": "okp", "alg": "ed25519", "kid": "tsbench-sign", "d": b64(d), "x": b64(x)},
    }


# ---- derived numbers ---------------------------------------------------------------------
def add_ratios(recs: list[dict[str, Any]]) -> None:
    by = {r["name"]: r for r in recs}
    for r in recs:
        ref = by.get(REFERENCE.get(r["group"], ""))
        if r.get("status") != "ok" or not ref or ref.get("status") != "ok":
            continue
        r["ref"] = ref["name"]
        r["wall_ratio"] = r["wall_s"] / ref["wall_s"]
        if "call_s" in r and "call_s" in ref:
            r["call_ratio"] = r["call_s"] / ref["call_s"]


def evaluate_targets(recs: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """The targets of BENCHMARKS.md. ``at``: the size the target is defined for ('all':
    every size); a target measured at another size is shown but not judged."""
    by = {r["name"]: r for r in recs if r.get("status") == "ok"}
    out: list[dict[str, Any]] = []

    def get(name: str, key: str) -> float | None:
        return by.get(name, {}).get(key)

    def add(target: str, at: str, value: float | None, limit: float | None, op: str, fmt: str, note: str = "") -> None:
        judged = at == "all" or (at == "1 GiB" and size == C.GIB) or (at == "4 GiB" and size == 4 * C.GIB)
        ok = None
        if value is not None and limit is not None:
            ok = value <= limit if op == "<=" else value >= limit
        status = "n/a" if ok is None else ("PASS" if ok else "FAIL") if judged else ("(pass)" if ok else "(fail)")
        out.append({
            "target": target, "at": at, "measured": None if value is None else fmt.format(value),
            "limit": None if limit is None else f"{op} {fmt.format(limit)}", "status": status,
            "value": value, "limit_value": limit, "note": note,
        })  # fmt: skip

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a / b

    mib = lambda v: None if v is None else v / C.MIB  # noqa: E731
    add("ts-numpy wall / st-numpy wall", "1 GiB", ratio(get("ts-numpy", "wall_s"), get("st-numpy", "wall_s")), 0.6, "<=", "{:.2f}x")
    add("ts-numpy load call, fresh process (GB/s)", "1 GiB", get("ts-numpy", "gbps_call"), 5.0, ">=", "{:.2f}")
    add("ts-numpy load call, 2nd load in process (GB/s)", "1 GiB", get("ts-numpy-2nd", "gbps_call"), 9.0, ">=", "{:.2f}")
    bare = get("bare", "maxrss")
    add("ts-numpy peak RSS (MiB) <= 1.1 x size + bare interpreter", "1 GiB", mib(get("ts-numpy", "maxrss")),
        None if bare is None else mib(1.1 * size + bare), "<=", "{:.0f}")  # fmt: skip
    add("ts-torch wall / (st-torch load+clone) wall", "1 GiB", ratio(get("ts-torch", "wall_s"), get("st-torch-clone", "wall_s")), 1.0, "<=", "{:.2f}x")
    torch_rss = get("import-torch", "maxrss")
    add("ts-torch peak RSS (MiB) <= 1.1 x size + import-torch", "1 GiB", mib(get("ts-torch", "maxrss")),
        None if torch_rss is None else mib(1.1 * size + torch_rss), "<=", "{:.0f}")  # fmt: skip
    st_save = get("st-save-numpy", "gbps_call")
    add("tensorseal encrypt CLI GB/s (wall) / st save_file GB/s (call)", "1 GiB", ratio(get("ts-encrypt", "gbps_wall"), st_save), 0.8, ">=", "{:.2f}x")
    for name, what in (("ts-encrypt", "tensorseal encrypt"), ("ts-decrypt", "tensorseal decrypt to file"),
                       ("ts-blob-encrypt", "blob encrypt"), ("ts-blob-decrypt", "blob decrypt")):  # fmt: skip
        add(f"{what} peak RSS (MiB)", "all", mib(get(name, "maxrss")), 256, "<=", "{:.0f}")
    add("CryptoTensors load wall / ts-numpy load wall (speedup)", "1 GiB", ratio(get("ct-numpy", "wall_s"), get("ts-numpy", "wall_s")), 1.5, ">=", "{:.2f}x",
        note="load call speedup: " + _fmt(ratio(get("ct-numpy", "call_s"), get("ts-numpy", "call_s")), "{:.2f}x"))  # fmt: skip
    add("CryptoTensors save call / ts save_file call (speedup)", "1 GiB", ratio(get("ct-save", "call_s"), get("ts-save-numpy", "call_s")), 2.0, ">=", "{:.2f}x",
        note="whole-process: " + _fmt(ratio(get("ct-save", "wall_s"), get("ts-save-numpy", "wall_s")), "{:.2f}x"))  # fmt: skip
    add("naive load wall / ts-numpy load wall (reported)", "all", ratio(get("naive", "wall_s"), get("ts-numpy", "wall_s")), None, ">=", "{:.2f}x",
        note="naive peak RSS: " + _fmt(mib(get("naive", "maxrss")), "{:.0f} MiB"))  # fmt: skip
    for name in ("ts-numpy", "ts-torch"):
        add(f"{name} peak RSS at 4 GiB (GB)", "4 GiB", None if get(name, "maxrss") is None else get(name, "maxrss") / GB, 4.6, "<=", "{:.2f}")
    return out


def _fmt(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else fmt.format(v)


def summary(rec: dict[str, Any]) -> str:
    if rec.get("status") != "ok":
        return f"{rec.get('status', '?').upper()}: {rec.get('reason', '')[:200]}"
    s = f"wall {rec['wall_s']:.3f}s"
    if "call_s" in rec:
        s += f"  call {rec['call_s']:.3f}s"
    if "gbps_call" in rec:
        s += f" ({rec['gbps_call']:.2f} GB/s)"
    return s + f"  rss {rec['maxrss'] / C.MIB:.0f} MiB"


# ---- reporting -----------------------------------------------------------------------------
COLUMNS = ["contender", "what", "wall s", "min-max", "setup s", "call s", "GB/s call", "GB/s wall", "peak RSS MiB", "wall x ref", "call x ref", "check"]


def rows_for(size_res: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in size_res["contenders"]:
        if r.get("status") != "ok":
            rows.append([r["name"], r["label"], r["status"].upper(), "", "", "", "", "", "", "", "", r.get("reason", "")[:120].replace("\n", " ").replace("|", "/")])
            continue
        rows.append([
            r["name"], r["label"],
            f"{r['wall_s']:.3f}", f"{r['wall_min_s']:.3f}-{r['wall_max_s']:.3f}",
            _fmt(r.get("setup_s"), "{:.3f}"), _fmt(r.get("call_s"), "{:.3f}"), _fmt(r.get("gbps_call"), "{:.2f}"), _fmt(r.get("gbps_wall"), "{:.2f}"),
            f"{r['maxrss'] / C.MIB:.0f}",
            _fmt(r.get("wall_ratio"), "{:.2f}"), _fmt(r.get("call_ratio"), "{:.2f}"),
            "ok" if r.get("verified") else ("-" if "verified" not in r else "WRONG"),
        ])  # fmt: skip
    return rows


def target_rows(size_res: dict[str, Any]) -> list[list[str]]:
    return [[t["target"], t["at"], t["measured"] or "n/a", t["limit"] or "-", t["status"], t["note"]] for t in size_res["targets"]]


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    m, cfg = report["machine"], report["config"]
    v = m["versions"]
    out = [
        "# tensorseal benchmark results",
        "",
        f"Generated {report['generated']} by `{cfg['command']}` ({cfg['runs']} runs per contender, medians).",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['cpu_cores']} cores ({m['cpu_usable']} usable); flags: {' '.join(m['cpu_flags']) or 'n/a'}",
        f"- RAM: {m['ram_bytes'] / C.GIB:.1f} GiB; kernel {m['kernel']}; THP: `{m['thp']}`",
        f"- load average at start: {' '.join(m['loadavg_start'])}",
        f"- Python {m['python']}; " + ", ".join(f"{k} {v[k] or 'not installed'}" for k in v),
        f"- tensorseal commit: {m['tensorseal_commit'] or 'n/a'}; CLI: {cfg['cli']}",
        "",
        "Columns: wall = whole process (interpreter start to exit), call = the load/save call alone (timed in the child),",
        "GB/s = tensor bytes / time (10^9 B/s), peak RSS = child's ru_maxrss, x ref = time / time of the reference",
        "(st-numpy for loads, st-save-numpy for saves and file ops; < 1 is faster). See BENCHMARKS.md.",
    ]
    for tag, s in report["sizes"].items():
        out += [
            "",
            f"## {s['size']} model ({s['model']['n_tensors']} tensors, plain file {C.fmt_size(s['model']['file_bytes'])})",
            "",
            md_table(COLUMNS, rows_for(s)),
            "",
            f"### Targets at {s['size']}",
            "",
            "Status PASS/FAIL where the target is defined for this size; (pass)/(fail) where it is defined for another size.",
            "",
            md_table(["target", "defined at", "measured", "limit", "status", "note"], target_rows(s)),
        ]
        if s["notes"]:
            out += ["", *[f"- note: {n}" for n in s["notes"]]]
        out += ["", f"Load average at the end: {' '.join(s['loadavg_end'])}"]
    return "\n".join(out) + "\n"


def print_tables(report: dict[str, Any]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(markdown(report))
        return
    console = Console(width=max(150, shutil.get_terminal_size((150, 40)).columns))
    for s in report["sizes"].values():
        t = Table(title=f"{s['size']} model, {report['config']['runs']} runs, medians (labels: latest.md)", show_lines=False)
        for col in COLUMNS:
            if col != "what":
                t.add_column(col, justify="left" if col in ("contender", "check") else "right", overflow="fold")
        for row in rows_for(s):
            t.add_row(row[0], *row[2:])
        console.print(t)
        tt = Table(title=f"targets at {s['size']}")
        for col in ("target", "defined at", "measured", "limit", "status", "note"):
            tt.add_column(col, overflow="fold")
        for row in target_rows(s):
            style = {"PASS": "green", "FAIL": "red"}.get(row[4])
            tt.add_row(*row, style=style)
        console.print(tt)


# ---- main --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256M,1G,4G", help="comma-separated model sizes (tensor bytes), e.g. 64M,256M,1G,4G")
    p.add_argument("--runs", type=int, default=5, help="timed fresh-process runs per contender (after one untimed check run)")
    p.add_argument("--out", default=str(HERE / "results"), help="directory for latest.md / latest.json")
    p.add_argument("--workdir", default=None, help="where the temp dir with the model files goes (default: /tmp)")
    p.add_argument("--contenders", default="*", help="comma-separated names or globs (see --list); default all")
    p.add_argument("--list", action="store_true", help="list the contenders and exit")
    p.add_argument("--timeout", type=float, default=900, help="seconds before one run is killed")
    p.add_argument("--keep", action="store_true", help="keep the work dir (model files) at the end")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)

    if args.list:
        for c in CONTENDERS:
            print(f"{c.name:16s} {c.group:8s} {c.label}")
        return 0
    if args.runs < 1:
        p.error("--runs must be at least 1")
    try:
        sizes = [C.parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError as e:
        p.error(str(e))
    patterns = [s.strip() for s in args.contenders.split(",") if s.strip()]
    selected = [c.name for c in CONTENDERS if any(fnmatch.fnmatch(c.name, pat) for pat in patterns)]
    if not selected:
        p.error(f"no contender matches {args.contenders!r} (see --list)")

    # Children import tensorseal from this checkout, whatever is installed. Byte-compile
    # it first, as `pip install` does: with PYTHONDONTWRITEBYTECODE set (or a read-only
    # tree) every child would otherwise recompile it from source, ~20 ms per process.
    import compileall

    compileall.compile_dir(str(REPO / "src" / "tensorseal"), quiet=1)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(REPO / "src"), env.get("PYTHONPATH")) if x)
    sys.path.insert(0, str(REPO / "src"))
    if not have("tensorseal"):
        print("tensorseal cannot be imported from src/: nothing to benchmark", file=sys.stderr)
        return 1
    cli, cli_desc = find_cli()

    machine = machine_info()
    report: dict[str, Any] = {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine,
        "config": {
            "command": "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "sizes": [C.fmt_size(s) for s in sizes], "runs": args.runs, "contenders": selected, "cli": cli_desc,
        },  # fmt: skip
        "sizes": {},
    }
    workdir = tempfile.mkdtemp(prefix="tsbench-", dir=args.workdir or "/tmp")
    print(f"tensorseal bench: sizes {', '.join(C.fmt_size(s) for s in sizes)}, {args.runs} runs, work dir {workdir}")
    print(f"machine: {machine['cpu_model']}, {machine['cpu_usable']} cores, load average {' '.join(machine['loadavg_start'])}; CLI: {cli_desc}")
    avail = machine.get("ram_available_bytes") or 0
    try:
        for size in sizes:
            free = shutil.disk_usage(workdir).free
            if free < 4 * size:
                print(f"warning: {C.fmt_size(free)} free in {workdir}, the {C.fmt_size(size)} run needs about {C.fmt_size(4 * size)}")
            if avail and avail < 3.5 * size:
                print(f"warning: {C.fmt_size(avail)} of RAM available; the {C.fmt_size(size)} run wants about {C.fmt_size(int(3.5 * size))}")
            sdir = os.path.join(workdir, C.size_tag(size))
            os.makedirs(sdir)
            print(f"== {C.fmt_size(size)} ==", flush=True)
            suite = Suite(args, env, cli, size, sdir)
            try:
                report["sizes"][C.size_tag(size)] = suite.run(selected)
            finally:
                if not args.keep:
                    shutil.rmtree(sdir, ignore_errors=True)
    finally:
        if _LAUNCHER is not None:
            _LAUNCHER.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")

    os.makedirs(args.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    md = markdown(report)
    for name in ("latest.json", f"run-{stamp}.json"):
        with open(os.path.join(args.out, name), "w") as f:
            json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(md)
    print_tables(report)
    print(f"wrote {os.path.join(args.out, 'latest.md')} and latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
