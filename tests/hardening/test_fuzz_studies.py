"""Property-based tests over the studies API: settings, datasets, statistics, the store and the
command line. Every call works or raises ValueError/TypeError naming the argument; the CLI
answers a bad command line with one line on stderr and exit status 2, never a traceback."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dlbasics.studies import datasets, stats
from dlbasics.studies.cli import main
from dlbasics.studies.spec import Setting
from tests.hardening.fuzz import Entry, draw_mutated, floats, run_entry

EXAMPLES = 200
SMALL = {"blobs": {"n": 40}, "xor": {"n": 40}, "moons": {"n": 40}, "circles": {"n": 40},
         "spirals": {"n": 40}, "sine": {"n": 30}, "step": {"n": 30}, "bump": {"n": 30}}


def _setting_build(draw):
    return {"problem": draw(st.sampled_from(list(SMALL))),
            "model": {"hidden": [draw(st.integers(1, 8))]},
            "optimizer": draw(st.sampled_from(["sgd", "adam", "momentum"])),
            "hyper": {"lr": draw(st.floats(1e-4, 1.0))},
            "batch_size": draw(st.sampled_from([None, 1, 8])),
            "epochs": draw(st.integers(0, 50)),
            "metrics": draw(st.sampled_from(["full", "running"]))}


def _setting_check(kw, s):
    assert len(s.config_hash()) == 64 and s.label


def _load_build(draw):
    name = draw(st.sampled_from(list(SMALL)))
    return {"name": name, "seed": draw(st.integers(0, 50)), **SMALL[name]}


def _load_check(kw, ds):
    for part in ("train", "val", "test"):
        X, y = getattr(ds, f"X_{part}"), getattr(ds, f"y_{part}")
        assert X.ndim == 2 and len(X) == len(y) > 0 and np.isfinite(X).all()


def _ci_build(draw):
    return {"values": floats(draw, (draw(st.integers(0, 12)),), np.float64),
            "confidence": draw(st.floats(0.5, 0.99))}


def _ci_check(kw, ci):
    x = np.asarray(kw["values"], float)
    x = x[~np.isnan(x)]
    if x.size:
        assert math.isclose(ci.mean, x.mean(), rel_tol=1e-12, abs_tol=1e-12) or \
            not np.isfinite(x).all()
    if x.size >= 2 and np.isfinite(x).all():
        assert ci.lo <= ci.mean <= ci.hi


def _paired_build(draw):
    n = draw(st.integers(0, 10))
    return {"a": floats(draw, (n,), np.float64), "b": floats(draw, (n,), np.float64)}


def _paired_check(kw, out):
    """Against the formulas: finite pairs only, the mean difference with its t-interval, the
    counts of each side's wins and scipy's paired t-test."""
    from scipy import stats as sps

    a, b = np.asarray(kw["a"], float), np.asarray(kw["b"], float)
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    assert out["n"] == d.size
    assert out["a_better"] == int((d < 0).sum()) and out["b_better"] == int((d > 0).sum())
    if d.size:
        assert math.isclose(out["diff"], d.mean(), rel_tol=1e-12, abs_tol=1e-12)
    if d.size >= 2 and np.ptp(d) > 0:
        half = sps.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
        assert math.isclose(out["lo"], d.mean() - half, rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(out["hi"], d.mean() + half, rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(out["t_p"], sps.ttest_rel(a[keep], b[keep]).pvalue, rel_tol=1e-9)


ENTRIES = [
    Entry("Setting", Setting, _setting_build, _setting_check,
          ("problem", "model", "optimizer", "hyper", "batch_size", "epochs", "metrics"),
          ("config", "setting", "JSON", "unknown")),
    Entry("datasets.load", datasets.load, _load_build, _load_check, ("name", "seed", "n"),
          ("problem", "argument", "noise")),
    Entry("stats.mean_ci", stats.mean_ci, _ci_build, _ci_check, ("values", "confidence"),
          ("could not convert", "float")),
    Entry("stats.paired", stats.paired, _paired_build, _paired_check, ("a", "b"),
          ("paired", "could not convert", "float")),
]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_entry_point_works_or_names_the_argument(entry, data):
    kwargs, mutation = draw_mutated(data.draw, entry)
    run_entry(entry, kwargs, mutation)


#: With "all": "run all nostudy" must be refused, not start every study (it did before
#: 4f2e903; test_all_with_an_unknown_study_is_rejected checks registry.resolve alone).
WORDS = ["run", "list", "report", "export", "--profile", "quick", "full", "huge", "--jobs",
         "-3", "0", "x", "--seeds", "--scheduler", "nowhere:1", "--backend", "tpu", "--fresh",
         "all", "nostudy", "--out", "--store", "--csv", "--quiet", "-q", "--bogus", ""]
#: Words that make a command line bad wherever they stand, except as the value of an option that
#: takes a path or an address (``--out nostudy`` is a directory name).
BAD = ["nostudy", "--bogus", "tpu", "huge", "-3"]
PATH_OPTIONS = {"--out", "--store", "--csv", "--scheduler"}


@st.composite
def bad_command_lines(draw):
    """``run``, ``report`` or ``export`` with up to four other words and at least one bad word
    where it cannot be taken as a path: a command line that cannot start a real run."""
    command = draw(st.sampled_from(("run", "report", "export")))
    rest = draw(st.lists(st.sampled_from(WORDS), max_size=4))
    bad = draw(st.sampled_from(BAD))
    where = draw(st.sampled_from([i for i in range(len(rest) + 1)
                                  if i == 0 or rest[i - 1] not in PATH_OPTIONS]))
    event(f"bad word {bad!r}")
    return [command, *rest[:where], bad, *rest[where:]]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=bad_command_lines())
def test_cli_bad_command_lines(argv, capsys):
    """Every drawn command line reaches the assertions (run with
    ``--hypothesis-show-statistics`` to see the count and the bad words drawn)."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's --help path is not generated here
        code = exc.code
    err = capsys.readouterr().err
    event("reached the assertions")
    assert code == 2, (argv, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dlbasics: error:"), (argv, err)
    assert "Traceback" not in err


def test_all_with_an_unknown_study_is_rejected():
    from dlbasics.studies import registry

    try:
        registry.resolve(["all", "nostudy"])
    except registry.UnknownStudy as exc:
        assert "nostudy" in str(exc)
    else:
        raise AssertionError("resolve(['all', 'nostudy']) accepted an unknown study")


def test_load_n_none_names_the_argument():
    with pytest.raises((TypeError, ValueError), match=r"\bn\b"):
        datasets.load("sine", seed=0, n=None)


def test_load_array_name_names_the_argument():
    with pytest.raises((TypeError, ValueError), match="name|problem"):
        datasets.load(np.array(["sine", "sine"]), seed=0)
