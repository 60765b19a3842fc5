"""Property-based tests over the studies API: settings, datasets, statistics, the store and the
command line. Every call works or raises ValueError/TypeError naming the argument; the CLI
answers a bad command line with one line on stderr and exit status 2, never a traceback."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
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
    assert out["n"] <= len(np.asarray(kw["a"]).ravel())
    assert out["a_better"] + out["b_better"] <= out["n"]


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


WORDS = ["run", "list", "report", "export", "--profile", "quick", "full", "huge", "--jobs",
         "-3", "0", "x", "--seeds", "--scheduler", "nowhere:1", "--backend", "tpu", "--fresh",
         "all", "nostudy", "--out", "--store", "--csv", "--quiet", "-q", "--bogus", ""]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.sampled_from(WORDS), min_size=1, max_size=5))
def test_cli_bad_command_lines(argv, capsys):
    # only command lines that cannot start a real run: an unknown study or a bad option
    capsys.readouterr()
    if not ({"nostudy", "--bogus", "tpu", "huge", "-3"} & set(argv)) or argv[0] not in (
            "run", "report", "export"):
        return
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's --help path is not generated here
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dlbasics: error:"), (argv, err)
    assert "Traceback" not in err
