"""The concept studies (perceptron, activations, geometry, regression): their helper math, and
each quick study end to end with a key number of its README recomputed from the store."""

import json
import math
import re
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as st

from dlbasics.studies.analysis import curve_flattened
from dlbasics.studies.cli import main
from dlbasics.studies.definitions.activations import (
    MATCHED,
    _conditions,
    geo_mean,
    gradient_table,
    layer_gradients,
    saturated_region,
    saturated_share,
)
from dlbasics.studies.definitions.activations import _params as act_params
from dlbasics.studies.definitions.geometry import convexity, n_params, pairs, plane_grid, unit_sides
from dlbasics.studies.definitions.perceptron import (
    _params,
    blobs_run,
    classify_point,
    descend,
    errors_of,
    loss_gradient_hessian,
    perceptron_path,
)
from dlbasics.studies.definitions.regression import (
    CONSTRUCTIONS,
    KS,
    construction_errors,
    construction_mlp,
    effective_steps,
    target,
    two_sigmoid,
)
from dlbasics.studies.report import fmt

STUDIES = ("perceptron", "activations", "geometry", "regression")
FIGURES = {
    "perceptron": ("mistakes", "bound", "boundaries", "mlp_xor"),
    "activations": ("functions", "saturation", "training", "sensitivity", "preactivations"),
    "geometry": ("first_layer", "second_layer", "regions", "accuracy_params"),
    "regression": ("construction", "construction_error", "width", "fits"),
}


# ----------------------------------------------------------------------------------------------
# helper math
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["step", "bump"])
def test_two_sigmoid_construction_converges_as_k_grows(name):
    m1, m2, a, b, c = CONSTRUCTIONS[name]
    errs = [construction_errors(k, m1, m2, a, b, c) for k in KS]
    mean = np.array([e["mean_abs"] for e in errs])
    away = np.array([e["max_away"] for e in errs])
    assert np.all(np.diff(mean) < 0)                     # mean error falls with k
    assert np.all(np.diff(away) <= 0) and away[-1] < 1e-12   # and away from the steps
    assert errs[-1]["mean_abs"] < 2e-3
    # closed form: integrated error 2 ln 2 / k per unit jump, so the mean over the length 2 of
    # [-1, 1] is ln 2 / k per unit jump (for large k)
    jumps = abs(a - b) + abs(c - b)
    assert errs[0]["mean_abs_theory"] == pytest.approx(jumps * math.log(2) / KS[0], rel=1e-12)
    for e, k in zip(errs, KS, strict=True):
        if k >= 20:
            assert e["mean_abs"] == pytest.approx(e["mean_abs_theory"], rel=2e-3)
    # at a step the output is (nearly) halfway for every k: the convergence is not uniform
    assert min(e["max_all"] for e in errs) > 0.499 and errs[-1]["max_all"] == pytest.approx(0.5)


def test_integrated_error_of_a_sigmoid_step_is_two_ln2_over_k():
    from scipy.integrate import quad
    from scipy.special import expit

    for k in (1.0, 7.0, 50.0):
        left = quad(lambda x, k=k: expit(k * x), -np.inf, 0.0)[0]          # |s(kx) - 0|, x < 0
        right = quad(lambda x, k=k: 1.0 - expit(k * x), 0.0, np.inf)[0]    # |s(kx) - 1|, x > 0
        assert left + right == pytest.approx(2 * math.log(2) / k, rel=1e-9)


def test_clean_test_split_is_the_noise_free_target_on_a_grid():
    from dlbasics.studies import datasets

    noisy = datasets.load("bump", 3, n=40, n_test=101)
    clean = datasets.load("bump", 3, n=40, n_test=101, clean_test=True)
    np.testing.assert_array_equal(noisy.X_train, clean.X_train)   # same training draw
    np.testing.assert_array_equal(noisy.y_val, clean.y_val)
    mu, sd = clean.info["mean"][0], clean.info["std"][0]
    x = clean.X_test[:, 0].astype(np.float64) * sd + mu
    np.testing.assert_allclose(x, np.linspace(-1, 1, 101), atol=1e-6)
    np.testing.assert_array_equal(clean.y_test[:, 0], (np.abs(np.linspace(-1, 1, 101)) < 0.5))
    with pytest.raises(TypeError, match="clean_test"):
        datasets.load("bump", 0, clean_test=1)


def test_two_sigmoid_limit_and_weights_of_the_notes():
    m1, m2, a, b, c = -0.5, 0.5, 3.0, 1.0, 2.0
    x = np.array([-0.9, -0.2, 0.3, 0.9])
    np.testing.assert_allclose(two_sigmoid(x, 1e4, m1, 1e4, m2, a, b, c),
                               target(x, m1, m2, a, b, c), atol=1e-12)
    np.testing.assert_array_equal(target(x, m1, m2, a, b, c), [b, a, a, a + c - b])
    # the library's MLP with w11 = k1, w21 = -k1 m1, w12 = k2, w22 = -k2 m2, (a-b, c-b, b)
    net = construction_mlp(7.0, m1, 3.0, m2, a, b, c)
    np.testing.assert_allclose(net.weights[0], [[7.0, 3.0]])
    np.testing.assert_allclose(net.biases[0], [3.5, -1.5])
    np.testing.assert_allclose(net.weights[1][:, 0], [a - b, c - b])
    xs = np.linspace(-1, 1, 101)
    out = net.forward(xs.reshape(-1, 1).astype(np.float32))[:, 0]
    np.testing.assert_allclose(out, two_sigmoid(xs, 7.0, m1, 3.0, m2, a, b, c), atol=2e-6)


def test_effective_steps_recover_the_construction_through_standardisation():
    mu, sd = 0.1, 0.5
    k, m = 12.0, 0.3
    net = construction_mlp(k * sd, (m - mu) / sd, -4.0 * sd, (-0.2 - mu) / sd, 2.0, 0.0, 1.0)
    ds = SimpleNamespace(info={"mean": [mu], "std": [sd]})
    (k1, m1_, v1), (k2, m2_, v2) = effective_steps(net, ds)
    assert (k1, m1_, v1) == pytest.approx((k, m, 2.0), rel=1e-5)
    assert (k2, m2_, v2) == pytest.approx((4.0, -0.2, -1.0), rel=1e-5)   # k < 0 flipped


def test_convexity_on_a_grid():
    xs = np.linspace(-1, 1, 121)
    XX, YY = np.meshgrid(xs, xs)
    pts = np.c_[XX.ravel(), YY.ravel()]
    r = np.hypot(pts[:, 0], pts[:, 1])
    assert convexity(r < 0.6, pts) == 1.0                              # disc
    assert convexity(pts @ np.array([1.0, 2.0]) > 0.31, pts) == 1.0      # half-plane
    assert convexity((pts[:, 0] > 0) & (pts[:, 1] > 0.2), pts) == 1.0   # quadrant
    assert convexity((r > 0.4) & (r < 0.8), pts) < 0.8                 # annulus
    two = (np.abs(pts[:, 0] - 0.6) < 0.2) | (np.abs(pts[:, 0] + 0.6) < 0.2)
    assert convexity(two, pts) < 0.5                                   # two strips
    assert convexity(np.zeros(len(pts), bool), pts) == 1.0
    assert n_params([2, 4, 4, 1]) == 12 + 20 + 5


def test_plane_grid_covers_the_data():
    ds = SimpleNamespace(X_train=np.array([[0.0, 1.0]]), X_val=np.array([[-2.0, 0.0]]),
                         X_test=np.array([[1.0, -1.0]]))
    xs, ys, pts = plane_grid(ds, n=11, pad=0.5)
    assert (xs[0], xs[-1], ys[0], ys[-1]) == (-2.5, 1.5, -1.5, 1.5) and pts.shape == (121, 2)


def test_matched_pairs_have_equal_parameter_counts():
    assert [pairs(h) for h in (3, 4, 8, 16)] == [6, 9, 26, 84]
    for h in (3, 4, 8, 16):
        assert n_params([2, pairs(h), 1]) == n_params([2, h, h, 1]) == h * h + 5 * h + 1
    with pytest.raises(ValueError, match="no one-layer width"):
        pairs(5)


def test_unit_sides_counts_either_sign():
    xs = np.linspace(-1, 1, 81)
    XX, YY = np.meshgrid(xs, xs)
    pts = np.c_[XX.ravel(), YY.ravel()]
    r = np.hypot(pts[:, 0], pts[:, 1])
    assert unit_sides(pts[:, 0] - 0.2, pts) == (1.0, 1.0)         # a half-plane, both sides
    pos, neg = unit_sides(r - 0.5, pts)                           # a disc on the negative side
    assert neg == 1.0 and pos < 0.9
    assert unit_sides(0.5 - r, pts)[::-1] == (pos, neg)           # the sign flipped
    assert unit_sides(np.ones(len(pts)), pts) is None             # no boundary


def test_curve_flattened():
    rising = np.tile(np.linspace(0.0, 1.0, 101), (3, 1))
    flat, rise = curve_flattened(rising)
    assert not flat and rise == pytest.approx(0.25)
    plateau = np.r_[np.linspace(0.5, 1.0, 50), np.ones(51)][None, :].repeat(2, axis=0)
    assert curve_flattened(plateau) == (True, 0.0)
    with_nan = np.vstack([rising[0], np.full(101, np.nan)])
    assert curve_flattened(with_nan)[1] == pytest.approx(0.25)
    assert curve_flattened(np.full((2, 5), np.nan))[0] is False


def test_activation_conditions_and_gradient_norms():
    full = _conditions(act_params(False))
    assert len(full) == 12 and {"activation": "identity", "init": "glorot"} in full
    assert {"activation": "relu", "init": "he"} in full and MATCHED["relu"] == "he"
    assert MATCHED["tanh"] == MATCHED["sigmoid"] == "glorot"
    assert geo_mean([1.0, 100.0]) == pytest.approx(10.0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    g = gradient_table(X, y, [0, 1], names=("relu",))
    np.testing.assert_array_equal(g[("relu", "he")][1], layer_gradients("relu", 1, X, y,
                                                                           init="he"))
    # He keeps a ReLU network's gradient scale through depth; Glorot shrinks every layer's
    assert np.all(g[("relu", "he")] > 10 * g[("relu", "glorot")])
    # the norms are those of MLP.gradient's weight blocks
    from dlbasics.models import MLP

    m = MLP([2, *[16] * 9, 1], activation="relu", output="sigmoid",
            loss="binary_cross_entropy", seed=0, init="he")
    _, grad = m.gradient(X, y)
    n_in, n_out, w_off, _ = m.layout[0]
    assert g[("relu", "he")][0, 0] == pytest.approx(
        np.linalg.norm(grad[w_off: w_off + n_in * n_out]), rel=1e-6)


def test_perceptron_runs_within_novikoff_and_never_on_xor():
    from dlbasics.models.perceptron import mistake_bound

    r = blobs_run(0.1, 3, 200, 1000)
    assert r["converged"] and r["total"] == sum(r["mistakes"]) >= 1
    X, y = r["ds"].X_train.astype(np.float64), r["ds"].y_train
    assert r["total"] <= r["bound"] == pytest.approx(mistake_bound(X, y), rel=1e-9)
    w, b = r["lines"][-1]
    assert errors_of(X, y, w, b) == 0
    # XOR (exact corners): no line separates it, every epoch has a mistake
    Xx = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    yx = np.array([0.0, 0.0, 1.0, 1.0])
    mistakes, lines = perceptron_path(Xx, yx, 0, 50)
    assert len(mistakes) == 50 and min(mistakes) > 0
    assert all(errors_of(Xx, yx, w, b) > 0 for w, b in lines)


def test_hessian_of_the_training_loss_against_second_differences():
    from dlbasics.models import MLP

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float64)
    net = MLP([2, 2, 1], activation="tanh", output="sigmoid", loss="binary_cross_entropy",
              dtype=np.float64, seed=1)
    p0 = net.params.copy()
    loss, gn, eig = loss_gradient_hessian(net, p0, X, y)
    net.set_params_vector(p0)
    ref_loss, g = net.gradient(X, y)
    assert loss == pytest.approx(ref_loss) and gn == pytest.approx(np.linalg.norm(g))

    def second_difference(v, h=1e-4):
        f = []
        for q in (p0 + h * v, p0, p0 - h * v):
            net.set_params_vector(q)
            f.append(net.loss(X, y))
        return (f[0] - 2 * f[1] + f[2]) / h**2

    # the trace of H (sum of the eigenvalues) from second differences along the axes
    trace = sum(second_difference(np.eye(p0.size)[i]) for i in range(p0.size))
    assert eig.sum() == pytest.approx(trace, rel=1e-4, abs=1e-6)
    # v^T H v along random unit directions lies between the extreme eigenvalues
    for _ in range(5):
        v = rng.normal(size=p0.size)
        curv = second_difference(v / np.linalg.norm(v))
        assert eig[0] - 1e-5 <= curv <= eig[-1] + 1e-5


def test_descend_reaches_a_stationary_point_and_points_are_classified():
    from dlbasics.models import MLP

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    y = (X[:, 0] + 0.3 * rng.normal(size=40) > 0).astype(np.float64)
    net = MLP([2, 2, 1], activation="tanh", output="sigmoid", loss="binary_cross_entropy",
              dtype=np.float64, seed=2)
    p0 = net.params.copy()
    loss0 = loss_gradient_hessian(net, p0, X, y)[0]
    p1, loss1 = descend(net, p0, X, y)
    l1, gn1, _ = loss_gradient_hessian(net, p1, X, y)
    assert loss1 == pytest.approx(l1) and loss1 < loss0 and gn1 < 1e-5
    assert classify_point(1e-8, np.array([0.1, 1.0])) == "minimum"
    assert classify_point(1e-8, np.array([-0.1, 1.0])) == "saddle"
    assert classify_point(1e-2, np.array([-0.1, 1.0])) == "saddle"
    assert classify_point(1e-8, np.array([1e-9, 1.0])) == "flat"
    assert classify_point(1e-2, np.array([0.1, 1.0])) == "not stationary"


def test_saturation_regions_of_the_activations():
    lo, hi = saturated_region("sigmoid")            # s(1 - s) < 0.025
    assert -lo == pytest.approx(hi, abs=1e-3) and hi == pytest.approx(3.6355, abs=2e-3)
    lo, hi = saturated_region("tanh")               # 1 - tanh^2 < 0.1
    assert hi == pytest.approx(math.atanh(math.sqrt(0.9)), abs=2e-3)
    assert saturated_region("relu") == (0.0, math.inf)
    assert saturated_region("identity") == (-math.inf, math.inf)
    assert saturated_region("step") == (math.inf, -math.inf)
    assert saturated_share("sigmoid", np.array([0.0, 1.0, 5.0, -6.0])) == 0.5


# ----------------------------------------------------------------------------------------------
# the quick studies end to end
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("concepts")
    store, out = d / "r.sqlite", d / "reports"
    argv = ["run", *STUDIES, "--profile", "quick", "--store", str(store), "--out", str(out),
            "--jobs", "0", "--quiet"]
    assert main(argv) == 0
    return store, out


def _store(store, study):
    """``{label: [(status, summary), ...]}`` of a study's stored runs."""
    con = sqlite3.connect(store)
    out = {}
    for label, status, summary in con.execute(
            "SELECT label, status, summary FROM runs WHERE study = ? ORDER BY seed", (study,)):
        out.setdefault(label, []).append((status, json.loads(summary)))
    con.close()
    return out


def _ci(values, low, high):
    """Mean [95% t-interval] clipped to (low, high), as the reports print it."""
    x = np.array(values, dtype=float)
    m = x.mean()
    h = st.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return f"{m:.4g} [{max(m - h, low):.4g}, {min(m + h, high):.4g}]"


def _row(readme, first_cells, after=None):
    """Cells of the first Markdown table row starting with ``first_cells`` (after ``after``)."""
    if after is not None:
        readme = readme.split(after, 1)[1]
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[: len(first_cells)] == list(first_cells):
            return cells
    raise AssertionError(f"no row {first_cells} in the README")


@pytest.mark.parametrize("study", STUDIES)
def test_quick_study_writes_its_report(quick_run, study):
    _, out = quick_run
    d = out / study
    readme = (d / "README.md").read_text()
    assert not (d / "ANALYSIS_FAILED").exists()
    for heading in ("Setup", "Results", "All settings", "Conclusion", "Reproduce"):
        assert f"## {heading}\n" in readme
    assert "The analysis failed" not in readme and "No conclusion was drawn" not in readme
    for name in FIGURES[study]:
        png, svg = d / f"{name}.png", d / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert svg.stat().st_size > 5000 and f"({name}.png)" in readme
    assert f"({study}/README.md)" in (out / "README.md").read_text()
    m = re.search(r"differ from the stored (?:runs|ones) by at most ([^ .]+)", readme)
    if m:  # networks trained again in the analysis reproduce the stored runs
        assert float(m.group(1)) < 1e-6


def _report_rows(store, study, prefix, seeds):
    """Summaries of the stored runs of the setting whose label starts with ``prefix``, on the
    report ``seeds`` (a tuned study stores its tuning runs under the same labels)."""
    con = sqlite3.connect(store)
    rows = con.execute("SELECT label, seed, summary FROM runs WHERE study = ? ORDER BY seed",
                       (study,)).fetchall()
    con.close()
    return [json.loads(sm) for label, seed, sm in rows if label.startswith(prefix)
            and seed in seeds]


def test_perceptron_numbers(quick_run):
    from dlbasics.studies import registry

    store, out = quick_run
    readme = (out / "perceptron" / "README.md").read_text()
    p = _params(True)
    seeds = list(registry.get("perceptron", "quick").seeds)
    runs = [blobs_run(m, s, p["n_blobs"], p["max_epochs"]) for m in p["margins"]
            for s in seeds]
    within = sum(r["total"] <= r["bound"] for r in runs)
    worst = max(r["total"] / r["bound"] for r in runs)
    assert (f"within Novikoff's bound (R / gamma)^2 in {within}/{len(runs)} runs; the largest "
            f"ratio mistakes / bound was {fmt(worst, 3)}") in readme
    assert within == len(runs)
    assert f"The perceptron converged in 0/{len(seeds)} runs" in readme
    acc = [s["test_accuracy"] for s in _report_rows(store, "perceptron", "hidden=4,", seeds)]
    assert len(acc) == len(seeds)
    assert _row(readme, ["2-4-1 tanh network"])[3] == _ci(acc, 0, 1)
    assert "local minimum of the loss" not in readme


def _report_values(store, study, factors, key, min_seed=10):
    """Per-seed ``summary[key]`` of the report-stage runs (seeds >= ``min_seed``) of the stored
    setting whose factors include ``factors``."""
    con = sqlite3.connect(store)
    out = []
    for seed, fac, summary in con.execute(
            "SELECT seed, factors, summary FROM runs WHERE study = ? ORDER BY seed", (study,)):
        f = json.loads(fac)
        if seed >= min_seed and all(f.get(k) == v for k, v in factors.items()):
            out.append(json.loads(summary)[key])
    con.close()
    return out


def test_activations_numbers(quick_run):
    store, out = quick_run
    readme = (out / "activations" / "README.md").read_text()
    acc = _report_values(store, "activations", {"activation": "sigmoid", "init": "glorot"},
                         "es_test_accuracy")
    assert len(acc) == 2
    row = _row(readme, ["sigmoid", "glorot", "yes"], after="## Training with")
    assert row[5] == _ci(acc, 0, 1)
    assert "| sigmoid | 0.25 |" in readme          # max f' of the sigmoid
    assert "**Claim.**" in readme and "(he - glorot)" not in readme


def test_geometry_numbers(quick_run):
    store, out = quick_run
    readme = (out / "geometry" / "README.md").read_text()
    acc = _report_values(store, "geometry", {"problem": "circles", "hidden": "3-3"},
                         "es_test_accuracy")
    assert len(acc) == 2
    row = _row(readme, ["circles", "3-3"], after="Decision regions of every report seed")
    assert row[2] == "25" and row[4] == _ci(acc, 0, 1)
    # the paired one- vs two-layer difference of the same runs
    one = _report_values(store, "geometry", {"problem": "circles", "hidden": "6"},
                         "es_test_accuracy")
    d = np.array(acc) - np.array(one)
    row = _row(readme, ["circles: [3-3] - [6] (25 params)"])
    assert row[2].split(" [")[0] == fmt(d.mean())
    assert "**Claim.** At equal parameters" in readme


def test_regression_numbers(quick_run):
    from dlbasics.studies import registry

    store, out = quick_run
    readme = (out / "regression" / "README.md").read_text()
    e = construction_errors(100.0, *CONSTRUCTIONS["bump"])
    assert _row(readme, ["bump", "100"])[2:4] == [fmt(e["mean_abs"]), fmt(e["mean_abs_theory"])]
    seeds = list(registry.get("regression", "quick").seeds)
    rows = _report_rows(store, "regression", "target=bump, width=2,", seeds)
    assert len(rows) == len(seeds)
    row = _row(readme, ["bump", "2"])
    assert row[3] == _ci([s["es_test_loss"] for s in rows], 0, math.inf)
    assert row[4] == _ci([s["test_loss"] for s in rows], 0, math.inf)
    assert "2 ln 2 / k per unit jump, so its mean over [-1, 1] is ln 2 / k" in readme


@pytest.mark.parametrize("name", STUDIES)
def test_reports_with_a_condition_blocked_by_a_failed_run(name, quick_run, tmp_path):
    """Each condition in turn unselected (a tuning run failed): the analysis still runs."""
    from .conftest import check_blocked_conditions

    store, _ = quick_run
    assert len(check_blocked_conditions(store, name, tmp_path)) > 1
