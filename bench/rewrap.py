"""Rewrap time against model size: it must not depend on it (4 GiB in under 100 ms).

    python bench/rewrap.py [--sizes 64M,1G,4G] [--runs 7] [--workdir /tmp]

For each size, seals a float32 model (one X25519 recipient) and then, alternately, adds
a second recipient and removes it again: each rewrap writes the new head into the spare
slot, clears the old one and fsyncs after each step (the durable default). The sealed
file is synced to disk first, as a file at rest would be. Reports the
median and min-max of the ``rewrap()`` call and of the whole ``tensorseal rewrap`` CLI
process, and checks the data region did not change (same inode, same bytes hashed).
For comparison, ``rekey`` (new file key, every segment re-encrypted) is timed once.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
import tensorseal  # noqa: E402
import tensorseal.numpy as tsnp  # noqa: E402
from tensorseal import rotation  # noqa: E402
from tensorseal.reader import SealedFile  # noqa: E402
from tensorseal.recipients import X25519Identity  # noqa: E402

UNITS = {"M": 1 << 20, "G": 1 << 30}
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _size(text: str) -> int:
    return int(text[:-1]) * UNITS[text[-1].upper()]


def _data_digest(path: str) -> str:
    with SealedFile(path) as f:
        start, end = f.header.tags_offset, f.header.data_offset + f.header.data_length
    h = hashlib.blake2b()
    with open(path, "rb") as fh:
        fh.seek(start)
        left = end - start
        while left:
            chunk = fh.read(min(left, 64 << 20))
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def bench(size: int, runs: int, workdir: str) -> dict[str, object]:
    d = tempfile.mkdtemp(prefix="tseal-rewrap-", dir=workdir)
    try:
        alice, bob = X25519Identity.generate(), X25519Identity.generate()
        ident = os.path.join(d, "alice.txt")
        with open(ident, "w") as f:
            f.write(f"{alice}\n")
        rows = size // (64 << 20) or 1
        per = size // rows // 4
        tensors = {f"w{i}": np.full(per, i, dtype=np.float32) for i in range(rows)}
        path = os.path.join(d, "m.tseal")
        tsnp.save_file(tensors, path, [alice.recipient()])
        del tensors
        os.sync()  # a file at rest: the first rewrap's fsync must not wait for the seal's writeback
        before, inode = _data_digest(path), os.stat(path).st_ino
        api, cli = [], []
        for i in range(runs):
            t = time.perf_counter()
            if i % 2 == 0:
                rotation.rewrap(path, [alice], add=[bob.recipient()])
            else:
                rotation.rewrap(path, [alice], remove=[bob])
            api.append(time.perf_counter() - t)
        exe = shutil.which("tensorseal") or "tensorseal"
        for i in range(runs):
            args = ["--add", "-r", str(bob.recipient())] if i % 2 == 0 else ["--remove-identity", ident.replace("alice", "bob")]
            if i == 0:
                with open(ident.replace("alice", "bob"), "w") as f:
                    f.write(f"{bob}\n")
            t = time.perf_counter()
            subprocess.run([exe, "rewrap", path, "-i", ident, "-q", *args], check=True, env=ENV)
            cli.append(time.perf_counter() - t)
        assert os.stat(path).st_ino == inode and _data_digest(path) == before, "rewrap changed the data"
        t = time.perf_counter()
        rotation.rekey(path, [alice], [alice.recipient()])
        rekey_s = time.perf_counter() - t
        return {"size": size, "api": api, "cli": cli, "rekey": rekey_s}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64M,1G,4G")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    args = ap.parse_args()
    import compileall

    compileall.compile_dir(os.path.dirname(tensorseal.__file__), quiet=1)  # as pip install does: no child compiles
    print(f"tensorseal {tensorseal.__version__}, {os.cpu_count()} cores, durable rewrap (fsync after each step)")
    print("| model | rewrap() median | min-max | `tensorseal rewrap` process median | min-max | rekey (once) |")
    print("|---|---|---|---|---|---|")
    for text in args.sizes.split(","):
        r = bench(_size(text), args.runs, args.workdir)
        api, cli = r["api"], r["cli"]
        print(f"| {text} | {statistics.median(api) * 1e3:.1f} ms | {min(api) * 1e3:.1f}-{max(api) * 1e3:.1f} ms "
              f"| {statistics.median(cli) * 1e3:.0f} ms | {min(cli) * 1e3:.0f}-{max(cli) * 1e3:.0f} ms "
              f"| {r['rekey']:.2f} s |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
