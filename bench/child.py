"""One measured process of the benchmark suite (started fresh by ``run.py`` each time).

    python bench/child.py CONTENDER --manifest M.json --result R.json [--file F] [--out O] [--verify]

Imports what the contender needs, times the load (or save) call alone with
``perf_counter``, writes a small JSON result and exits; ``run.py`` measures the
whole-process wall time and peak RSS from outside (``os.wait4``). With ``--verify`` the
loaded tensors are checked against the manifest's checksums after the timed call.
Only the standard library is imported at module level, so every contender pays for
exactly the imports it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

import _common as C


def _ids(m: dict[str, Any]) -> Any:
    import tensorseal

    return tensorseal.load_identities(m["identity_file"])


def _ct_register(m: dict[str, Any]) -> None:
    import cryptotensors

    cryptotensors.register_direct_key_provider(keys=[m["ct_keys"]["enc_key"], m["ct_keys"]["sign_key"]])


# Each load contender: (setup(manifest) -> state, call(state, path) -> tensors). setup runs
# before the timer (imports, reading key files); call is what is timed.
def _setup_st_numpy(m):
    from safetensors.numpy import load_file

    return load_file


def _setup_st_torch_clone(m):
    from safetensors.torch import load_file

    def call(path):
        tensors = load_file(path)
        return {k: v.clone() for k, v in tensors.items()}

    return call


def _setup_ts_numpy(m):
    import tensorseal.numpy

    ids = _ids(m)
    return lambda path: tensorseal.numpy.load_file(path, identities=ids)


def _setup_ts_torch(m):
    import tensorseal.torch
    import torch  # noqa: F401 - tensorseal.torch imports it lazily; keep it out of the call


    ids = _ids(m)
    return lambda path: tensorseal.torch.load_file(path, identities=ids)


def _setup_ct_numpy(m):
    import cryptotensors.numpy

    _ct_register(m)
    return cryptotensors.numpy.load_file


def _setup_ct_torch(m):
    import cryptotensors.torch

    _ct_register(m)
    return cryptotensors.torch.load_file


def _setup_naive(m):
    """Read the whole file, one AESGCM.decrypt per <2 GiB piece (one call for a model of
    that size), check a sha256, write the plaintext to /dev/shm, load it with
    safetensors.numpy from there, delete it."""
    import hashlib
    import struct

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from safetensors.numpy import load_file

    key = bytes.fromhex(m["naive_key"])
    stage_dir = m["naive_stage_dir"]

    def call(path):
        with open(path, "rb") as f:
            blob = f.read()
        mv = memoryview(blob)
        magic, digest, (size,) = bytes(mv[:8]), bytes(mv[8:40]), struct.unpack("<Q", mv[40:48])
        if magic != C.NAIVE_MAGIC:
            raise ValueError("not a naive file")
        aead, pos, pieces = AESGCM(key), 48, []
        while pos < len(blob):
            n = min(C.NAIVE_PIECE, size - sum(len(p) for p in pieces)) + 16
            pieces.append(aead.decrypt(mv[pos : pos + 12], mv[pos + 12 : pos + 12 + n], None))
            pos += 12 + n
        del mv, blob
        h = hashlib.sha256()
        for p in pieces:
            h.update(p)
        if h.digest() != digest:
            raise ValueError("sha256 mismatch")
        staged = os.path.join(stage_dir, f"tsbench-naive-{os.getpid()}.safetensors")
        try:
            with open(staged, "wb") as f:
                for p in pieces:
                    f.write(p)
            del pieces
            return load_file(staged)
        finally:
            os.unlink(staged)

    return call


def _setup_copy_floor(m):
    """No crypto at all: read the plain file's tensors into fresh numpy arrays with the
    same 2-thread, 1 MiB preadv loop tensorseal uses. The floor for any loader that
    copies the file into private memory on this machine."""
    import json
    import struct
    import threading

    import numpy as np

    def call(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            (n,) = struct.unpack("<Q", os.pread(fd, 8, 0))
            header = json.loads(os.pread(fd, n, 8))
            header.pop("__metadata__", None)
            out, jobs = {}, []
            for name, info in header.items():
                start, end = info["data_offsets"]
                buf = np.empty(end - start, dtype=np.uint8)
                out[name] = buf.view(np.float32).reshape(info["shape"])
                mv = memoryview(buf)
                jobs += [(mv[o : o + (1 << 20)], 8 + n + start + o) for o in range(0, end - start, 1 << 20)]

            def work(chunk):
                for dest, off in chunk:
                    os.preadv(fd, [dest], off)

            half = len(jobs) // 2
            t = threading.Thread(target=work, args=(jobs[half:],))
            t.start()
            work(jobs[:half])
            t.join()
            return out
        finally:
            os.close(fd)

    return call


LOADERS: dict[str, Callable[[dict[str, Any]], Callable[[str], Any]]] = {
    "copy-floor": _setup_copy_floor,
    "st-numpy": _setup_st_numpy,
    "st-torch-clone": _setup_st_torch_clone,
    "ts-numpy": _setup_ts_numpy,
    "ts-numpy-2nd": _setup_ts_numpy,
    "ts-torch": _setup_ts_torch,
    "ct-numpy": _setup_ct_numpy,
    "ct-torch": _setup_ct_torch,
    "naive": _setup_naive,
}


# Save contenders: tensors are read from the plain file before the timer.
def _save_st_numpy(m):
    from safetensors.numpy import save_file

    return lambda tensors, out: save_file(tensors, out)


def _save_ts_numpy(m):
    import tensorseal.numpy

    rec = m["recipient"]
    return lambda tensors, out: tensorseal.numpy.save_file(tensors, out, recipients=[rec])


def _save_ct_numpy(m):
    import cryptotensors.numpy

    config = {"enc_key": m["ct_keys"]["enc_key"], "sign_key": m["ct_keys"]["sign_key"]}
    return lambda tensors, out: cryptotensors.numpy.save_file(tensors, out, config=config)


SAVERS = {"st-save-numpy": _save_st_numpy, "ts-save-numpy": _save_ts_numpy, "ct-save": _save_ct_numpy}


# File-op fallbacks, used only when no `tensorseal` CLI can be found.
def _api_file_op(m, op, src, dst):
    import tensorseal

    if op == "encrypt":
        tensorseal.encrypt_file(src, dst, [m["recipient"]])
    else:
        tensorseal.decrypt_file(src, dst, tensorseal.load_identities(m["identity_file"]))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("contender")
    p.add_argument("--manifest", required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--file", help="input file (default: the contender's usual one)")
    p.add_argument("--out", help="output file of a save contender")
    p.add_argument("--verify", action="store_true", help="check the loaded tensors' checksums")
    args = p.parse_args()
    t_main = time.perf_counter()
    with open(args.manifest) as f:
        m = json.load(f)
    res: dict[str, Any] = {"contender": args.contender, "pid": os.getpid()}
    name = args.contender

    if name in LOADERS:
        call = LOADERS[name](m)
        path = args.file
        res["setup_s"] = time.perf_counter() - t_main
        calls = []
        if name == "ts-numpy-2nd":  # a first load, dropped, then the measured second one
            t0 = time.perf_counter()
            tensors = call(path)
            calls.append(time.perf_counter() - t0)
            del tensors
        t0 = time.perf_counter()
        tensors = call(path)
        calls.append(time.perf_counter() - t0)
        res["call_s"] = calls[-1]
        res["calls"] = calls
        if args.verify:
            res["verify_ok"], res["verify_detail"] = C.check_tensors(tensors, m)
    elif name in SAVERS:
        save = SAVERS[name](m)
        tensors = C.read_plain_tensors(args.file)
        res["setup_s"] = time.perf_counter() - t_main
        t0 = time.perf_counter()
        save(tensors, args.out)
        res["call_s"] = time.perf_counter() - t0
    elif name in ("api-encrypt", "api-decrypt"):
        res["setup_s"] = time.perf_counter() - t_main
        t0 = time.perf_counter()
        _api_file_op(m, name[4:], args.file, args.out)
        res["call_s"] = time.perf_counter() - t0
    else:
        print(f"unknown contender {name!r}", file=sys.stderr)
        return 2
    with open(args.result, "w") as f:
        json.dump(res, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
