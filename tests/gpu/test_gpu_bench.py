"""The GPU benchmark script's logic, at smoke sizes (real timings need a real GPU)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_bench.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_smoke_run_writes_json_and_markdown(tmp_path):
    bench = _load()
    assert bench.main(["--smoke", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "gpu_bench.json").read_text())
    rows = data["results"]
    assert {r["section"] for r in rows} == {"dense", "training", "population"}
    ours = [r for r in rows if r["impl"].startswith("dlbasics") and r["status"] == "ok"]
    assert len(ours) == 2 + 2 + 1
    for r in ours:
        assert r["ms"] > 0 and r["compile_s"] >= 0
    for r in rows:
        if r["section"] == "dense" and r["impl"].startswith("dlbasics"):
            assert r["max_rel_err"] < 1e-5
    md = (tmp_path / "gpu_bench.md").read_text()
    assert "| dense |" in md and "| population |" in md
    assert data["environment"]["smoke"] is True


def test_budget_skips_remaining_cases(tmp_path):
    bench = _load()
    b = bench.Bench(budget=0.0)
    row = b.run("dense", "x", "y", lambda: {"ms": 1.0})
    assert row["status"].startswith("skipped")
    b = bench.Bench(budget=60.0)
    row = b.run("dense", "x", "y", lambda: 1 / 0)
    assert row["status"].startswith("error: ZeroDivisionError")
    bench.write_report(tmp_path, {"smoke": True, "simulator": True, "command": "c",
                                  "time": "t"}, b.results)
    assert "error: ZeroDivisionError" in (tmp_path / "gpu_bench.md").read_text()
