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
    assert {r["section"] for r in rows} == {"dense", "training", "small", "population"}
    ours = [r for r in rows if r["impl"].startswith("dlbasics") and r["status"] == "ok"]
    assert len(ours) == 2 + 2 * 2 + 2 + 1
    # 70-5-4-3 at batch 4: one launch for the epoch's 8 steps (a grid), or per layer (tiled
    # kernels, no dropout): gather, 3 forward, loss, 3 dW/db, 2 dx, update; 2-3-1 at batch 4:
    # one launch (one block)
    launches = {(r["network"], r["path"]): r for r in data["environment"]["launches_per_step"]}
    assert launches["70-5-4-3", "one launch, grid"]["kernels_per_step"] == 1 / 8
    assert launches["70-5-4-3", "per layer"]["kernels_per_step"] == 3 * 3 + 2
    assert launches["70-5-4-3", "per layer"]["cublas_per_step"] == 0
    assert launches["2-3-1", "one launch, one block"]["kernels_per_step"] == 1 / 8
    overhead = data["environment"]["launch_overhead"]
    assert overhead["numba_1_array_us"] > 0 and overhead["numba_8_arrays_us"] > 0
    for r in ours:
        assert r["ms"] > 0 and r["compile_s"] >= 0
    for r in rows:
        if r["section"] == "dense" and r["impl"].startswith("dlbasics"):
            assert r["max_rel_err"] < 1e-5
    md = (tmp_path / "gpu_bench.md").read_text()
    assert "| dense |" in md and "| population |" in md
    assert "Host time per launch" in md and "Launches per training step" in md
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


def test_goal_ratios():
    bench = _load()
    rows = [
        {"section": "dense", "case": "784-256-256-10 b=4096", "impl": "dlbasics numba.cuda",
         "status": "ok", "ms": 2.0},
        {"section": "dense", "case": "784-256-256-10 b=4096", "impl": "torch cuda",
         "status": "ok", "ms": 1.0},
        {"section": "small", "case": "2-16-16-1 b=32 n=16384", "impl": "dlbasics MLP cuda",
         "status": "ok", "samples_per_s": 9e6},
        {"section": "small", "case": "2-16-16-1 b=32 n=16384", "impl": "dlbasics MLP cuda x",
         "status": "ok", "samples_per_s": 4e6},
        {"section": "small", "case": "2-16-16-1 b=32 n=16384", "impl": "torch cuda",
         "status": "ok", "samples_per_s": 1e6},
        {"section": "population", "case": "4096 x 2-16-16-1 n=512 b=32",
         "impl": "dlbasics numba.cuda", "status": "ok", "samples_per_s": 2e8},
    ]
    goals = {name.split(" (")[0]: (ratio, target) for name, ratio, target in
             bench.goal_rows(rows, 5e6)}
    assert goals["dense forward+backward, batch 4096"] == (0.5, 0.8)
    assert goals["2-16-16-1 training, batch 32"] == (9.0, 3.0)
    assert goals["population of 4096 2-16-16-1"] == (40.0, 20.0)
    assert bench.goal_rows(rows, None)[-1][1] is None
    ref = bench.cpu_population_reference()
    assert ref is None or ref > 1e5
