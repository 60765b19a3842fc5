"""The training studies (gd_variants, optimizers) at the quick profile (dropout and depth_width:
test_dropout_depth_width.py).

One CLI run of the four studies into a temporary store and reports directory; then, per study,
the report exists with its figures, and a key number of its README equals the one recomputed
here from the raw store rows (including the selection on the tuning seeds' validation loss).
"""

import json
import math
import sqlite3

import numpy as np
import pytest
from scipy import stats as st

from dlbasics.studies import registry
from dlbasics.studies.analysis import holm, split_seeds, value_at_time
from dlbasics.studies.cli import main

from .conftest import fake_results

STUDIES = ("gd_variants", "optimizers")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    d = tmp_path_factory.mktemp("training")
    store, out = d / "runs.sqlite", d / "reports"
    argv = ["run", *STUDIES, "--profile", "quick", "--store", str(store), "--out", str(out),
            "--jobs", "2", "--quiet"]
    assert main(argv) == 0
    return store, out


def _raw(store, study):
    """``{label: {seed: summary}}`` of the ok runs of a study, straight from SQLite."""
    con = sqlite3.connect(store)
    out = {}
    for label, seed, status, summary in con.execute(
            "SELECT label, seed, status, summary FROM runs WHERE study = ?", (study,)):
        if status == "ok":
            out.setdefault(label, {})[seed] = json.loads(summary)
    con.close()
    return out


def _ci(values, low=0.0, high=math.inf):
    """``mean [lo, hi]`` with 4 significant digits, the t-interval clipped, as the reports."""
    x = np.asarray(values, dtype=float)
    m = x.mean()
    if x.size < 2:
        return f"{m:.4g}"
    h = st.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return f"{m:.4g} [{max(m - h, low):.4g}, {min(m + h, high):.4g}]"


def _tables(readme, header_start):
    """Every Markdown table whose header starts with ``header_start``, as lists of row dicts
    keyed by the header cells."""
    out, head, rows = [], None, None
    for line in [*readme.splitlines(), ""]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith(header_start):
            head, rows = cells, []
        elif head is not None and line.startswith("|"):
            if not line.startswith("| ---"):
                rows.append(dict(zip(head, cells, strict=True)))
        elif head is not None:
            out.append(rows)
            head = None
    return out


def _tuned(raw, labels, tune, key="final_val_loss"):
    """The label with the lowest mean ``key`` over the tuning seeds."""
    return min(labels, key=lambda lab: np.mean([raw[lab][s][key] for s in tune]))


@pytest.mark.parametrize("name", STUDIES)
def test_report_and_figures_are_written(quick, name):
    _, out = quick
    d = out / name
    assert not (d / "ANALYSIS_FAILED").exists()
    summary = json.loads((d / "summary.json").read_text())
    assert summary["counts"]["ok"] > 0 and summary["counts"]["failed"] == 0
    assert len(summary["figures"]) >= 2
    for fig in summary["figures"]:
        png, svg = d / f"{fig}.png", d / f"{fig}.svg"
        assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
        assert svg.stat().st_size > 5000
    readme = (d / "README.md").read_text()
    for heading in ("## Setup", "## Results", "## Conclusion", "## Reproduce"):
        assert heading in readme
    assert "The analysis failed" not in readme and "No conclusion was drawn" not in readme
    assert f"({name}/README.md)" in (out / "README.md").read_text()


def test_gd_variants_number_matches_the_store(quick):
    store, out = quick
    study = registry.get("gd_variants", "quick")
    tune, final = split_seeds(study.seeds)
    raw = _raw(store, "gd_variants")
    readme = (out / "gd_variants" / "README.md").read_text()
    part = readme.split("## digits\n", 1)[1]
    table = _tables(part, "| method | lr (tuned)")[0]
    for method in ("stochastic", "batch"):
        labels = [s.label for s in study.settings
                  if s.factors["problem"] == "digits" and s.factors["method"] == method]
        best = _tuned(raw, labels, tune)
        lr = study.setting(best).factors["lr"]
        row = next(r for r in table if r["method"] == method)
        assert row["lr (tuned)"].split()[0] == f"{lr:.4g}"
        assert row["final val loss"] == _ci([raw[best][s]["final_val_loss"] for s in final])


def test_optimizers_ranking_matches_the_store(quick):
    store, out = quick
    study = registry.get("optimizers", "quick")
    tune, final = split_seeds(study.seeds)
    raw = _raw(store, "optimizers")
    chosen = {}
    for opt in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"):
        labels = [s.label for s in study.settings
                  if s.factors["problem"] == "spirals" and s.factors["optimizer"] == opt]
        chosen[opt] = _tuned(raw, labels, tune)
    means = {o: np.mean([raw[lab][s]["final_val_loss"] for s in final])
             for o, lab in chosen.items()}
    top = min(means, key=means.get)
    readme = (out / "optimizers" / "README.md").read_text()
    part = readme.split("## spirals: ranking\n", 1)[1]
    row = _tables(part, "| rank | optimizer")[0][0]
    assert row["rank"] == "1" and row["optimizer"].lower() == top
    assert row["final val loss"] == _ci([raw[chosen[top]][s]["final_val_loss"] for s in final])
    assert row["test acc"] == _ci([raw[chosen[top]][s]["test_accuracy"] for s in final], 0, 1)


def test_protocol_helpers():
    assert split_seeds(range(7), n_tune=2) == ([0, 1], [2, 3, 4, 5, 6])
    assert split_seeds(range(6), n_tune=1) == ([0], [1, 2, 3, 4, 5])
    assert split_seeds(range(3), n_tune=2) == ([0], [1, 2])   # too few: one tuning seed
    assert split_seeds([7]) == ([7], [7])
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    adj = holm([0.2, float("nan"), 0.01])
    assert math.isnan(adj[1]) and adj[0] == pytest.approx(0.2) and adj[2] == pytest.approx(0.02)
    res = fake_results({"a": [("ok", 0.5), ("ok", 0.25)], "b": [("ok", 0.1), ("ok", 0.2)]})
    s = res.settings[0]
    np.testing.assert_allclose(value_at_time(res, s, "val_loss", 0.05), [1.0, 1.0])
    np.testing.assert_allclose(value_at_time(res, s, "val_loss", 0.1), [0.5, 0.25])
