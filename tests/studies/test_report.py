import numpy as np

from dlbasics.studies import report as R

from .conftest import fake_results

VALUES = {"a": [("ok", 0.2), ("ok", 0.3)], "b": [("ok", 0.1), ("diverged", float("nan"))]}


def test_figures_are_written_as_png_and_svg(tmp_path):
    rep = R.Report(tmp_path, None)
    with rep.figure("curve", "A curve") as (_, ax):
        R.band(ax, np.arange(4), np.array([[1.0, 0.5, 0.2, 0.1], [1.2, 0.4, 0.3, 0.0]]), "x",
               bounds=R.POSITIVE)
        ax.legend()
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "curve.svg").stat().st_size > 1000
    assert rep.figures == ["curve"] and "![A curve](curve.png)" in rep.parts[0]


def test_md_table_and_formatting():
    t = R.md_table(["a", "b"], [[1, "x|y"], [R.fmt(0.123456), R.fmt(float("nan"))]])
    assert t.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | x\\|y |", "| 0.1235 | - |"]
    assert R.fmt(float("inf")) == "inf" and R.fmt(None) == "-" and R.fmt(7) == "7"
    assert R.fmt_ci([0.9, 1.0, 1.0], bounds=R.FRACTION).endswith(", 1]")
    assert R.bounds_of("test_accuracy") == R.FRACTION and R.bounds_of("val_loss") == R.POSITIVE


def test_report_without_analysis_uses_the_default_one(tmp_path):
    res = fake_results(VALUES)
    d = R.write_report(res.study, res, tmp_path, "dlbasics run fake")
    readme = (d / "README.md").read_text()
    assert (d / "val_loss.png").exists()
    assert "Lowest mean final validation loss: **a**" in readme   # b diverged once
    assert "| a | 2/0/0/0 |" in readme and "| b | 1/1/0/0 |" in readme
    assert "dlbasics run fake" in readme and "Machine: x (2 cores" in readme


def test_a_failing_analysis_still_leaves_a_report(tmp_path):
    def broken(results, report):
        report.conclusion("half")
        raise RuntimeError("oops")

    res = fake_results(VALUES, analysis=broken)
    d = R.write_report(res.study, res, tmp_path, "cmd")
    assert "RuntimeError: oops" in (d / "ANALYSIS_FAILED").read_text()
    readme = (d / "README.md").read_text()
    assert "The analysis failed" in readme and "## All settings" in readme
    res.study.analysis = None
    R.write_report(res.study, res, tmp_path, "cmd")
    assert not (d / "ANALYSIS_FAILED").exists()


def test_index_lists_study_reports_and_other_pages(tmp_path):
    res = fake_results(VALUES)
    R.write_report(res.study, res, tmp_path, "cmd")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "README.md").write_text("# Speed benchmark\n\ntext\n")
    (tmp_path / "quick").mkdir()
    (tmp_path / "quick" / "README.md").write_text("# Studies\n")
    index = R.write_index(tmp_path).read_text()
    assert "[t](fake/README.md)" in index and "| 3/4 |" in index
    assert "[Speed benchmark](benchmarks/README.md)" in index
    assert "quick/README.md" not in index


def test_diverged_runs_are_listed_with_their_epoch(tmp_path):
    from dlbasics.studies.report import write_report

    from .conftest import fake_results

    res = fake_results({"a": [("ok", 0.5), ("diverged", float("inf"))],
                        "b": [("ok", 0.4), ("ok", 0.6)]})
    for rec in res.records["a"].values():
        if rec.status == "diverged":
            rec.history["diverged_epoch"] = 7
    assert res.diverged() == [("a", 1, 7)]
    d = write_report(res.study, res, tmp_path, "dlbasics run fake")
    text = (d / "README.md").read_text()
    assert "## Diverged runs" in text and "`a`, seed 1: loss became non-finite in epoch 7" in text


def test_run_time_is_the_union_of_the_runs_intervals():
    from types import SimpleNamespace

    from dlbasics.studies.report import run_time

    def rows(*spans):
        return [{"started_at": f"2026-01-01T00:{a:02d}:00+00:00",
                 "finished_at": f"2026-01-01T00:{b:02d}:00+00:00", "wall_s": 60.0 * (b - a)}
                for a, b in spans]

    def res(*spans):
        return SimpleNamespace(rows=lambda: rows(*spans), tuning=None, timing=None)

    # two overlapping runs (0-10, 5-12), then a gap, then a timing run (40-41)
    r = res((0, 10), (5, 12))
    r.timing = res((40, 41))
    total, busy = run_time(r)
    assert total == 60.0 * (10 + 7 + 1)
    assert busy == 60.0 * (12 + 1)          # not 41 minutes: the gap does not count
    assert run_time(res()) == (0.0, 0.0)
