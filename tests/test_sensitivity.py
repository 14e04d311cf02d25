"""Sensitivity analysis for selective encryption (tensorseal.sensitivity), on tiny numpy models."""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Mapping

import numpy as np
import pytest

from tensorseal.errors import TensorSealError, UsageError
from tensorseal.sensitivity import (
    DEFAULT_THRESHOLD,
    attacker_guess,
    critical_tensors,
    load_evaluator,
    rank_tensors,
    read_safetensors,
    without_key,
)


# --- a 2-layer MLP whose weights matter and whose other tensors do not -----------------
def mlp_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1234)
    return {
        "w1": rng.standard_normal((8, 16)).astype(np.float32),
        "b1": (0.01 * rng.standard_normal(16)).astype(np.float32),
        "w2": rng.standard_normal((16, 3)).astype(np.float32),
        "b2": np.zeros(3, np.float32),  # constant: the generous attacker guesses it exactly
        "unused": rng.standard_normal((5, 5)).astype(np.float32),
        "step": np.array(7, dtype=np.int64),  # 0-d int, like BatchNorm's num_batches_tracked
        "empty": np.zeros((0, 4), np.float32),
    }


X = np.random.default_rng(99).standard_normal((64, 8)).astype(np.float32)


def mlp(t: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.maximum(X @ t["w1"] + t["b1"], 0) @ t["w2"] + t["b2"]


REFERENCE = mlp(mlp_tensors())


def r2(t: Mapping[str, np.ndarray]) -> float:
    """Variance of the original output explained, clipped at 0 (a useless model scores 0)."""
    err = np.mean((mlp(t) - REFERENCE) ** 2)
    return max(0.0, 1.0 - float(err / REFERENCE.var()))


def test_ranking_puts_the_weights_first_and_inert_tensors_last():
    ranking = rank_tensors(mlp_tensors(), r2)
    names = [t.name for t in ranking]
    assert set(names) == set(mlp_tensors())
    assert set(names[:2]) == {"w1", "w2"}
    assert names[2] == "b1"
    assert ranking[0].degradation > 0.5 and ranking[1].degradation > 0.5
    assert 0 <= ranking[2].degradation < ranking[1].degradation
    for t in ranking[3:]:
        assert t.degradation == 0 and t.relative == 0, t
    by_name = {t.name: t for t in ranking}
    assert by_name["w1"].nbytes == 8 * 16 * 4 and by_name["empty"].nbytes == 0
    # ties (degradation 0) are broken by size, then name: cheapest first
    assert names[3:] == ["empty", "step", "b2", "unused"]


# --- an evaluator whose score is additive, to test the greedy selection exactly -----------
IMPORTANCE = {"a": 0.5, "b": 0.25, "c": 0.125, "d": 0.0625, "noise": 0.0}
# the more important, the larger: "a" has 12 elements, "noise" 8
ORIGINAL = {n: np.full(12 - i, float(i + 1), np.float32) + np.arange(12 - i, dtype=np.float32)
            for i, n in enumerate(IMPORTANCE)}  # fmt: skip


def additive(t: Mapping[str, np.ndarray]) -> float:
    """1 minus the importance of every tensor that differs from the original."""
    return 1.0 - sum(w for n, w in IMPORTANCE.items() if not np.array_equal(t[n], ORIGINAL[n]))


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        # a tensor that reaches the threshold alone: the smallest such
        (0.05, ["d"]), (0.1, ["c"]), (0.125, ["c"]), (0.2, ["b"]), (0.5, ["a"]),
        # none alone: the top of the ranking until they reach it together
        (0.6, ["a", "b"]), (0.8, ["a", "b", "c"]), (0.9, ["a", "b", "c", "d"]),
    ],
)  # fmt: skip
def test_selection_stops_at_the_threshold(threshold, expected):
    sel = critical_tensors(ORIGINAL, additive, threshold=threshold)
    assert list(sel.encrypt) == expected
    assert sel.reached
    assert sel.relative_degradation >= threshold
    assert sel.degradation == pytest.approx(sum(IMPORTANCE[n] for n in expected))
    assert sel.score == pytest.approx(1 - sel.degradation) and sel.baseline == 1.0
    assert set(sel.plain) == set(ORIGINAL) - set(expected)
    assert sel.encrypted_bytes == sum(ORIGINAL[n].nbytes for n in expected)
    assert sel.total_bytes == sum(a.nbytes for a in ORIGINAL.values())
    assert sel.fraction == pytest.approx(sel.encrypted_bytes / sel.total_bytes)
    assert [t.name for t in sel.ranking] == list(IMPORTANCE)


def test_unreachable_threshold_encrypts_everything():
    sel = critical_tensors(ORIGINAL, additive, threshold=0.95)  # at most 0.9375 can be lost
    assert not sel.reached
    assert set(sel.encrypt) == set(ORIGINAL) and sel.plain == ()
    assert sel.fraction == 1.0
    assert sel.degradation == pytest.approx(0.9375)


def test_never_empty_when_nothing_matters():
    sel = critical_tensors(mlp_tensors(), lambda t: 1.0, threshold=0.01)
    assert not sel.reached
    assert set(sel.encrypt) == set(mlp_tensors())
    assert sel.degradation == 0 and sel.fraction == 1.0


def test_candidates_limit_what_may_be_encrypted():
    sel = critical_tensors(ORIGINAL, additive, threshold=0.3, candidates=["b", "c", "noise"])
    assert list(sel.encrypt) == ["b", "c"]
    assert set(sel.plain) == {"a", "d", "noise"}
    assert [t.name for t in sel.ranking] == ["b", "c", "noise"]
    sel = critical_tensors(ORIGINAL, additive, threshold=0.1, candidates=["a", "b", "noise"])
    assert list(sel.encrypt) == ["b"]
    # unreachable among the candidates: all candidates, and only them
    sel = critical_tensors(ORIGINAL, additive, threshold=0.5, candidates=["c", "d"])
    assert not sel.reached and set(sel.encrypt) == {"c", "d"}
    with pytest.raises(UsageError, match="not in the model"):
        critical_tensors(ORIGINAL, additive, candidates=["zzz"])


def test_mlp_default_threshold_is_reached_with_part_of_the_model():
    sel = critical_tensors(mlp_tensors(), r2)
    assert sel.threshold == DEFAULT_THRESHOLD
    assert sel.reached and sel.relative_degradation >= DEFAULT_THRESHOLD
    assert sel.encrypt[0] in {"w1", "w2"} and "unused" not in sel.encrypt
    assert 0 < sel.fraction < 1


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = rank_tensors(mlp_tensors(), r2, seed=5)
    b = rank_tensors(mlp_tensors(), r2, seed=5)
    c = rank_tensors(mlp_tensors(), r2, seed=6)
    assert a == b
    assert [t.score for t in a] != [t.score for t in c]
    assert critical_tensors(mlp_tensors(), r2, seed=5) == critical_tensors(mlp_tensors(), r2, seed=5)


def test_more_trials_give_the_attacker_their_best_guess():
    one = {t.name: t.score for t in rank_tensors(mlp_tensors(), r2, trials=1)}
    many = {t.name: t.score for t in rank_tensors(mlp_tensors(), r2, trials=4)}
    assert all(many[n] >= one[n] for n in one)
    assert any(many[n] > one[n] for n in one)


def test_evaluator_gets_read_only_arrays_and_the_originals_are_untouched():
    tensors = mlp_tensors()
    before = {n: a.copy() for n, a in tensors.items()}
    seen = []

    def evaluate(t):
        seen.append(all(not a.flags.writeable for a in t.values()))
        with pytest.raises(ValueError):
            t["w1"][0, 0] = 0  # numpy's own error for a read-only array
        return r2(t)

    rank_tensors(tensors, evaluate)
    assert seen and all(seen)
    for n in tensors:
        assert np.array_equal(tensors[n], before[n])


def test_a_broken_model_counts_as_the_worst_score():
    def nan_if_w1_changed(t):
        return math.nan if not np.array_equal(t["w1"], mlp_tensors()["w1"]) else 1.0

    sel = critical_tensors(mlp_tensors(), nan_if_w1_changed, threshold=1.0)
    assert sel.encrypt == ("w1",) and sel.reached and sel.score == -math.inf


@pytest.mark.parametrize(
    ("evaluate", "message"),
    [(lambda t: 0.0, "not above 0"), (lambda t: -3.0, "not above 0"), (lambda t: "good", "not a number")],
)
def test_bad_evaluator_results(evaluate, message):
    with pytest.raises(UsageError, match=message):
        rank_tensors(ORIGINAL, evaluate)


@pytest.mark.parametrize("threshold", [0, -0.5, 1.5, math.nan, "0.9"])
def test_threshold_must_be_a_fraction(threshold):
    with pytest.raises(UsageError, match="threshold"):
        critical_tensors(ORIGINAL, additive, threshold=threshold)


def test_bad_arguments():
    with pytest.raises(UsageError, match="no tensors"):
        rank_tensors({}, additive)
    with pytest.raises(UsageError, match="trials"):
        rank_tensors(ORIGINAL, additive, trials=0)
    with pytest.raises(UsageError, match="guess for"):
        rank_tensors(ORIGINAL, additive, guess=lambda a, rng: np.zeros(3, np.float64))


# --- the attacker's guess -------------------------------------------------------------
@pytest.mark.parametrize(
    "tensor",
    [
        np.linspace(-2, 3, 60, dtype=np.float32).reshape(3, 4, 5),
        np.linspace(0.5, 1.5, 10).astype(np.float16),
        np.arange(-5, 20, dtype=np.int32),
        np.arange(3, 9, dtype=np.uint8),
        np.array(7, dtype=np.int64),
        np.array(2.5, dtype=np.float64),
        np.array([True, False, True, True]),
        np.zeros((0, 3), np.float32),
        (np.arange(6) + 1j * np.arange(6)).astype(np.complex64),
    ],
    ids=["f32", "f16", "i32", "u8", "i64-0d", "f64-0d", "bool", "empty", "c64"],
)
def test_guess_keeps_shape_dtype_and_range(tensor):
    g = attacker_guess(tensor, np.random.default_rng(0))
    assert g.shape == tensor.shape and g.dtype == tensor.dtype
    if tensor.size and tensor.dtype.kind in "fiu":
        assert tensor.min() <= g.min() and g.max() <= tensor.max()


def test_guess_statistics_and_constants():
    real = np.random.default_rng(3).normal(2.0, 0.5, 100_000).astype(np.float32)
    g = attacker_guess(real, np.random.default_rng(0))
    assert abs(g.mean() - 2.0) < 0.02 and abs(g.std() - 0.5) < 0.02
    assert not np.array_equal(g, real)
    var = np.abs(real)  # non-negative, like BatchNorm running_var: the guess stays >= 0
    assert attacker_guess(var, np.random.default_rng(0)).min() >= 0
    assert attacker_guess(np.array(7, np.int64), np.random.default_rng(0)) == 7
    assert np.array_equal(attacker_guess(np.ones(4, np.float32), np.random.default_rng(0)), np.ones(4))
    with_nan = np.array([1.0, np.nan, 3.0, np.inf], np.float32)
    assert np.isfinite(attacker_guess(with_nan, np.random.default_rng(0))).all()
    with pytest.raises(UsageError, match="dtype"):
        attacker_guess(np.array(["a", "b"]), np.random.default_rng(0))


# --- evaluator specs ------------------------------------------------------------------
@pytest.fixture
def eval_module(tmp_path, monkeypatch):
    pkg = tmp_path / "evalpkg_sens"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(
        textwrap.dedent("""
        def evaluate(tensors):
            return 0.75
        class Holder:
            @staticmethod
            def score(tensors):
                return 0.5
        NOT_CALLABLE = 3
    """)
    )
    (pkg / "broken.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    (pkg / "needs_missing.py").write_text("import tensorseal_no_such_dependency\n")
    monkeypatch.chdir(tmp_path)
    yield pkg
    for name in [m for m in sys.modules if m.startswith("evalpkg_sens")]:
        del sys.modules[name]


def test_load_evaluator_from_a_module_in_the_current_directory(eval_module):
    assert load_evaluator("evalpkg_sens.good:evaluate")({}) == 0.75
    assert load_evaluator("evalpkg_sens.good:Holder.score")({}) == 0.5
    assert str(eval_module.parent) not in sys.path  # the directory was only added for the import


def test_load_evaluator_from_a_file(eval_module):
    assert load_evaluator("evalpkg_sens/good.py:evaluate")({}) == 0.75
    assert load_evaluator(str(eval_module / "good.py") + ":evaluate")({}) == 0.75


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("evalpkg_sens.good", "not MODULE:FUNCTION"),
        ("evalpkg_sens.good:", "not MODULE:FUNCTION"),
        (":evaluate", "not MODULE:FUNCTION"),
        ("evalpkg_sens.good:eval-uate", "not MODULE:FUNCTION"),
        ("evalpkg sens:evaluate", "not a dotted module name"),
        ("evalpkg_sens.good:nothing", "has no attribute 'nothing'"),
        ("evalpkg_sens.good:NOT_CALLABLE", "not a function"),
        ("evalpkg_sens.broken:evaluate", "cannot import .* RuntimeError: boom$"),
        ("evalpkg_sens.needs_missing:evaluate", "tensorseal_no_such_dependency"),
        ("evalpkg_sens.nosuch:evaluate", "evalpkg_sens.nosuch"),
        ("no_such_top_level_module_xyz:evaluate", "no module named 'no_such_top_level_module_xyz'"),
        ("missing_dir/nothing.py:evaluate", "does not exist"),
    ],
)
def test_load_evaluator_errors_are_one_line_usage_errors(eval_module, spec, message):
    with pytest.raises(UsageError, match=message) as info:
        load_evaluator(spec)
    assert isinstance(info.value, TensorSealError)
    assert "\n" not in str(info.value)
    assert info.value.hint


# --- reading a plain safetensors file -------------------------------------------------
def test_read_safetensors_round_trip(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    tensors = {k: v for k, v in mlp_tensors().items()}
    tensors["mask"] = np.array([True, False, True])
    tensors["half"] = np.arange(5, dtype=np.float16)
    path = tmp_path / "m.safetensors"
    st.save_file(tensors, str(path))
    back = read_safetensors(path)
    assert sorted(back) == sorted(tensors)
    for n, want in tensors.items():
        assert back[n].dtype == want.dtype and np.array_equal(back[n], want), n
        assert not back[n].flags.writeable
    from_file = {n: back[n] for n in mlp_tensors()}
    assert rank_tensors(from_file, r2) == rank_tensors(mlp_tensors(), r2)


def test_read_safetensors_refuses_other_files(tmp_path):
    from tensorseal.errors import FormatError

    path = tmp_path / "x.bin"
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(FormatError):
        read_safetensors(path)


# --- known tensors, reusing a ranking, what the attacker runs ------------------------------
def test_known_tensors_are_never_worth_encrypting():
    ranking = rank_tensors(ORIGINAL, additive, known=["a"])
    assert {t.name: t.degradation for t in ranking}["a"] == 0
    sel = critical_tensors(ORIGINAL, additive, threshold=0.3, known=["a"])
    assert list(sel.encrypt) == ["b", "c"]
    sel = critical_tensors(ORIGINAL, additive, threshold=0.1, known=["c"])
    assert list(sel.encrypt) == ["b"]
    with pytest.raises(UsageError, match="not in the model"):
        rank_tensors(ORIGINAL, additive, known=["zzz"])


def test_a_ranking_can_be_reused_across_thresholds():
    calls = []

    def counting(t):
        calls.append(1)
        return additive(t)

    ranking = rank_tensors(ORIGINAL, counting, trials=2)
    assert len(calls) == 1 + 2 * len(ORIGINAL)
    calls.clear()
    sel = critical_tensors(ORIGINAL, counting, threshold=0.6, ranking=ranking, trials=2)
    assert list(sel.encrypt) == ["a", "b"]
    assert len(calls) == 1 + 2 * 2  # the baseline, then all five and a+b, twice each (a alone is ranked)
    assert sel == critical_tensors(ORIGINAL, additive, threshold=0.6, trials=2)
    calls.clear()
    assert list(critical_tensors(ORIGINAL, counting, threshold=0.2, ranking=ranking, trials=2).encrypt) == ["b"]
    assert len(calls) == 1  # the baseline only: b alone is in the ranking
    with pytest.raises(UsageError, match="ranking"):
        critical_tensors(ORIGINAL, additive, ranking=ranking[:2])


def test_without_key_is_what_the_analysis_measured():
    sel = critical_tensors(mlp_tensors(), r2, threshold=0.5, seed=3, trials=1)
    attacked = without_key(mlp_tensors(), sel.encrypt, seed=3)
    assert r2(attacked) == sel.score
    for n in sel.plain:
        assert np.array_equal(attacked[n], mlp_tensors()[n])
    for n in sel.encrypt:
        assert not np.array_equal(attacked[n], mlp_tensors()[n])
    assert np.array_equal(without_key(mlp_tensors(), ["w1"], known=["w1"])["w1"], mlp_tensors()["w1"])
    with pytest.raises(UsageError, match="not in the model"):
        without_key(mlp_tensors(), ["nope"])


def test_an_evaluator_can_declare_known_tensors():
    def evaluate(t):
        return additive(t)

    evaluate.known_tensors = ("a", "b")  # type: ignore[attr-defined]
    sel = critical_tensors(ORIGINAL, evaluate, threshold=0.15)
    assert list(sel.encrypt) == ["c", "d"]
    evaluate.known_tensors = ("nope",)  # type: ignore[attr-defined]
    with pytest.raises(UsageError, match="'nope' is not in the model"):
        rank_tensors(ORIGINAL, evaluate)


def test_the_prefix_search_takes_few_evaluations_on_a_long_ranking():
    weights = {f"t{i:03d}": 1 / 64 for i in range(64)}  # every tensor alone loses 1/64
    originals = {n: np.arange(10 + i, dtype=np.float32) for i, n in enumerate(weights)}
    calls = []

    def evaluate(t):
        calls.append(1)
        return 1.0 - sum(w for n, w in weights.items() if not np.array_equal(t[n], originals[n]))

    ranking = rank_tensors(originals, evaluate, trials=1)
    calls.clear()
    sel = critical_tensors(originals, evaluate, threshold=0.3, trials=1, ranking=ranking)
    assert len(sel.encrypt) == 20  # 20/64 = 0.3125 >= 0.3 > 19/64
    assert sel.encrypt == tuple(t.name for t in ranking[:20])
    assert len(calls) <= 1 + 2 * 7  # baseline, then doubling and bisection: not 20 steps
    calls.clear()
    sel = critical_tensors(originals, evaluate, threshold=1.0, trials=1, ranking=ranking)
    assert sel.reached and len(sel.encrypt) == 64
