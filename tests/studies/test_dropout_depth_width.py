"""The dropout and depth_width studies: helpers, the MNIST-1D pool draw, and both studies at the
quick profile, their README numbers recomputed from the raw store rows (selection included)."""

import json
import math

import numpy as np
import pytest

from dlbasics.studies import datasets, registry
from dlbasics.studies.cli import main
from dlbasics.studies.definitions import depth_width, dropout
from dlbasics.studies.definitions.depth_width import n_params, narrow_cells, still_rising, width_for

from .conftest import ci_text, raw_summaries

# --- helpers ---------------------------------------------------------------------------------


def test_parameter_budget_widths():
    # 64 inputs, 10 classes, one hidden layer of 33: 65*33 + 34*10 weights and biases
    assert n_params(64, 10, 1, 33) == 2485
    assert n_params(40, 10, 3, 24) == 41 * 24 + 2 * 25 * 24 + 25 * 10
    for depth in (1, 2, 4):
        w = width_for(40, 10, depth, 6000)
        assert abs(n_params(40, 10, depth, w) - 6000) <= min(
            abs(n_params(40, 10, depth, w + d) - 6000) for d in (-1, 1))
    assert width_for(40, 10, 1, 100_000) == 1961 and width_for(40, 10, 4, 1500) == 15
    with pytest.raises(ValueError, match="depth"):
        width_for(40, 10, 0, 1000)


class _S:
    def __init__(self, width):
        self.factors = {"width": width}


def test_narrow_cells_lists_layers_below_the_input_width():
    cells = {(1500, 1): _S(29), (6000, 1): _S(117), (6000, 4): _S(37), (25000, 2): _S(134)}
    assert narrow_cells(cells) == [(1500, 1, 29), (6000, 4, 37)]
    assert narrow_cells(cells, n_inputs=30) == [(1500, 1, 29)]


def test_still_rising_is_the_gain_over_the_last_fifth():
    c = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [0.0, 0.0, 0.0, 0.0, 0.5, 0.7]])
    # 1 - 0.2 of 5 intervals: index 4; gains 0.1 and 0.2
    assert still_rising(c) == pytest.approx(0.15)
    assert still_rising(c, frac=1.0) == pytest.approx(0.6)
    assert math.isnan(still_rising(np.array([[np.nan, np.nan]])))
    assert math.isnan(still_rising(np.array([0.1, 0.2])))


def test_dropout_conditions_cross_sizes_keep_probabilities_and_conventions():
    conds = dropout.conditions((250, 4000), hidden_p=(0.5, 1.0), inverted_p=0.5)
    assert conds == [
        {"n_train": 250, "convention": "scale", "p_hidden": 0.5},
        {"n_train": 250, "convention": "scale", "p_hidden": 1.0},
        {"n_train": 250, "convention": "inverted", "p_hidden": 0.5},
        {"n_train": 4000, "convention": "scale", "p_hidden": 0.5},
        {"n_train": 4000, "convention": "scale", "p_hidden": 1.0},
        {"n_train": 4000, "convention": "inverted", "p_hidden": 0.5}]


def test_full_profiles_follow_the_protocol():
    for name in ("dropout", "depth_width"):
        study = registry.get(name, "full")
        study.check_protocol()
        assert not set(study.tuning.tune_seeds) & set(study.seeds)
        for c in study.tuning.conditions:
            assert len(study.tuning.axes_of(c)["lr"].values) >= (5 if name == "depth_width"
                                                                  else 4)
    dw = registry.get("depth_width", "full")
    assert {(c["budget"], c["depth"]) for c in dw.tuning.conditions} == {
        (b, d) for b in (1500, 6000, 25000, 100000) for d in (1, 2, 3, 4)}
    s = dw.tuning.build({"budget": 100000, "depth": 2, "lr": 0.001})
    assert s.model["hidden"] == [291, 291] and abs(s.factors["params"] - 100000) < 300
    assert s.problem_args == {"n_train": 4000, "n_val": 1000} and s.batch_size == 100
    do = registry.get("dropout", "full")
    s = do.tuning.build({"n_train": 250, "convention": "inverted", "p_hidden": 0.5,
                         "lr": 0.001})
    assert s.model["keep_prob"] == [1.0, 0.5, 0.5] and s.model["dropout"] == "inverted"
    assert s.problem_args == {"n_train": 250, "n_val": 1000, "n_pool": 5000}


# --- the MNIST-1D pool: one draw, nested training sets, one test set --------------------------


def test_mnist1d_pool_nests_training_sets_and_shares_validation_and_test():
    small = datasets.mnist1d(5, n_train=100, n_val=100, n_pool=400, standardize=False)
    large = datasets.mnist1d(5, n_train=300, n_val=100, n_pool=400, standardize=False)
    plain = datasets.mnist1d(5, n_train=300, n_val=100, standardize=False)
    assert small.sizes() == (100, 100, 100) and large.sizes() == (300, 100, 100)
    np.testing.assert_array_equal(small.X_val, large.X_val)
    np.testing.assert_array_equal(small.X_test, large.X_test)
    np.testing.assert_array_equal(small.X_train, large.X_train[:100])
    np.testing.assert_array_equal(small.y_train, large.y_train[:100])
    # the pool equal to n_train + n_val is the default draw, bitwise
    for a, b in ((plain.X_train, large.X_train), (plain.y_test, large.y_test),
                 (plain.X_val, large.X_val)):
        np.testing.assert_array_equal(a, b)
    other = datasets.mnist1d(6, n_train=100, n_val=100, n_pool=400, standardize=False)
    assert not np.array_equal(other.X_test, small.X_test)


def test_mnist1d_pool_against_the_package():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 500, 7
    d = make_dataset(args)
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    ds = datasets.mnist1d(7, n_train=50, n_val=100, n_pool=400, standardize=False)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    np.testing.assert_allclose(ds.X_test, d["x_test"], rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, d["y_test"])
    rows = {r.tobytes() for r in np.asarray(d["x"], dtype=np.float64).astype(np.float32)}
    assert all(r.tobytes() in rows for r in ds.X_train)
    assert all(r.tobytes() in rows for r in ds.X_val)
    assert len({r.tobytes() for r in np.vstack([ds.X_train, ds.X_val])}) == 150


def test_mnist1d_pool_errors():
    with pytest.raises(ValueError, match="n_pool must be at least"):
        datasets.mnist1d(0, n_train=300, n_val=200, n_pool=400)
    with pytest.raises(ValueError, match="multiple of 4"):
        datasets.mnist1d(0, n_train=100, n_val=100, n_pool=402)
    with pytest.raises(ValueError, match="n_pool"):
        datasets.load("mnist1d", 0, n_train=100, n_val=100, n_pool=0)


# --- both studies at the quick profile ---------------------------------------------------------


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    d = tmp_path_factory.mktemp("dd")
    store, out = d / "runs.sqlite", d / "reports"
    argv = ["run", "dropout", "depth_width", "--profile", "quick", "--store", str(store),
            "--out", str(out), "--jobs", "2", "--quiet"]
    assert main(argv) == 0
    return store, out


def _table(readme, header_start):
    head, rows = None, []
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith(header_start):
            head = cells
        elif head is not None and line.startswith("|"):
            if not line.startswith("| ---"):
                rows.append(dict(zip(head, cells, strict=True)))
        elif head is not None:
            break
    return rows


def _factors(label):
    """``{name: value}`` of a label ``"a=1, b=scale, ..."`` (numbers as floats)."""
    out = {}
    for part in label.split(", "):
        k, v = part.split("=", 1)
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


def _selected(raw, study, condition, metric, maximize):
    """The label of ``condition``'s tuning point with the best mean ``metric`` on the tuning
    seeds, from every stored tuning run of that condition (extensions included)."""
    tune = study.tuning.tune_seeds
    scores = {}
    for label, by_seed in raw.items():
        f = _factors(label)
        if not all(sd in by_seed for sd in tune) or any(
                f.get(k) != (v if isinstance(v, str) else float(v))
                for k, v in condition.items()):
            continue
        scores[label] = np.mean([by_seed[sd][metric] for sd in tune])
    assert scores
    pick = max if maximize else min
    return pick(scores, key=scores.get)


@pytest.mark.parametrize("name", ["dropout", "depth_width"])
def test_reports_are_written_with_a_claim(quick, name):
    _, out = quick
    d = out / name
    assert not (d / "ANALYSIS_FAILED").exists()
    summary = json.loads((d / "summary.json").read_text())
    assert summary["counts"]["failed"] == 0 and summary["counts"]["ok"] > 0
    assert summary["protocol"]["data_resampled"] is True
    for fig in summary["figures"]:
        assert (d / f"{fig}.png").read_bytes()[:4] == b"\x89PNG"
    readme = (d / "README.md").read_text()
    assert readme.split("\n\n")[1].startswith("**Claim.**")
    assert "The analysis failed" not in readme and "## Conclusion" in readme


def test_depth_width_numbers_and_selection_match_the_store(quick):
    store, out = quick
    study = registry.get("depth_width", "quick")
    raw = raw_summaries(store, "depth_width")
    readme = (out / "depth_width" / "README.md").read_text()
    rows = _table(readme, "| budget | depth")
    assert len(rows) == len(study.tuning.conditions)
    for cond in study.tuning.conditions:
        label = _selected(raw, study, cond, "final_val_accuracy", maximize=True)
        lr = _factors(label)["lr"]
        row = next(r for r in rows if (r["budget"], r["depth"]) ==
                   (str(cond["budget"]), str(cond["depth"])))
        w = width_for(40, 10, cond["depth"], cond["budget"])
        assert row["width"].strip("*") == str(w)
        assert row["width"].startswith("**") == (w < depth_width.N_INPUTS)
        assert float(row["lr (tuned)"]) == pytest.approx(lr, rel=1e-3)
        assert row["test acc (final)"] == ci_text([raw[label][s]["test_accuracy"]
                                               for s in study.seeds], 0, 1)


def test_dropout_numbers_selection_and_exact_retraining(quick):
    store, out = quick
    study = registry.get("dropout", "quick")
    raw = raw_summaries(store, "dropout")
    readme = (out / "dropout" / "README.md").read_text()
    rows = _table(readme, "| training examples | setting")
    assert len(rows) == len(study.tuning.conditions)
    for cond in study.tuning.conditions:
        label = _selected(raw, study, cond, "best_val_loss", maximize=False)
        name = ("no dropout" if cond["p_hidden"] == 1.0 else f"p={cond['p_hidden']:g}"
                + (" inverted" if cond["convention"] == "inverted" else ""))
        row = next(r for r in rows if (r["training examples"], r["setting"]) ==
                   (str(cond["n_train"]), name))
        assert row["test acc (early-stopped)"] == ci_text(
            [raw[label][s]["es_test_accuracy"] for s in study.seeds], 0, 1)
        assert row["test loss (final)"] == ci_text([raw[label][s]["test_loss"]
                                                for s in study.seeds])
    # the networks retrained for the Monte-Carlo comparison are bitwise the stored runs
    assert "validation loss history is 0 (0: bitwise the same run)" in readme
    mc = _table(readme, "| k | test acc")
    assert mc[-1]["k"] == "weight scaling" and len(mc) == len(dropout.MC_K_QUICK) + 1
    assert "Inverted vs weight scaling" in readme and "reparametrisation predicts 0.5" in readme


# --- selection helpers on stub results ---------------------------------------------------------


class _Setting:
    def __init__(self, label, **factors):
        self.label, self.factors = label, factors


class _Tuning:
    """A stand-in for ``results.tuning``: settings with per-seed summary values."""

    def __init__(self, table):
        self.table = table   # {label: (factors, {key: values})}
        self.settings = [_Setting(k, **f) for k, (f, _) in table.items()]

    def select(self, **factors):
        return [s for s in self.settings
                if all(s.factors.get(k) == v for k, v in factors.items())]

    def values(self, s, key):
        return np.asarray(self.table[s.label][1][key], dtype=float)


def test_best_fit_is_the_highest_mean_training_accuracy_of_a_cells_grid():
    tun = _Tuning({
        "a": ({"budget": 1500, "depth": 1, "lr": 0.01}, {"final_full_accuracy": [0.7, 0.8]}),
        "b": ({"budget": 1500, "depth": 1, "lr": 0.02}, {"final_full_accuracy": [0.9, 0.7]}),
        "c": ({"budget": 1500, "depth": 1, "lr": 0.04}, {"final_full_accuracy": [np.nan] * 2}),
        "d": ({"budget": 6000, "depth": 1, "lr": 0.01}, {"final_full_accuracy": [1.0, 1.0]}),
    })

    class R:
        tuning = tun

    out = depth_width.best_fit(R, {(1500, 1): None, (6000, 1): None, (6000, 2): None})
    assert out[1500, 1] == (pytest.approx(0.8), 0.02)    # NaN means are left out
    assert out[6000, 1] == (1.0, 0.01)
    assert all(math.isnan(v) for v in out[6000, 2])


def test_dropout_tuning_scores_are_the_selected_points_tuning_means():
    from dlbasics.studies.protocol import Choice

    s1 = _Setting("x", n_train=250, convention="scale", p_hidden=0.5, lr=0.004)
    s2 = _Setting("y", n_train=250, convention="scale", p_hidden=1.0, lr=0.001)

    class Plan:
        choices = [Choice({}, s1, {"lr": 0.004}, {"x": 1.5, "x2": 1.7}, {}, {}),
                   Choice({}, s2, {"lr": 0.001}, {"y": 2.1}, {}, {}),
                   Choice({}, None, {}, {}, {}, {})]

    class R:
        plan = Plan

    assert dropout.tuning_scores(R) == {(250, "scale", 0.5): 1.5, (250, "scale", 1.0): 2.1}


@pytest.mark.parametrize("name", ("dropout", "depth_width"))
def test_reports_with_a_condition_blocked_by_a_failed_run(name, quick, tmp_path):
    """Each condition in turn unselected (a tuning run failed): the analysis still runs."""
    from .conftest import check_blocked_conditions

    store, _ = quick
    assert len(check_blocked_conditions(store, name, tmp_path)) > 1
