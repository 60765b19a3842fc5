import csv
import io
import math
import subprocess
import sys

import pytest

from dlbasics.studies.store import Store


def _row(seed, status="ok", study="s", h="abc", value=0.5):
    return {"study": study, "config_hash": h, "seed": seed, "label": "lab", "profile": "quick",
            "status": status, "error": "boom" if status == "failed" else None,
            "config": {"x": 1}, "factors": {"lr": 0.1},
            "history": {"val_loss": [1.0, value, math.nan]},
            "summary": {"final_val_loss": value, "test_accuracy": math.nan}, "backend": "cpu",
            "path": "fused", "started_at": "t0", "finished_at": "t1", "wall_s": 0.1,
            "train_s": 0.05, "versions": {"numpy": "2"}, "machine": {"cores": 2}}


def test_upsert_keeps_one_row_per_run_and_roundtrips(tmp_path):
    with Store(tmp_path / "r" / "s.sqlite") as st:
        st.put(_row(0, value=0.5))
        st.put(_row(0, value=0.25))            # same key: replaced, not duplicated
        st.put(_row(1, status="failed"))
        st.put(_row(0, study="other"))
        assert st.count("s") == {"ok": 1, "failed": 1}
        rows = st.rows("s")
        assert [r["seed"] for r in rows] == [0, 1]
        assert rows[0]["summary"]["final_val_loss"] == 0.25
        assert math.isnan(rows[0]["history"]["val_loss"][2])
        assert st.done_keys("s") == {("s", "abc", 0)}          # failed runs are retried
        assert st.studies() == ["other", "s"]
        assert st.rows("s", keys=[("s", "abc", 1)])[0]["error"] == "boom"
        st.delete([("s", "abc", 1)])
        assert st.count("s") == {"ok": 1}
        with pytest.raises(ValueError, match="status"):
            st.put(_row(3, status="weird"))
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_delete_seeds_deletes_one_study_profile_backend_and_seeds(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        st.put_many([_row(0), _row(1, h="def", status="failed"), _row(2), _row(5),
                     _row(0, study="other"), {**_row(1), "profile": "full"},
                     {**_row(1, h="x"), "backend": "numpy"}])
        assert st.delete_seeds("s", "quick", "cpu", [0, 1, 2]) == 3
        left = {(r["study"], r["config_hash"], r["seed"], r["profile"], r["backend"])
                for r in st.rows()}
        assert left == {("s", "abc", 5, "quick", "cpu"), ("other", "abc", 0, "quick", "cpu"),
                        ("s", "abc", 1, "full", "cpu"), ("s", "x", 1, "quick", "numpy")}
        assert st.delete_seeds("s", "quick", "cpu", []) == 0


def test_export_csv(tmp_path):
    with Store(tmp_path / "s.sqlite") as st:
        st.put(_row(0))
        st.put(_row(1, status="diverged"))
        buf = io.StringIO()
        assert st.export_csv(buf) == 2
        n = st.export_csv(tmp_path / "out" / "runs.csv", ["s"], history=False)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["status"] for r in rows] == ["ok", "diverged"]
    assert rows[0]["final_val_loss"] == "0.5" and rows[0]["test_accuracy"] == "nan"
    assert "history" in rows[0] and "val_loss" in rows[0]["history"]
    assert n == 2 and "history" not in (tmp_path / "out" / "runs.csv").read_text().split("\n")[0]


WRITER = """
import sys
from dlbasics.studies.store import Store
from tests.studies.test_store import _row
st = Store(sys.argv[1], timeout=30)
for i in range(40):
    st.put(_row(i % 20, value=float(sys.argv[2])))
"""


def test_two_processes_writing_at_once_leave_one_row_per_run(tmp_path):
    path = str(tmp_path / "s.sqlite")
    Store(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, str(v)]) for v in (1, 2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    with Store(path) as st:
        rows = st.rows("s")
    assert sorted(r["seed"] for r in rows) == list(range(20))
