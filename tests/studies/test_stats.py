import math

import numpy as np
import pytest
from scipy import stats as st

from dlbasics.studies import stats

from .conftest import fake_results as _results


def test_mean_ci_matches_scipy_t_interval():
    x = np.array([0.3, 0.5, 0.4, 0.9, 0.1])
    ci = stats.mean_ci(x)
    lo, hi = st.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=st.sem(x))
    assert ci.mean == pytest.approx(x.mean()) and ci.n == 5
    assert (ci.lo, ci.hi) == pytest.approx((lo, hi))
    assert stats.mean_ci([0.3, np.nan, 0.5]).n == 2
    one = stats.mean_ci([0.7])
    assert one.mean == 0.7 and math.isnan(one.lo)
    assert stats.mean_ci([]).fmt() == "-"
    clipped = stats.mean_ci([0.9, 1.0, 1.0], bounds=(0, 1))
    assert clipped.hi == 1.0


def test_curve_ci_pointwise_with_missing_values():
    Y = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, np.nan], [2.0, np.inf, 5.0]])
    mean, lo, hi, n = stats.curve_ci(Y)
    assert list(n) == [3, 2, 1]
    assert mean[0] == pytest.approx(2.0) and mean[1] == pytest.approx(3.0) and mean[2] == 5.0
    ci0 = stats.mean_ci(Y[:, 0])
    assert (lo[0], hi[0]) == pytest.approx((ci0.lo, ci0.hi))
    assert math.isnan(lo[2])


def test_paired_uses_the_same_seeds():
    a = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    b = np.array([1.5, 2.4, 3.7, 4.1, 1.0])
    p = stats.paired(a, b)
    assert p["n"] == 4 and p["a_better"] == 4
    assert p["diff"] == pytest.approx(np.mean(a[:4] - b[:4]))
    assert p["t_p"] == pytest.approx(st.ttest_rel(a[:4], b[:4]).pvalue)
    assert p["wilcoxon_p"] == pytest.approx(st.wilcoxon(a[:4], b[:4]).pvalue)
    same = stats.paired([1.0, 2.0], [1.0, 2.0])
    assert same["t_p"] == 1.0 and math.isnan(same["wilcoxon_p"])


def test_best_of_grid_on_validation_and_divergence_loses():
    res = _results({"a": [("ok", 0.2), ("ok", 0.3)],
                    "b": [("ok", 0.1), ("diverged", math.nan)],
                    "c": [("ok", 0.22), ("ok", 0.23)]})
    best, ranked = stats.best_of_grid(res)
    assert best.label == "c"          # b diverged once; a is worse than c on average
    assert [s.label for s, _ in ranked] == ["c", "a", "b"]
    with pytest.raises(ValueError, match="never on test"):
        stats.best_of_grid(res, key="test_loss")
    best, _ = stats.best_of_grid(res, key="final_val_loss", mode="max")
    assert best.label == "a"


def test_time_to_target():
    h = {"val_loss": [1.0, 0.6, 0.4, 0.45, 0.2], "val_accuracy": [0.5, 0.6, 0.8, 0.9, 0.95],
         "train_loss": [0.7, 0.5, 0.4, 0.3], "updates": [10, 20, 30, 40],
         "grad_evals": [100, 200, 300, 400], "time": [0.1, 0.2, 0.3, 0.4]}
    assert stats.time_to_target(h, 0.5) == {"epochs": 2, "updates": 20, "grad_evals": 200,
                                            "seconds": 0.2}
    assert stats.time_to_target(h, 0.9, "val_accuracy", "above")["epochs"] == 3
    assert stats.time_to_target(h, 0.4, "train_loss")["epochs"] == 3
    assert stats.time_to_target(h, 1.0)["epochs"] == 0
    assert math.isnan(stats.time_to_target(h, 0.01)["seconds"])
    res = _results({"a": [("ok", 0.2), ("ok", 0.3)]})
    t = stats.times_to_target(res, "a", 0.25)
    assert t["reached"] == 1 and t["epochs"][0] == 1 and math.isnan(t["epochs"][1])
