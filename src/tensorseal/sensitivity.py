"""Sensitivity analysis for selective encryption: which tensors to encrypt.

Selective encryption leaves some tensors in clear (still authenticated). That protects
the model's *usefulness*, not the secrecy of every weight: it is only worth doing if the
model is useless without the encrypted tensors. This module measures that.

You supply an **evaluator**: a function that takes a full set of tensors (name -> numpy
array, read-only) and returns a quality score, higher is better. Write it so that the
original model scores well above 0 and a useless model scores about 0 (chance-corrected):
for example the agreement of a classifier's decisions with the original model's as
informedness (recall on positives + recall on negatives - 1), or a pitch tracker's
fraction of frames within 50 cents of the true pitch. A non-finite score (the model
produced NaN) counts as a broken model (``-inf``).

**Attacker model.** The attacker has the sealed file and the code: the architecture,
every tensor's name, dtype and shape, and every plain tensor's values. Encrypted tensors
are unknown. In their place the attacker puts a random guess, and we are generous: the
guess is drawn with the real tensor's own statistics, which the attacker does not have
but could estimate from the architecture and similar public models (see
:func:`attacker_guess`). The attacker tries ``trials`` guesses (3 by default) and keeps
the best, since a single guess can be unluckily bad for them (docs/SELECTIVE.md). This
does *not* model an attacker with training data who retrains the encrypted tensors from
the plain ones (cheap if few are encrypted), nor one with a similar public model: for
them, encrypt everything.

**Threshold.** ``threshold`` is the fraction of the original score that the model must
lose without the key: ``(baseline - score_without_key) / baseline >= threshold``. With
the default 0.9 the model without the key keeps at most 10% of its score. The baseline
must be positive.

Typical use (the CLI's ``--critical auto --eval MODULE:FUNCTION``)::

    tensors = read_safetensors("model.safetensors")
    sel = critical_tensors(tensors, load_evaluator("my_eval:evaluate"), threshold=0.9)
    tensorseal.numpy.save_file(tensors, "model.tseal", recipients, encrypt_only=selection.exact(sel.encrypt))

Only numpy is imported here; evaluators import whatever framework they need.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import FormatError, UnsupportedDtypeError, UsageError
from .files import read_safetensors_index

__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_TRIALS",
    "CriticalSelection",
    "Evaluator",
    "Guess",
    "TensorImpact",
    "attacker_guess",
    "critical_tensors",
    "load_evaluator",
    "rank_tensors",
    "read_safetensors",
    "without_key",
]

Evaluator = Callable[[Mapping[str, np.ndarray]], float]
"""``evaluate(tensors) -> score``: full set of tensors in, quality out, higher is better."""

Guess = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""``guess(real_tensor, rng) -> array`` of the same shape and dtype: the attacker's stand-in."""

DEFAULT_THRESHOLD = 0.9
DEFAULT_TRIALS = 3  # one random guess can be unluckily bad for the attacker: keep their best of 3


@dataclass(frozen=True)
class TensorImpact:
    """What replacing one tensor alone by the attacker's guess does to the score."""

    name: str
    nbytes: int
    score: float  # the score with this tensor replaced (the attacker's best over the trials)
    degradation: float  # baseline - score
    relative: float  # degradation / baseline


@dataclass(frozen=True)
class CriticalSelection:
    """The tensors to encrypt, and what the model is worth without them.

    ``reached`` is False when even replacing every candidate tensor did not lose
    ``threshold`` of the score; ``encrypt`` then holds every candidate (encrypt all).
    """

    encrypt: tuple[str, ...]  # in ranking order
    plain: tuple[str, ...]
    ranking: tuple[TensorImpact, ...]
    baseline: float
    score: float  # the score without the key: every tensor of ``encrypt`` replaced
    degradation: float  # baseline - score
    threshold: float
    reached: bool
    encrypted_bytes: int
    total_bytes: int

    @property
    def fraction(self) -> float:
        """Fraction of the tensor bytes that are encrypted."""
        return self.encrypted_bytes / self.total_bytes if self.total_bytes else 1.0

    @property
    def relative_degradation(self) -> float:
        """Fraction of the baseline score lost without the key."""
        return self.degradation / self.baseline


# --- the attacker's guess -------------------------------------------------------------
def _is_float_like(dtype: np.dtype) -> bool:
    # numpy floats, and ml_dtypes' bfloat16 / float8 (kind "V" but castable to float64)
    return dtype.kind == "f" or (dtype.kind == "V" and ("float" in dtype.name))


def attacker_guess(tensor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The default attacker's stand-in for an encrypted tensor: same shape and dtype.

    - floating point: normal with the tensor's own mean and standard deviation, clipped
      to its own [min, max] (so a variance stays positive); complex: the same for the
      real and imaginary parts;
    - integers: uniform in the tensor's own [min, max] (a constant counter such as
      ``num_batches_tracked`` is therefore guessed exactly);
    - bool: True with the tensor's own fraction of True;
    - 0-d tensors like 1-element ones; empty tensors are returned as they are.

    Non-finite values are ignored in the statistics. Raises UsageError for other dtypes
    (strings, objects, structured).
    """
    dtype = tensor.dtype
    if tensor.size == 0:
        return tensor.copy()
    if dtype.kind == "b":
        return rng.random(tensor.shape) < float(np.mean(tensor))
    if dtype.kind in "iu":
        lo, hi = int(tensor.min()), int(tensor.max())
        return rng.integers(lo, hi, size=tensor.shape, endpoint=True).astype(dtype)
    if dtype.kind == "c":
        real = attacker_guess(np.ascontiguousarray(tensor.real), rng)
        imag = attacker_guess(np.ascontiguousarray(tensor.imag), rng)
        return (real + 1j * imag).astype(dtype)
    if _is_float_like(dtype):
        values = tensor.astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return np.zeros(tensor.shape, dtype=dtype)
        lo, hi = float(finite.min()), float(finite.max())
        draw = rng.normal(float(finite.mean()), float(finite.std()), size=tensor.shape)
        return np.clip(draw, lo, hi).astype(dtype)
    raise UsageError(f"cannot guess a tensor of dtype {dtype}", hint="pass guess= for this dtype")


# --- evaluation -----------------------------------------------------------------------
def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def _score(evaluate: Evaluator, tensors: Mapping[str, np.ndarray]) -> float:
    value = evaluate(tensors)
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise UsageError(
            f"the evaluator returned {type(value).__name__}, not a number", hint="return a float, higher is better"
        ) from None
    return score if math.isfinite(score) else -math.inf


def _seeded_guess(name: str, real: np.ndarray, seed: int, trial: int, guess: Guess) -> np.ndarray:
    # the same guess for a tensor and trial whatever else is replaced, and in whatever order
    rng = np.random.default_rng(np.random.SeedSequence([seed, trial, zlib.crc32(name.encode())]))
    g = np.asarray(guess(real, rng))
    if g.shape != real.shape or g.dtype != real.dtype:
        got, want = f"{g.dtype}{list(g.shape)}", f"{real.dtype}{list(real.shape)}"
        raise UsageError(f"the guess for {name!r} is {got}, not {want}", hint="a guess keeps the shape and dtype")
    return _readonly(g)


def without_key(
    tensors: Mapping[str, np.ndarray],
    encrypted: Iterable[str],
    *,
    seed: int = 0,
    trial: int = 0,
    guess: Guess = attacker_guess,
    known: Iterable[str] = (),
) -> dict[str, np.ndarray]:
    """What the attacker runs: ``tensors`` with every ``encrypted`` one replaced by their
    guess (the same guesses the analysis uses for this ``seed`` and ``trial``), except the
    ``known`` ones, which the attacker can compute without the file.

    Raises UsageError for a name not in ``tensors``.
    """
    out = {n: _readonly(np.asarray(a)) for n, a in tensors.items()}
    known = set(known)
    for name in encrypted:
        if name not in out:
            raise UsageError(f"tensor {name!r} is not in the model")
        if name not in known:
            out[name] = _seeded_guess(name, out[name], seed, trial, guess)
    return out


class _Analysis:
    """Shared state of one analysis: originals, baseline, deterministic guesses."""

    def __init__(
        self, tensors: Mapping[str, np.ndarray], evaluate: Evaluator, seed: int, trials: int, guess: Guess,
        candidates: Iterable[str] | None, known: Iterable[str], progress: Callable[[str], None] | None,
    ) -> None:  # fmt: skip
        if not tensors:
            raise UsageError("no tensors to analyse")
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise UsageError(f"trials must be a whole number of at least 1, not {trials!r}")
        self.originals = {name: _readonly(np.asarray(a)) for name, a in tensors.items()}
        self.candidates = list(self.originals) if candidates is None else list(dict.fromkeys(candidates))
        self.known = set(known) | set(getattr(evaluate, "known_tensors", ()))
        for n in [*self.candidates, *self.known]:
            if n not in self.originals:
                raise UsageError(f"tensor {n!r} is not in the model")
        if not self.candidates:
            raise UsageError("no candidate tensors to encrypt")
        self.evaluate, self.seed, self.trials, self.guess = evaluate, seed, trials, guess
        self.progress = progress or (lambda _msg: None)
        self._guesses: dict[tuple[str, int], np.ndarray] = {}
        self.baseline = _score(evaluate, self.originals)
        if not self.baseline > 0:
            raise UsageError(
                f"the evaluator scores the original model {self.baseline}, not above 0",
                hint="the threshold is a fraction of the original score: return a positive score, higher is better",
            )

    def _guess(self, name: str, trial: int) -> np.ndarray:
        if name in self.known:
            return self.originals[name]
        key = (name, trial)
        if key not in self._guesses:
            self._guesses[key] = _seeded_guess(name, self.originals[name], self.seed, trial, self.guess)
        return self._guesses[key]

    def score_without(self, names: Iterable[str]) -> float:
        """The attacker's best score over the trials with ``names`` replaced by guesses."""
        names = list(names)
        best = -math.inf
        for trial in range(self.trials):
            replaced = dict(self.originals)
            for n in names:
                replaced[n] = self._guess(n, trial)
            best = max(best, _score(self.evaluate, replaced))
        return best

    def impact(self, name: str) -> TensorImpact:
        real = self.originals[name]
        if all(np.array_equal(self._guess(name, t), real) for t in range(self.trials)):
            score = self.baseline  # guessed exactly (known, constant or empty): the same model
        else:
            score = self.score_without([name])
        lost = self.baseline - score
        return TensorImpact(name, int(real.nbytes), score, lost, lost / self.baseline)

    def rank(self) -> list[TensorImpact]:
        impacts = []
        for i, name in enumerate(self.candidates, 1):
            impacts.append(self.impact(name))
            self.progress(f"ranked {i}/{len(self.candidates)}: {name} (-{impacts[-1].relative:.1%})")
        # most damaging first; among equals the smaller tensor (cheaper to encrypt), then by name
        return sorted(impacts, key=lambda t: (-t.degradation, t.nbytes, t.name))


def rank_tensors(
    tensors: Mapping[str, np.ndarray],
    evaluate: Evaluator,
    *,
    seed: int = 0,
    trials: int = DEFAULT_TRIALS,
    guess: Guess = attacker_guess,
    candidates: Iterable[str] | None = None,
    known: Iterable[str] = (),
    progress: Callable[[str], None] | None = None,
) -> list[TensorImpact]:
    """Rank ``tensors`` (or only ``candidates``) by how much the score drops when each one
    alone is replaced by the attacker's guess, most damaging first.

    ``known``: tensors the attacker can compute without the file (a fixed DFT basis, a
    positional-encoding table); they are "guessed" exactly, so encrypting them gains nothing.
    An evaluator may carry the same list as its ``known_tensors`` attribute (so that the
    CLI's ``--eval`` picks it up); the two are merged.
    ``progress`` gets a one-line message after each step.

    Costs at most ``1 + trials * len(candidates)`` evaluations (a tensor that the attacker
    guesses exactly, such as a known, empty or constant one, is not evaluated: its
    degradation is 0). Deterministic for a given ``seed`` (and a deterministic evaluator).

    Raises UsageError if there is no tensor, a candidate or known name is not in
    ``tensors``, the evaluator does not return a number, or the original model does not
    score above 0; and whatever ``evaluate`` raises.
    """
    return _Analysis(tensors, evaluate, seed, trials, guess, candidates, known, progress).rank()


def critical_tensors(
    tensors: Mapping[str, np.ndarray],
    evaluate: Evaluator,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    trials: int = DEFAULT_TRIALS,
    guess: Guess = attacker_guess,
    candidates: Iterable[str] | None = None,
    known: Iterable[str] = (),
    ranking: Sequence[TensorImpact] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CriticalSelection:
    """Tensors that, all replaced at once by the attacker's guesses, lose at least
    ``threshold`` (a fraction in (0, 1]) of the score, found from the ranking (see
    :func:`rank_tensors` for ``seed``, ``trials``, ``guess``, ``candidates``, ``known``):
    the smallest tensor that does it alone if there is one, else the shortest prefix of the
    ranking that does it together (found by doubling and bisection, assuming that replacing
    more tensors never helps the model; the prefix returned has always been evaluated).
    Tensors outside ``candidates`` always stay plain. ``ranking``: the result of :func:`rank_tensors` with the same
    arguments, to try several thresholds without ranking again. Never returns an empty
    selection: if the threshold is not reached with every candidate replaced, every
    candidate is selected and ``reached`` is False. Costs the ranking's evaluations plus
    about ``2 * trials * log2(len(candidates))``.

    Raises UsageError for a threshold outside (0, 1] or a ``ranking`` of other tensors,
    and like :func:`rank_tensors`.
    """
    if isinstance(threshold, bool) or not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise UsageError(
            f"threshold must be a fraction in (0, 1], not {threshold!r}", hint="e.g. 0.9: lose 90% of the score"
        )
    analysis = _Analysis(tensors, evaluate, seed, trials, guess, candidates, known, progress)
    if ranking is None:
        ranking = analysis.rank()
    elif sorted(t.name for t in ranking) != sorted(analysis.candidates):
        raise UsageError("the ranking given is not of the candidate tensors", hint="rank with the same arguments")
    baseline = analysis.baseline
    usable = [t for t in ranking if t.nbytes > 0 and t.name not in analysis.known]  # the rest hide nothing
    chosen: list[str] = []
    score, reached = baseline, False
    alone = [t for t in usable if t.relative >= threshold]
    if alone:  # one tensor is enough: the smallest such (its score is in the ranking already)
        best = min(alone, key=lambda t: (t.nbytes, -t.degradation, t.name))
        chosen, score, reached = [best.name], best.score, True
        analysis.progress(f"selected {best.name} alone (-{best.relative:.1%})")
    elif usable:
        chosen, score, reached = _shortest_prefix(analysis, usable, threshold)
    if not reached:
        chosen = [t.name for t in ranking]  # encrypt every candidate, empty and known ones included
    encrypt = set(chosen)
    sizes = {n: int(a.nbytes) for n, a in analysis.originals.items()}
    return CriticalSelection(
        encrypt=tuple(chosen),
        plain=tuple(n for n in analysis.originals if n not in encrypt),
        ranking=tuple(ranking),
        baseline=baseline,
        score=score,
        degradation=baseline - score,
        threshold=float(threshold),
        reached=reached,
        encrypted_bytes=sum(sizes[n] for n in encrypt),
        total_bytes=sum(sizes.values()),
    )


def _shortest_prefix(
    analysis: _Analysis, usable: Sequence[TensorImpact], threshold: float
) -> tuple[list[str], float, bool]:
    """The shortest prefix of ``usable`` that reaches the threshold, by doubling then
    bisection: about 2*log2(n) evaluations instead of n. This assumes that replacing more
    tensors does not help the model; whatever prefix is returned has been evaluated."""
    baseline, scores = analysis.baseline, {1: usable[0].score}

    def score(k: int) -> float:
        if k not in scores:
            scores[k] = analysis.score_without(t.name for t in usable[:k])
            lost = (baseline - scores[k]) / baseline
            analysis.progress(f"top {k} together: -{lost:.1%} ({usable[k - 1].name} last)")
        return scores[k]

    def reaches(k: int) -> bool:
        return (baseline - score(k)) / baseline >= threshold

    n = len(usable)
    if not reaches(n):
        return [t.name for t in usable], scores[n], False
    lo, hi = 0, 1  # reaches(lo) is false (or lo == 0), reaches(hi) is unknown
    while not reaches(hi):
        lo, hi = hi, min(2 * hi, n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return [t.name for t in usable[:hi]], scores[hi], True


# --- evaluator specs ----------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_evaluator(spec: str) -> Evaluator:
    """The function named by ``"package.module:function"`` or ``"path/to/file.py:function"``
    (``function`` may be dotted: ``module:obj.method``). A dotted module is looked up on
    ``sys.path`` and then in the current directory, as ``python -m`` would.

    Raises UsageError (one line) if the spec is malformed, the module cannot be imported,
    the attribute is missing or is not callable.
    """
    hint = "use --eval package.module:function or --eval path/to/file.py:function"
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr or not all(p.isidentifier() for p in attr.split(".")):
        raise UsageError(f"evaluator {spec!r} is not MODULE:FUNCTION", hint=hint)
    try:
        if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
            module = _import_file(module_name)
        else:
            if not all(p.isidentifier() for p in module_name.split(".")):
                raise UsageError(f"evaluator module {module_name!r} is not a dotted module name", hint=hint)
            module = _import_module(module_name)
    except UsageError as exc:
        exc.hint = exc.hint or hint
        raise
    except Exception as exc:  # the user's module failed while importing: one line, no traceback
        raise UsageError(f"cannot import evaluator module {module_name!r}: {_one_line(exc)}", hint=hint) from exc
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"evaluator module {module_name!r} has no attribute {attr!r}", hint=hint)
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"evaluator {spec!r} is a {type(obj).__name__}, not a function", hint=hint)
    return obj  # type: ignore[return-value]


def _import_module(name: str) -> object:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # not on sys.path: try the current directory (a console script does not have it)
        top = name.split(".")[0]
        cwd = os.getcwd()
        if exc.name is None or top != exc.name.split(".")[0] or cwd in sys.path:
            raise
        sys.path.insert(0, cwd)
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as again:
            if again.name is not None and again.name.split(".")[0] == top:
                raise UsageError(f"no module named {name!r}", hint="run from the directory that holds it") from None
            raise
        finally:
            sys.path.remove(cwd)


def _import_file(path: str) -> object:
    if not os.path.isfile(path):
        raise UsageError(f"evaluator file {path!r} does not exist")
    name = "_tensorseal_evaluator_" + format(zlib.crc32(os.path.abspath(path).encode()), "08x")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path!r} as a python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# --- plain safetensors, for the analysis --------------------------------------------
_DTYPES = {
    "BOOL": "bool", "U8": "u1", "I8": "i1", "I16": "<i2", "U16": "<u2", "F16": "<f2", "I32": "<i4",
    "U32": "<u4", "F32": "<f4", "I64": "<i8", "U64": "<u8", "F64": "<f8", "C64": "<c8",
}  # fmt: skip
_ML_DTYPES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The tensors of a plain safetensors file as read-only, memory-mapped numpy arrays.

    bfloat16 / float8 need the ``ml_dtypes`` package. Raises FormatError (not a safetensors
    file, or a malformed one), UnsupportedDtypeError, OSError.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        index = read_safetensors_index(fd, size)
    finally:
        os.close(fd)
    if index is None:
        raise FormatError(f"{os.fspath(path)} is not a safetensors file")
    (n,) = struct.unpack("<Q", index.raw[:8])
    data = np.empty(0, np.uint8)
    if index.data_length:
        data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n, shape=(index.data_length,))
    out: dict[str, np.ndarray] = {}
    for e in index.entries:
        if e.dtype in _DTYPES:
            dtype = np.dtype(_DTYPES[e.dtype])
        elif e.dtype in _ML_DTYPES:
            try:
                import ml_dtypes
            except ImportError:
                raise UnsupportedDtypeError(f"numpy has no {e.dtype} dtype", hint="install ml_dtypes") from None
            dtype = np.dtype(getattr(ml_dtypes, _ML_DTYPES[e.dtype]))
        else:
            raise UnsupportedDtypeError(f"numpy cannot represent {e.dtype} tensors")
        out[e.name] = _readonly(np.asarray(data[e.start : e.end]).view(dtype).reshape(e.shape))
    return out
