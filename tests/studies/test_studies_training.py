"""The training studies (gd_variants, optimizers) at the quick profile (dropout and depth_width:
test_dropout_depth_width.py).

One CLI run of the four studies into a temporary store and reports directory; then, per study,
the report exists with its figures, and a key number of its README equals the one recomputed
here from the raw store rows (including the selection on the tuning seeds' validation loss).
"""

import json
import math

import numpy as np
import pytest

from dlbasics.studies import registry
from dlbasics.studies.analysis import holm, split_seeds, value_at_time
from dlbasics.studies.cli import main

from .conftest import ci_text, fake_results, raw_summaries

STUDIES = ("gd_variants", "optimizers")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    d = tmp_path_factory.mktemp("training")
    store, out = d / "runs.sqlite", d / "reports"
    argv = ["run", *STUDIES, "--profile", "quick", "--store", str(store), "--out", str(out),
            "--jobs", "2", "--quiet"]
    assert main(argv) == 0
    return store, out


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


def _selected(raw, study, cond):
    """The label a condition selects, recomputed from the raw rows: the tuning-seed setting
    of the condition with the lowest mean best-epoch validation loss."""
    tune = study.tuning.tune_seeds
    labels = [lab for lab, runs in raw.items()
              if all(s in runs for s in tune)
              and all(f"{k}={v}" in lab for k, v in cond.items())]
    return _tuned(raw, labels, tune, key="best_val_loss")


def test_gd_variants_number_matches_the_store(quick):
    store, out = quick
    study = registry.get("gd_variants", "quick")
    raw = raw_summaries(store, "gd_variants")
    readme = (out / "gd_variants" / "README.md").read_text()
    table = _tables(readme, "| method | batch | selected lr")[0]
    for method in ("stochastic", "batch"):
        best = _selected(raw, study, {"method": method})
        row = next(r for r in table if r["method"] == method)
        assert f"lr={row['selected lr']}" in best
        assert row["early-stopped test acc"] == ci_text(
            [raw[best][s]["es_test_accuracy"] for s in study.seeds], 0, 1)


def test_optimizers_reference_and_table_match_the_store(quick):
    store, out = quick
    study = registry.get("optimizers", "quick")
    raw = raw_summaries(store, "optimizers")
    readme = (out / "optimizers" / "README.md").read_text()
    table = _tables(readme, "| optimizer | type (notes)")[0]
    for opt, name in (("adam", "Adam"), ("sgd", "SGD")):
        best = _selected(raw, study, {"optimizer": opt})
        row = next(r for r in table if r["optimizer"] == name)
        assert row["final test acc"] == ci_text(
            [raw[best][s]["test_accuracy"] for s in study.seeds], 0, 1)
    ref = next(lab for lab in raw if "adam-reference" in lab)
    summary = json.loads((out / "optimizers" / "summary.json").read_text())
    (r,) = summary["protocol"]["references"]
    assert r["paper_value"] == 0.68 and r["n"] == len(study.seeds)
    assert r["ours"] == pytest.approx(np.mean([raw[ref][s]["test_accuracy"]
                                               for s in study.seeds]), abs=1e-4)


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


@pytest.mark.parametrize("name", ("gd_variants", "optimizers"))
def test_reports_with_a_condition_blocked_by_a_failed_run(name, quick, tmp_path):
    """Each condition in turn unselected (a tuning run failed): the analysis still runs."""
    from .conftest import check_blocked_conditions

    store, _ = quick
    assert len(check_blocked_conditions(store, name, tmp_path)) > 1
