"""Helpers of the gd_demo and regression studies on hand-made results: the loss at equal
updates, the pairs compared at equal updates, and the width comparisons on log errors."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from dlbasics.studies.definitions.gd_demo import (
    BAYES_ERROR,
    NOISE,
    bayes_loss,
    equal_update_pairs,
    flat_optimum,
    late_change,
    unsettled,
    value_at_updates,
)
from dlbasics.studies.definitions.regression import MARGIN_RATIO, width_comparisons


class FakeResults:
    """Settings with per-seed validation-loss curves (epochs 0..E) and updates per epoch."""

    def __init__(self, curves, per_epoch, seeds=(0, 1)):
        self.seeds = list(seeds)
        self._curves = {k: np.asarray(v, dtype=float) for k, v in curves.items()}
        self._per = per_epoch
        self.settings = {k: SimpleNamespace(label=k, epochs=self._curves[k].shape[1] - 1)
                         for k in curves}

    def histories(self, s):
        u = self._per[s.label]
        E = s.epochs
        return {seed: {"updates": [u * (e + 1) for e in range(E)]} for seed in self.seeds}

    def curves(self, s, metric):
        assert metric == "val_loss"
        return self._curves[s.label]


def test_value_at_updates_takes_the_last_evaluation_within_the_budget():
    res = FakeResults({"mb": [[1.0, 0.5, 0.4, 0.3], [2.0, 0.6, 0.5, 0.2]]}, {"mb": 10})
    s = res.settings["mb"]
    v, used = value_at_updates(res, s, 25)          # epochs at 10, 20, 30 updates: epoch 2
    np.testing.assert_array_equal(v, [0.4, 0.5])
    assert used == 20
    v, used = value_at_updates(res, s, 9)           # one epoch is already 10 updates
    assert used == -1 and np.isnan(v).all()
    v, used = value_at_updates(res, s, 1000)        # beyond the run: not comparable
    assert np.isnan(v).all() and used == -1


def test_equal_update_pairs_use_the_smaller_total_budget():
    res = FakeResults({"batch": [[1.0, 0.9, 0.8, 0.7], [1.0, 0.8, 0.7, 0.6]],
                       "mini": [[1.0, 0.5, 0.4, 0.3], [1.0, 0.6, 0.5, 0.2]],
                       "sgd": [[1.0, 0.2, 0.1, 0.05], [1.0, 0.3, 0.2, 0.1]]},
                      {"batch": 1, "mini": 2, "sgd": 8})
    best = {"sgd": res.settings["sgd"], "batch": res.settings["batch"],
            "mini": res.settings["mini"]}
    pairs = {p[0]: p for p in equal_update_pairs(res, best)}
    # batch: 3 updates in all; mini at epoch 1 (2 updates); sgd's first epoch is 8 updates
    _, va, vb, budget, ua, ub = pairs["batch / mini"]
    assert budget == 3 and (ua, ub) == (3, 2)
    np.testing.assert_array_equal(va, [0.7, 0.6])
    np.testing.assert_array_equal(vb, [0.5, 0.6])
    assert pairs["batch / sgd"][5] == -1
    # mini: 6 updates in all; sgd cannot be evaluated before 8
    assert pairs["mini / sgd"][3] == 6 and pairs["mini / sgd"][5] == -1


def test_width_comparisons_on_log_errors_with_a_ratio_margin():
    rng = np.random.default_rng(0)
    base = np.exp(rng.normal(np.log(1e-3), 0.3, 10))
    errors = {1: base * 40.0,                                  # clearly worse
              2: base * np.exp(rng.normal(0, 0.01, 10)),       # the same within 1.25
              4: base}
    settings = [SimpleNamespace(label=f"w{w}", factors={"target": "bump", "width": w})
                for w in errors]
    res = SimpleNamespace(
        select=lambda target: [s for s in settings if s.factors["target"] == target],
        values=lambda s, key: errors[s.factors["width"]])
    out = width_comparisons(res)
    assert set(out) == {"bump"}
    best, rows = out["bump"]
    means = {w: np.mean(np.log(v)) for w, v in errors.items()}
    assert best == min(means, key=means.get)
    by = {r["width"]: r for r in rows}
    other = 2 if best == 4 else 4
    assert by[1]["verdict"] == "b better"
    assert math.exp(by[1]["diff"]) == pytest.approx(
        np.exp(np.mean(np.log(errors[1] / errors[best]))))
    assert by[other]["verdict"].startswith("equivalent")
    assert by[other]["tost"]["margin"] == pytest.approx(math.log(MARGIN_RATIO))


def test_xor_bayes_error_and_loss_match_a_monte_carlo_draw():
    # the clusters' overlap: a point is misclassified by the best rule when exactly one
    # coordinate crosses 0 (Phi(-2) = 0.02275 at NOISE = 0.5)
    q = 0.5 * math.erfc(2 / math.sqrt(2))
    assert NOISE == 0.5 and BAYES_ERROR == pytest.approx(2 * q * (1 - q), rel=1e-12)
    assert BAYES_ERROR == pytest.approx(0.04447, abs=1e-5)
    # the Bayes posterior's expected cross-entropy against a direct Monte-Carlo estimate
    rng = np.random.default_rng(7)
    corner = rng.choice([-1.0, 1.0], size=(400_000, 2))
    X = corner + NOISE * rng.standard_normal(corner.shape)
    y = corner[:, 0] * corner[:, 1] < 0
    u = 1 / (1 + np.exp(-2 * X / NOISE**2))          # P(coordinate from the + corner | x)
    p1 = u[:, 0] * (1 - u[:, 1]) + (1 - u[:, 0]) * u[:, 1]
    mc = -np.mean(np.where(y, np.log(p1), np.log1p(-p1)))
    assert bayes_loss(NOISE) == pytest.approx(mc, abs=0.002)
    assert bayes_loss(NOISE) == pytest.approx(0.11424, abs=1e-4)
    # the posterior's error rate is the Bayes error
    assert np.mean((p1 > 0.5) != y) == pytest.approx(BAYES_ERROR, abs=0.002)
    # separable clusters: the loss floor vanishes
    assert bayes_loss(0.1) < 1e-12 < bayes_loss(0.25) < 1e-3
    with pytest.raises(ValueError, match="noise"):
        bayes_loss(0.0)


def test_unsettled_counts_seeds_ending_far_above_their_minimum():
    class R:
        def values(self, s, key):
            return {"final_val_loss": np.array([0.30, 0.14, np.nan, 0.5]),
                    "best_val_loss": np.array([0.10, 0.12, 0.1, np.nan])}[key]

    # 0.30 > 1.5 x 0.10 counts; 0.14 < 1.5 x 0.12 does not; missing values do not count
    assert unsettled(R(), {"m": object()}) == {"m": 1}
    assert unsettled(R(), {"m": object()}, factor=1.1) == {"m": 2}


def test_late_change_is_the_geometric_mean_change_over_the_last_fifth():
    # 11 points: the last fifth starts at index 8; per-seed log changes log(1.1) and log(1.0)
    a = np.r_[np.ones(8), 1.0, 1.05, 1.1]
    b = np.r_[np.full(8, 2.0), 2.0, 2.0, 2.0]
    assert late_change([a, b]) == pytest.approx(math.sqrt(1.1) - 1, rel=1e-12)
    assert late_change([b[::-1] * 0 + 3.0]) == 0.0
    assert late_change([[0.5, 0.25]], frac=1.0) == pytest.approx(-0.5)
    assert math.isnan(late_change([1.0, 2.0]))         # one dimension: not seeds x points


def test_flat_optimum_spans_the_rates_within_the_factor():
    lrs = [0.01, 0.03, 0.1, 0.3, 1.0]
    scores = [0.20, 0.104, 0.100, 0.104, np.nan]       # nan: diverged on a seed
    assert flat_optimum(lrs, scores) == (0.03, 0.3)
    assert flat_optimum(lrs, scores, within=1.01) == (0.1, 0.1)
    assert all(math.isnan(v) for v in flat_optimum(lrs, [np.nan] * 5))


def test_load_note_flags_high_or_uneven_timing_loads():
    from dlbasics.studies.analysis import load_note

    assert load_note({}, 2) == ""
    assert load_note({"a": 1.0, "b": 1.5}, 2) == ""            # quiet and even
    note = load_note({"a": 1.0, "b": 8.5}, 2)                 # b above the 2 cores
    assert "a 1.00, b 8.50" in note and "above the number of cores for b." in note
    uneven = load_note({"a": 0.2, "b": 1.5}, 2)               # below the cores, 7.5x apart
    assert uneven and "above the number of cores" not in uneven
