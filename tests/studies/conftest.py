"""Shared fixtures of the studies tests: reference runs made once per session."""

import json
import math
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as st

import tests.studies.slow_study  # noqa: F401  (registers "slow_demo")
from dlbasics.studies import registry, runner
from dlbasics.studies.results import Results
from dlbasics.studies.runner import InProcess, run_study
from dlbasics.studies.spec import Setting, Study
from dlbasics.studies.store import Store

REPO = Path(__file__).resolve().parents[2]
#: Epochs of the slow test study: long enough to interrupt it mid-way.
SLOW_EPOCHS = "150"


def cli_env(**extra):
    """Environment of a ``python -m dlbasics.studies`` subprocess that can see the test study."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["DLBASICS_STUDIES"] = "tests.studies.slow_study"
    env["DLBASICS_SLOW_EPOCHS"] = SLOW_EPOCHS
    env.update(extra)
    return env


def stored(path, study):
    """``{(config_hash, seed): (status, history without wall-clock times)}`` of a store."""
    with Store(path) as store:
        rows = store.rows(study)
    out = {}
    for r in rows:
        h = dict(r["history"] or {})
        h.pop("time", None)
        out[(r["config_hash"], r["seed"])] = (r["status"], h)
    return out


def _reference(tmp_path_factory, name):
    path = tmp_path_factory.mktemp(f"ref_{name}") / "ref.sqlite"
    with Store(path) as store:
        counts = run_study(registry.get(name, "quick"), store, InProcess(), progress=False)
    assert counts["failed"] == 0
    return stored(path, name)


@pytest.fixture(scope="session")
def gd_reference(tmp_path_factory):
    """The quick gd_demo study run in-process, uninterrupted."""
    return _reference(tmp_path_factory, "gd_demo")


@pytest.fixture(scope="session")
def slow_reference(tmp_path_factory):
    """The slow test study run in-process, uninterrupted."""
    old = os.environ.get("DLBASICS_SLOW_EPOCHS")
    os.environ["DLBASICS_SLOW_EPOCHS"] = SLOW_EPOCHS
    try:
        return _reference(tmp_path_factory, "slow_demo")
    finally:
        if old is None:
            os.environ.pop("DLBASICS_SLOW_EPOCHS")
        else:
            os.environ["DLBASICS_SLOW_EPOCHS"] = old


def fake_results(values, analysis=None):
    """Results of a fake study: ``values[label] = [(status, final_val_loss), ...]``."""
    settings = [Setting(problem="xor", model={"hidden": [2]}, hyper={"lr": lr}, label=lab)
                for lr, lab in zip((0.1, 0.2, 0.3), values, strict=False)]
    study = Study("fake", "t", "q", settings, seeds=range(len(next(iter(values.values())))),
                  analysis=analysis)
    rows = []
    for s in settings:
        for seed, (status, v) in enumerate(values[s.label]):
            rows.append({"config_hash": s.config_hash(), "seed": seed, "status": status,
                         "history": {"val_loss": [1.0, v], "updates": [1], "grad_evals": [10],
                                     "time": [0.1]},
                         "summary": {"final_val_loss": v, "test_loss": -v, "epochs": 1},
                         "error": None, "wall_s": 0.1, "machine": {"cpu": "x", "cores": 2},
                         "versions": {"numpy": "2"}, "backend": "cpu",
                         "path": "population"})
    return Results(study, rows)

def raw_summaries(store, study):
    """``{label: {seed: summary}}`` of the ok runs of a study, straight from SQLite."""
    con = sqlite3.connect(store)
    out = {}
    for label, seed, status, summary in con.execute(
            "SELECT label, seed, status, summary FROM runs WHERE study = ?", (study,)):
        if status == "ok":
            out.setdefault(label, {})[seed] = json.loads(summary)
    con.close()
    return out


def ci_text(values, low=0.0, high=math.inf):
    """``mean [lo, hi]`` with 4 significant digits, the t-interval clipped, as the reports."""
    x = np.asarray(values, dtype=float)
    m = x.mean()
    if x.size < 2:
        return f"{m:.4g}"
    h = st.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return f"{m:.4g} [{max(m - h, low):.4g}, {min(m + h, high):.4g}]"


def copy_store(path, dest):
    """Copy the SQLite store at ``path`` to ``dest`` (``VACUUM INTO``); returns ``dest``."""
    con = sqlite3.connect(path)
    con.execute(f"VACUUM INTO '{dest}'")
    con.close()
    return dest


def fail_run(store, study, label, seed, error="OSError: no space left on device"):
    """Store the run of ``label`` on ``seed`` as failed (as a fault of the machine would leave
    it); returns its row before."""
    row = next(r for r in store.rows(study) if (r["label"], r["seed"]) == (label, seed))
    store.put({**row, "status": "failed", "error": error, "summary": None, "history": None})
    return row


_EXECUTE_TASK = runner.execute_task  # the real one, whatever a test patches


def failing_tasks(pred, error="RuntimeError: still broken"):
    """:func:`~dlbasics.studies.runner.execute_task`, but each run whose row satisfies
    ``pred(row)`` is stored as failed with ``error`` (for ``monkeypatch.setattr(runner,
    "execute_task", ...)`` with an in-process executor)."""
    def execute(task):
        return [{**r, "status": "failed", "error": error, "summary": None, "history": None}
                if pred(r) else r for r in _EXECUTE_TASK(task)]
    return execute


def check_blocked_conditions(store_path, name, tmp_path):
    """The report of quick study ``name`` (stored complete in ``store_path``) with each of its
    conditions in turn left unselected by a failed tuning run (of its selected setting, on the
    first tuning seed): the analysis runs (no ``ANALYSIS_FAILED``), says how many conditions
    it reports and lists the failure; every condition with tuned axes is checked. Returns the
    conditions checked."""
    from dlbasics.studies.protocol import stored_plan
    from dlbasics.studies.report import report_from_store

    study = registry.get(name, "quick")
    n = len(study.tuning.conditions)
    checked = []
    tmp_path.mkdir(parents=True, exist_ok=True)
    with Store(store_path) as store:
        choices = stored_plan(study, store).choices
    for i, choice in enumerate(choices):
        if not choice.scores:  # a condition without tuned axes: nothing to fail
            continue
        seed = study.tuning.tune_seeds[0]
        with Store(copy_store(store_path, tmp_path / f"{name}-{i}.sqlite")) as store:
            fail_run(store, name, choice.setting.label, seed, "OSError: disk full")
            d, failed = report_from_store(name, "quick", None, "cpu", store,
                                          tmp_path / f"{name}-{i}", "cmd")
        assert not failed, (name, choice.condition, (d / "ANALYSIS_FAILED").read_text())
        text = (d / "README.md").read_text()
        assert f"the selected point of {n - 1} of the {n} conditions" in text
        assert f"- `{choice.setting.label}`, tuning seed {seed}: OSError: disk full" in text
        assert "0/0 second-layer units" not in text  # geometry's claim: only what was drawn
        checked.append(choice.condition)
    assert len(checked) == sum(1 for c in study.tuning.conditions if study.tuning.axes_of(c)) > 0
    return checked
