"""The two-stage protocol: grid edges, selection, report and timing stages, early-stopped
metrics, data drawn per seed, and the protocol written to summary.json."""

import json
import math

import numpy as np
import pytest

from dlbasics.studies import datasets, registry, stats
from dlbasics.studies.protocol import Axis, Tuning, plan, stored_plan, timing_study_name
from dlbasics.studies.report import write_report
from dlbasics.studies.results import Results
from dlbasics.studies.runner import InProcess, _data, run_single, run_study
from dlbasics.studies.spec import Run, Setting, Study
from dlbasics.studies.store import Store

from .conftest import copy_store, fail_run, failing_tasks

# --- axes -----------------------------------------------------------------------------------


def test_axis_steps_beyond_each_edge():
    lr = Axis([0.01, 0.1, 1.0])
    assert lr.step(lr.values, "high") == 10.0 and lr.step(lr.values, "low") == 0.001
    lin = Axis([0.2, 0.5, 0.8], scale="linear", low=0.0, high=1.0)
    assert lin.step([0.4, 0.6], "low") == 0.2           # 0.4 - 0.2
    assert lin.step(lin.values, "low") == 0.0           # 0.2 - 0.3 crosses low: the bound
    assert lin.step([0.5, 0.8], "high") == 1.0          # 0.8 + 0.3 crosses high: the bound
    assert lin.step([0.5, 1.0], "high") is None         # the end is the bound already
    mom = Axis([0.5, 0.9], scale="log1m")
    assert mom.step([0.9, 0.99], "high") == 0.999       # 1 - 0.01^2 / 0.1
    assert mom.step([0.9, 0.99], "low") == 0.0          # 1 - 0.1^2 / 0.01
    assert mom.step([0.5, 0.9], "low") == 0.0           # 1 - 0.5^2 / 0.1 < 0: momentum 0
    assert mom.step([0.0, 0.5], "low") is None          # no momentum below none
    assert Axis([0.3]).step([0.3], "high") is None      # one value: no edge
    with pytest.raises(ValueError, match="log axis"):
        Axis([0.0, 1.0])
    with pytest.raises(ValueError, match="log1m"):
        Axis([0.5, 1.0], scale="log1m")


# --- planning on fake stored rows ------------------------------------------------------------


def _build(f):
    return Setting(problem="xor", problem_args={"n": 40, "n_test": 50},
                   model={"hidden": [3], "activation": "tanh"}, optimizer="sgd",
                   hyper={"lr": f["lr"]}, batch_size=8, epochs=2, factors=f)


def _study(lrs=(0.01, 0.1), conditions=({"c": "a"},), **kw):
    return Study("toy", "t", "q", settings=(), seeds=[10, 11],
                 tuning=Tuning(_build, conditions, {"lr": Axis(lrs)}, tune_seeds=[0, 1, 2], **kw))


def _rows(study, score, status="ok"):
    """Fake rows for every setting the plan asks for, scored by ``score(lr)``."""
    rows = {}
    for _ in range(10):
        p = plan(study, rows)
        if p.complete:
            return rows, p
        for r in p.pending:
            lr = r.setting.factors["lr"]
            rows[(r.config_hash, r.seed)] = {
                "status": status(lr) if callable(status) else status,
                "summary": {"best_val_loss": score(lr) + 0.001 * r.seed}}
    raise AssertionError("the plan never completed")


def test_plan_extends_an_edge_until_the_optimum_is_inside():
    study = _study()
    # optimum at lr = 10^-3.4: 0.01 wins the grid, then 0.001 at the new edge, then 0.001
    # stays best with 0.0001 beside it
    rows, p = _rows(study, lambda lr: (math.log10(lr) + 3.4) ** 2)
    (c,) = p.choices
    assert c.grids["lr"] == [0.0001, 0.001, 0.01, 0.1]
    assert c.point == {"lr": 0.001} and c.extended == {"lr": [0.0001, 0.001]}
    assert c.edges == [] and p.edges_remaining == []
    assert len(rows) == 4 * 3


def test_plan_stops_after_three_extensions_and_flags_the_edge():
    study = _study()
    rows, p = _rows(study, lambda lr: lr)  # smaller is always better
    (c,) = p.choices
    assert c.grids["lr"] == [1e-05, 0.0001, 0.001, 0.01, 0.1]
    assert c.point == {"lr": 1e-05}
    assert p.edges_remaining == [{"condition": {"c": "a"}, "axis": "lr", "value": 1e-05,
                                  "side": "low", "reason": "3 extensions"}]


def test_a_bounded_axis_flags_its_bound():
    study = Study("toy", "t", "q", settings=(), seeds=[10],
                  tuning=Tuning(_build, [{"c": "a"}],
                                {"lr": Axis([0.5, 0.9], scale="linear", high=1.0)},
                                tune_seeds=[0, 1, 2]))
    _, p = _rows(study, lambda lr: -lr)  # larger is better: 1.3 crosses the bound, so 1.0
    assert p.choices[0].grids["lr"] == [0.5, 0.9, 1.0]
    assert p.choices[0].point == {"lr": 1.0}
    assert p.edges_remaining[0]["reason"] == "bound of the axis"


def test_a_point_that_diverged_on_any_tuning_seed_loses():
    study = _study(lrs=(0.001, 0.01, 0.1))
    _, p = _rows(study, lambda lr: -lr, status=lambda lr: "diverged" if lr >= 0.1 else "ok")
    assert p.choices[0].point == {"lr": 0.01}   # 0.1 scores best but diverged
    assert p.edges_remaining == []


def test_selection_on_a_test_metric_is_refused():
    with pytest.raises(ValueError, match="test metric"):
        _study(metric="es_test_accuracy")


def test_report_seeds_must_be_fresh():
    with pytest.raises(ValueError, match="also tuning seeds"):
        Study("toy", "t", "q", settings=(), seeds=[2, 3],
              tuning=Tuning(_build, [{"c": "a"}], {"lr": Axis([0.1])}, tune_seeds=[0, 1, 2]))


def test_the_full_profile_needs_three_tuning_and_ten_report_seeds():
    study = _study()
    study.profile = "full"
    with pytest.raises(ValueError, match="at least 3 tuning seeds and 10 report seeds"):
        study.check_protocol()


# --- data drawn per seed ---------------------------------------------------------------------


def test_each_run_seed_draws_its_own_data_and_synthetic_tests_are_large():
    s = _build({"lr": 0.1})
    a, b = _data(s.config(), 3)["ds"], _data(s.config(), 4)["ds"]
    assert not np.array_equal(a.X_train, b.X_train) and not np.array_equal(a.X_test, b.X_test)
    again = _data(s.config(), 3)["ds"]
    assert np.array_equal(a.X_train, again.X_train)
    fixed = s.replace(data_seed=7)
    assert np.array_equal(_data(fixed.config(), 3)["ds"].X_train,
                          _data(fixed.config(), 4)["ds"].X_train)
    assert datasets.load("moons", 0).sizes() == (300, 100, datasets.N_TEST)
    assert datasets.N_TEST >= 10_000


# --- the whole protocol on a tiny study ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("protocol") / "store.sqlite"
    study = Study("tiny", "Tiny", "q?", settings=(), seeds=[10, 11, 12], timing_repeats=2,
                  tuning=Tuning(_build, [{"c": "a"}], {"lr": Axis([0.03, 0.3])},
                                tune_seeds=[0, 1, 2]),
                  references=[{"name": "toy", "source": "none", "paper_value": 0.5,
                               "setting": {"c": "a"}, "key": "es_test_accuracy"}])
    with Store(path) as store:
        counts = run_study(study, store, InProcess(), progress=False)
        results = Results.load(study, store)
        rows = store.rows("tiny")
        timing_rows = store.rows(timing_study_name(study))
    return study, counts, results, rows, timing_rows, path


def test_the_protocol_runs_tuning_report_and_timing_stages(tiny):
    study, counts, results, rows, timing_rows, _ = tiny
    p = results.plan
    assert p.complete and len(p.selected) == 1
    n_tune = len(p.tuning_settings) * 3
    assert counts["tuning"] == n_tune and counts["total"] == 3 and counts["failed"] == 0
    assert len(rows) == n_tune + 3                      # both stages stored
    assert sorted({r["seed"] for r in rows}) == [0, 1, 2, 10, 11, 12]
    assert len(timing_rows) == 2 and {r["seed"] for r in timing_rows} == {10, 11}
    assert all(r["summary"]["load_before"] >= 0 for r in timing_rows)
    # the selection is the tuning grid's best mean best_val_loss
    scores = {s.label: np.mean(results.tuning.values(s, "best_val_loss"))
              for s in results.tuning.settings}
    assert p.selected[0].label == min(scores, key=scores.get)
    sec = stats.seconds_per_epoch(results.timing, p.selected[0])
    assert sec["n"] == 2 and 0 < sec["min"] <= sec["median"] <= sec["max"]


def test_a_second_run_resumes_with_nothing_to_do(tiny):
    study, _, _, _, _, path = tiny
    with Store(path) as store:
        counts = run_study(study, store, InProcess(), progress=False)
    assert counts["tuning"] == 0 and counts["skipped"] == 3 and counts["timing"] == 0


def test_early_stopped_test_metrics_are_those_of_the_best_validation_epoch(tiny):
    from dlbasics.models import MLP, train
    from dlbasics.models.optimizers import make_optimizer

    study, _, results, _, _, _ = tiny
    s = results.plan.selected[0].replace(epochs=6)
    row = run_single(Run("x", s, 10).payload())
    summ = row["summary"]
    e = summ["best_val_epoch"]
    assert summ["es_epoch"] == e
    # train again for exactly e epochs (same seed: the same first e epochs, bitwise)
    data = _data(s.config(), 10)
    ds = data["ds"]
    m = MLP(**data["kw"], seed=10)
    train(m, ds.X_train, data["y_train"], make_optimizer("sgd", **s.hyper), batch_size=8,
          epochs=e, shuffle=True, seed=10, X_val=ds.X_val, y_val=data["y_val"],
          metrics="full")
    loss = m.evaluate(ds.X_test, *m.check_y(data["y_test"], ds.X_test.shape[0], "y"))[0]
    acc = np.mean((m.forward(ds.X_test)[:, 0] > 0.5) == ds.y_test)
    assert summ["es_test_loss"] == pytest.approx(loss, rel=1e-6)
    assert summ["es_test_accuracy"] == pytest.approx(acc)
    assert summ["es_val_accuracy"] == row["history"]["val_accuracy"][e]


def test_population_and_single_runs_record_the_same_early_stopped_metrics():
    from dlbasics.studies.runner import run_population

    s = _build({"lr": 0.3})
    payloads = [Run("x", s.replace(hyper={"lr": lr}, factors={"lr": lr}), 5).payload()
                for lr in (0.3, 1.0)]
    pop = run_population(payloads)
    for p, row in zip(payloads, pop, strict=True):
        alone = run_single(p)["summary"]
        for k in ("best_val_epoch", "es_test_loss", "es_test_accuracy", "test_loss"):
            assert row["summary"][k] == pytest.approx(alone[k], rel=1e-5, abs=1e-7), k


def test_summary_json_carries_the_protocol(tiny, tmp_path):
    study, _, results, _, _, _ = tiny
    d = write_report(study, results, tmp_path, "dlbasics run tiny")
    proto = json.loads((d / "summary.json").read_text())["protocol"]
    assert proto["tune_seeds"] == 3 and proto["report_seeds"] == 3
    assert proto["data_resampled"] is True
    (name, prob), = proto["problems"].items()
    assert name.startswith("xor") and prob == {"n_train": 30, "n_val": 10, "n_test": 50,
                                               "epochs": 2}
    assert isinstance(proto["grid_edges_remaining"], list)
    (ref,) = proto["references"]
    vals = results.values(results.plan.selected[0], "es_test_accuracy")
    assert ref["ours"] == pytest.approx(np.mean(vals), abs=1e-4) and ref["n"] == 3
    assert ref["selected"] == results.plan.selected[0].label
    text = (d / "README.md").read_text()
    assert "**Protocol.** Tuning:" in text and "3 fresh seeds" in text


def test_stored_plan_equals_the_plan_of_all_rows(tiny):
    study, _, results, rows, _, path = tiny
    with Store(path) as store:
        p = stored_plan(study, store)
    allrows = {(r["config_hash"], r["seed"]): r for r in rows}
    q = plan(study, allrows)
    assert [s.label for s in p.selected] == [s.label for s in q.selected]
    assert [s.label for s in p.tuning_settings] == [s.label for s in q.tuning_settings]


# --- statistics -----------------------------------------------------------------------------


def test_tost_against_the_two_one_sided_t_tests():
    from scipy import stats as st

    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, 12)
    b = a + rng.normal(0.05, 0.1, 12)
    out = stats.tost(a, b, margin=0.2)
    d = a - b
    p_lo = st.ttest_1samp(d, -0.2, alternative="greater").pvalue
    p_hi = st.ttest_1samp(d, 0.2, alternative="less").pvalue
    assert out["p"] == pytest.approx(max(p_lo, p_hi), rel=1e-10)
    assert out["equivalent"] == (max(p_lo, p_hi) < 0.05)
    assert -0.2 < out["lo"] < out["hi"] < 0.2 if out["equivalent"] else True
    assert not stats.tost(a, b + 1.0, margin=0.2)["equivalent"]
    with pytest.raises(ValueError, match="margin"):
        stats.tost(a, b, margin=0)


def test_compare_gives_verdicts_never_reading_not_significant_as_equal():
    rng = np.random.default_rng(1)
    base = rng.normal(1.0, 0.2, 10)
    rows = stats.compare([("clear", base - 0.3, base),                     # a lower loss
                          ("tiny", base + rng.normal(0, 0.001, 10), base),  # equivalent
                          ("noisy", base + rng.normal(0, 1.0, 10), base)],  # neither
                         margin=0.05)
    assert [r["verdict"] for r in rows] == ["a better", "equivalent within +-0.05",
                                            "inconclusive"]
    assert rows[0]["p_holm"] >= rows[0]["p"]
    no_margin = stats.compare([("tiny", base + 1e-4 * rng.normal(size=10), base)])
    assert no_margin[0]["verdict"] == "inconclusive"


def test_stored_plan_of_a_partly_stored_study_ends_with_the_missing_runs(tiny, tmp_path):
    import sqlite3

    study, _, _, rows, _, path = tiny
    part = tmp_path / "part.sqlite"
    con = sqlite3.connect(path)
    con.execute(f"VACUUM INTO '{part}'")
    con.close()
    con = sqlite3.connect(part)  # drop the last tuning seed of the initial grid's settings
    hashes = sorted(s.config_hash() for s in study.tuning.initial_settings())
    con.executemany("DELETE FROM runs WHERE study = 'tiny' AND config_hash = ? AND seed = 2",
                    [(h,) for h in hashes])
    con.commit()
    con.close()
    with Store(part) as store:
        p = stored_plan(study, store)
        assert not p.complete
        assert sorted((r.config_hash, r.seed) for r in p.pending) == sorted((h, 2) for h in hashes)
        counts = run_study(study, store, InProcess(), progress=False)
        assert counts["tuning"] == len(hashes) and stored_plan(study, store).complete
        assert [s.label for s in stored_plan(study, store).selected] == \
            [s.label for s in plan(study, {(r["config_hash"], r["seed"]): r
                                           for r in rows}).selected]


def _untimed(row):
    return {k: v for k, v in row["summary"].items() if "seconds" not in k}


def test_failed_tuning_runs_run_again_once_a_call(tiny, tmp_path, monkeypatch):
    """A tuning run stored as failed (a fault of the moment) says nothing about its point: its
    condition has no selection, no report runs and no report until a ``run_study`` runs it
    again, before it selects, at most once a call; one that fails again stands (no loop); the
    next call runs it again and selects what the uninterrupted study selected."""
    from dlbasics.studies import runner
    from dlbasics.studies.report import report_from_store

    study, _, results, rows, _, path = tiny
    chosen = results.plan.selected[0]
    h = chosen.config_hash()
    part = copy_store(path, tmp_path / "failed.sqlite")
    with Store(part) as store:
        row = fail_run(store, "tiny", chosen.label, 0)
        p = stored_plan(study, store)
        assert p.choices[0].scores[chosen.label] is None          # unknown, not a loss
        assert p.selected == [] and p.pending == [] and not p.complete
        assert [(r.config_hash, r.seed) for r in p.failed] == [(h, 0)]
        # a failure that stays: the run fails again, once, and the call ends
        real = runner.execute_task
        calls = []
        still = failing_tasks(lambda r: (r["config_hash"], r["seed"]) == (h, 0))

        def failing(task):
            calls.extend((r["config_hash"], r["seed"]) for r in task["runs"])
            return still(task)

        monkeypatch.setattr(runner, "execute_task", failing)
        counts = run_study(study, store, InProcess(), progress=False)
        assert calls == [(h, 0)]
        assert counts["retried"] == counts["tuning"] == counts["failed"] == 1
        assert counts["total"] == 0                                 # no report runs
        assert stored_plan(study, store).selected == []
        # nothing selected: no report (Results.load would report the declared settings)
        monkeypatch.setattr(registry, "get", lambda name, profile: study)
        why = report_from_store("tiny", "quick", None, "cpu", store, tmp_path, "c")
        assert why.failed and why.startswith("no report: no condition is selected yet, 1 of")
        monkeypatch.setattr(runner, "execute_task", real)
        counts = run_study(study, store, InProcess(), progress=False)
        assert counts["retried"] == counts["tuning"] == 1 and counts["failed"] == 0
        assert counts["skipped"] == 3                               # the report runs: stored
        p = stored_plan(study, store)
        assert p.complete and [s.label for s in p.selected] == [chosen.label]
        assert p.failed == []
        fixed = next(r for r in store.rows("tiny") if (r["config_hash"], r["seed"]) == (h, 0))
        assert fixed["status"] == "ok" and _untimed(fixed) == _untimed(row)
        counts = run_study(study, store, InProcess(), progress=False)
        assert counts["tuning"] == counts["retried"] == 0


def test_a_failed_run_that_a_retry_leads_to_runs_again_in_the_same_call(tiny, tmp_path):
    """Failed runs in the initial grid and in an extension (a store written before failures
    blocked the selection): the retry of the first lets the plan reach the second, which runs
    again in the same call; the study ends as the uninterrupted one did."""
    study, _, results, rows, _, path = tiny
    p0 = results.plan
    assert p0.choices[0].extended["lr"]                            # tiny extends its grid
    initial, extension = p0.tuning_settings[1], p0.tuning_settings[3]
    assert initial.factors["lr"] in study.tuning.axes_of(p0.choices[0].condition)["lr"].values
    assert extension.factors["lr"] in p0.choices[0].extended["lr"]
    with Store(copy_store(path, tmp_path / "two.sqlite")) as store:
        fail_run(store, "tiny", initial.label, 0)
        fail_run(store, "tiny", extension.label, 1)
        counts = run_study(study, store, InProcess(), progress=False)
        assert counts["retried"] == counts["tuning"] == 2 and counts["failed"] == 0
        p = stored_plan(study, store)
        assert p.complete and [s.label for s in p.selected] == [s.label for s in p0.selected]
        assert {r["status"] for r in store.rows("tiny")} == {"ok"}


def test_fresh_redoes_every_stored_grid_point_whatever_failed(tiny, tmp_path):
    """``fresh`` deletes every run of the study at its profile and backend on its seeds, not
    only those that the plan (stopped by a failed run) reaches, and redoes the study."""
    study, _, results, rows, _, path = tiny
    with Store(copy_store(path, tmp_path / "fresh.sqlite")) as store:
        fail_run(store, "tiny", results.plan.tuning_settings[0].label, 2)
        n = len(store.rows("tiny"))
        counts = run_study(study, store, InProcess(), progress=False, fresh=True)
        assert counts["tuning"] + counts["total"] == n and counts["skipped"] == 0
        assert counts["retried"] == 0
        again = {(r["config_hash"], r["seed"]): _untimed(r) for r in store.rows("tiny")}
        assert again == {(r["config_hash"], r["seed"]): _untimed(r) for r in rows}


def test_a_condition_blocked_by_a_failed_run_leaves_the_others_reported(tmp_path, monkeypatch):
    """Two conditions, a tuning run of one failing for good: the other is selected, run on the
    report seeds and reported; the report says which condition is blocked and why, counts the
    failed tuning run and says how many conditions it reports."""
    from dlbasics.studies import runner
    from dlbasics.studies.report import report_from_store

    def build(f):  # condition b: batches of 4
        return _build(f).replace(batch_size=8 if f["c"] == "a" else 4)

    study = Study("pair", "Pair", "q?", settings=(), seeds=[10, 11],
                  tuning=Tuning(build, [{"c": "a"}, {"c": "b"}], {"lr": Axis([0.1, 1.0])},
                                tune_seeds=[0, 1], max_extensions=0))
    monkeypatch.setattr(runner, "execute_task", failing_tasks(
        lambda r: (r["label"], r["seed"]) == ("c=b, lr=1", 1), "RuntimeError: broken"))
    monkeypatch.setattr(registry, "get", lambda name, profile: study)
    with Store(tmp_path / "pair.sqlite") as store:
        counts = run_study(study, store, InProcess(), progress=False)
        p = stored_plan(study, store)
        assert [s.factors["c"] for s in p.selected] == ["a"] and not p.complete
        assert counts["failed"] == 1 and counts["total"] == 2      # condition a's report runs
        d, _ = report_from_store("pair", "quick", None, "cpu", store, tmp_path, "cmd")
        text = (d / "README.md").read_text()
    assert "the selected point of 1 of the 2 conditions (the others' tuning is incomplete)" \
        in text
    assert "| c=b | tuning incomplete: a tuning run failed (see Failed runs) |" in text
    assert "- `c=b, lr=1`, tuning seed 1: RuntimeError: broken" in text
    assert "2 of 2 runs ok, 0 diverged, 0 failed, 0 missing (and 1 tuning run failed)." in text



def test_no_report_while_nothing_is_selected_even_with_report_runs_stored(tmp_path, monkeypatch):
    """A study whose selected point is in its initial grid has report runs of a declared
    setting: once a failed tuning run blocks its only condition, no report is written from
    them (Results.load falls back to the declared settings), and the reason says so; a store
    with tuning runs but none failed is unfinished, one with none has no runs."""
    from dlbasics.studies.report import report_from_store

    study = Study("one", "One", "q?", settings=(), seeds=[10, 11],
                  tuning=Tuning(_build, [{"c": "a"}], {"lr": Axis([0.1, 1.0])},
                                tune_seeds=[0, 1], max_extensions=0))
    monkeypatch.setattr(registry, "get", lambda name, profile: study)
    with Store(tmp_path / "one.sqlite") as store:
        run_study(study, store, InProcess(), progress=False)
        chosen = stored_plan(study, store).selected[0]
        assert chosen.label in [s.label for s in study.settings]   # a declared setting
        d, failed = report_from_store("one", "quick", None, "cpu", store, tmp_path, "c")
        assert not failed and (d / "README.md").exists()
        row = fail_run(store, "one", chosen.label, 1)
        why = report_from_store("one", "quick", None, "cpu", store, tmp_path / "b", "c")
        assert why.failed and "1 of its tuning runs" in why and not (tmp_path / "b").exists()
        store.delete([("one", row["config_hash"], 1)])
        why = report_from_store("one", "quick", None, "cpu", store, tmp_path / "b", "c")
        assert not why.failed and why.startswith("its tuning is not finished in ")
        store.delete_seeds("one", study.profile, "cpu", [0, 1, 10, 11])
        why = report_from_store("one", "quick", None, "cpu", store, tmp_path / "b", "c")
        assert why == f"no runs in {store.path}, no report (run it first)"


def test_fresh_deletes_the_timing_pass_too(tiny, tmp_path, monkeypatch):
    """``fresh`` deletes the timing runs as well, even where the new tuning then fails and no
    timing pass runs (the next call times the selection afresh)."""
    from dlbasics.studies import runner

    study, _, _, _, timing_rows, path = tiny
    with Store(copy_store(path, tmp_path / "t.sqlite")) as store:
        assert len(store.rows(timing_study_name(study))) == len(timing_rows) == 2
        real = runner.execute_task
        monkeypatch.setattr(runner, "execute_task", failing_tasks(lambda r: True))
        counts = run_study(study, store, InProcess(), progress=False, fresh=True)
        assert counts["timing"] == 0 and store.rows(timing_study_name(study)) == []
        monkeypatch.setattr(runner, "execute_task", real)
        assert run_study(study, store, InProcess(), progress=False)["timing"] == 2
