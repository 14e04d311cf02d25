"""Segment-size sweep: why the default segment is 1 MiB.

    python bench/segments.py [--size 1G] [--runs 7] [--sizes-kib 64,256,1024,4096,16384]

Seals the same float32 model once per segment size and loads it with
``tensorseal.numpy.load_file`` in a fresh process per run (file in page cache). Prints
the median load-call time and peak RSS per segment size. Small segments cost Python
overhead per segment (under the GIL); large ones fall out of the per-core L2 cache, so
the scratch copy and the decrypt pass stop sharing cached lines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

CHILD = r"""
import resource, sys, time
import tensorseal, tensorseal.numpy
ids = tensorseal.load_identities(sys.argv[2])
t = time.perf_counter()
tensorseal.numpy.load_file(sys.argv[1], identities=ids)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1G")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--sizes-kib", default="64,256,1024,4096,16384")
    args = ap.parse_args()
    import tensorseal

    total = C.parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="tsseg-") as work:
        plain = os.path.join(work, "plain.safetensors")
        C.write_plain_safetensors(plain, total)
        ident = tensorseal.X25519Identity.generate()
        key = os.path.join(work, "key.txt")
        with open(key, "w") as f:
            f.write(f"{ident}\n")
        print(f"{C.fmt_size(total)} model, {args.runs} fresh-process loads per segment size, medians")
        print(f"{'segment':>10} {'load call':>10} {'GB/s':>6} {'peak RSS':>10}")
        for kib in (int(k) for k in args.sizes_kib.split(",")):
            sealed = os.path.join(work, f"m{kib}.tseal")
            opts = tensorseal.writer.SealOptions(segment_size=kib * 1024)
            tensorseal.encrypt_file(plain, sealed, [ident.recipient()], options=opts)
            C.warm(sealed)
            times, rss = [], []
            for _ in range(args.runs):
                out = subprocess.run([sys.executable, "-c", CHILD, sealed, key], capture_output=True, text=True, check=True)
                t, r = out.stdout.split()
                times.append(float(t))
                rss.append(int(r) * 1024)
            os.unlink(sealed)
            med = statistics.median(times)
            print(f"{kib:>7} KiB {med:>9.3f}s {total / med / 1e9:>6.2f} {statistics.median(rss) / 2**20:>7.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
