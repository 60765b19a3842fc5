"""The speed study's width sweep (:mod:`dlbasics.studies.speed.scaling`): FLOP and traffic
counts by hand, ceilings against the limits, the jobs, the analysis of workers' records, the
report section and the figure. The sweep run end to end is checked in test_speed.py (the quick
run)."""

import math

import pytest

from dlbasics.studies.speed import bench, common, scaling

LIM = {"fma_peak_gflops": 300.0, "gemm_best_gflops": 250.0, "bandwidth_gbs": 20.0,
       "bandwidth": {"gbs": 20.0, "triad_gbs": 20.0, "read_gbs": 18.0, "mib_per_array": 512,
                     "threads": 2}}


def test_sweep_networks_and_their_settings():
    assert scaling.WIDTHS == (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    assert scaling.BATCHES == (32, 1024)
    assert scaling.net_name(64) == "784-64-64-10"
    assert scaling.sweep_sizes(64) == [784, 64, 64, 10]
    cfg = common.net_config("784-64-64-10")
    big = common.NETS["784-256-256-10"]
    assert cfg["sizes"] == [784, 64, 64, 10]
    assert {k: v for k, v in cfg.items() if k != "sizes"} == \
        {k: v for k, v in big.items() if k != "sizes"}
    assert big["sizes"] == [784, 256, 256, 10]  # the table entry is not changed
    assert common.net_config("2-16-16-1") is common.NETS["2-16-16-1"]
    for bad in ("2-64-64-10", "784-10", "784-0-10", "784-x-10", "nope"):
        with pytest.raises(ValueError, match="net must be"):
            common.net_config(bad)


def test_sweep_data_are_the_large_networks_rows():
    X, y = common.make_data("784-16-16-10", 50)
    X0, y0 = common.make_data("784-256-256-10", 50)
    assert (X == X0).all() and (y == y0).all()


def test_flops_and_bytes_by_hand():
    # 784-16-16-10 at batch 32: multiply-adds per sample 784*16 + 16*16 + 16*10 = 12960, 416
    # of them after the first layer; parameters 12960 + 16 + 16 + 10 = 13002.
    # FLOPs per step: forward 2*32*12960 = 829440, dW the same, dx 2*32*416 = 26624, update
    # 2*13002 = 26004: 1711508.
    c = scaling.ceilings([784, 16, 16, 10], 32, LIM)
    assert common.train_step_flops([784, 16, 16, 10], 32) == 1711508
    assert c["flops_per_sample"] == 1711508 / 32
    # Traffic: 6 accesses per parameter, per sample 4 per input feature and 5 per unit
    # (16 + 16 + 10 = 42), 4 bytes each: 4 * (6*13002 + 32*(4*784 + 5*42)) = 740336.
    assert c["bytes_per_sample"] == 740336 / 32
    assert c["intensity"] == pytest.approx(1711508 / 740336, rel=1e-15)
    # At width 4096 the products dominate: 784*4096 + 4096^2 + 4096*10 = 20029440.
    c = scaling.ceilings([784, 4096, 4096, 10], 1024, LIM)
    mults, later = 20029440, 4096 * 4096 + 4096 * 10
    params = mults + 4096 + 4096 + 10
    assert c["flops_per_sample"] == (4 * 1024 * mults + 2 * 1024 * later + 2 * params) / 1024


def test_ceilings_are_the_limits_converted():
    fps = 1711508 / 32
    bps = 740336 / 32
    c = scaling.ceilings([784, 16, 16, 10], 32, LIM)
    assert c["fma_gflops"] == 300.0 and c["gemm_gflops"] == 250.0
    assert c["fma_samples_per_s"] == pytest.approx(300e9 / fps, rel=1e-12)
    assert c["gemm_samples_per_s"] == pytest.approx(250e9 / fps, rel=1e-12)
    # bandwidth bound: 20 GB/s * 2.3118 FLOP/byte = 46.2 GFLOP/s, 864,493 samples/s
    assert c["bandwidth_gflops"] == pytest.approx(20.0 * fps / bps, rel=1e-12)
    assert c["bandwidth_gflops"] == pytest.approx(46.236, abs=1e-3)
    assert c["bandwidth_samples_per_s"] == pytest.approx(20e9 / bps, rel=1e-12)
    assert c["roofline_gflops"] == c["bandwidth_gflops"] and c["roofline_side"] == "memory"
    # a wide network at batch 1024 is compute-bound: the roofline is the FMA peak
    c = scaling.ceilings([784, 4096, 4096, 10], 1024, LIM)
    assert c["roofline_gflops"] == 300.0 and c["roofline_side"] == "compute"
    assert c["roofline_samples_per_s"] == pytest.approx(300e9 / c["flops_per_sample"])
    # an sgemm faster than the FMA loop raises the compute ceiling to the sgemm
    c = scaling.ceilings([784, 4096, 4096, 10], 1024, dict(LIM, gemm_best_gflops=320.0))
    assert c["roofline_gflops"] == 320.0
    # without a bandwidth there is no roofline
    c = scaling.ceilings([784, 16, 16, 10], 32, {"fma_peak_gflops": 300.0})
    assert c["roofline_gflops"] is None and c["bandwidth_gflops"] is None
    assert c["fma_gflops"] == 300.0 and c["gemm_samples_per_s"] is None


def test_jobs_cover_the_frameworks_asked_for():
    settings = {"widths": [16, 64], "batches": [32, 1024], "n_max": 2048, "target_s": 0.02,
                "repeats": 2, "first_steps": 1}
    jobs = scaling.jobs(settings, ("cpu", "numpy", "jax"))
    assert [(name, kind) for name, _, kind in jobs] == [("scaling_cpu", "ours"),
                                                        ("scaling_jax", "jax")]
    spec = jobs[1][1]
    assert spec["kind"] == "scaling" and spec["variants"] == ["jax", "jax_scan"]
    assert spec["nets"] == {"784-16-16-10": {"batches": [32, 1024], "n_max": 2048},
                            "784-64-64-10": {"batches": [32, 1024], "n_max": 2048}}
    assert (spec["target_s"], spec["repeats"], spec["first_steps"]) == (0.02, 2, 1)
    full = bench.PROFILES["full"]["scaling"]
    assert full["widths"] == list(scaling.WIDTHS) and full["batches"] == [32, 1024]
    assert full["repeats"] >= 5 and full["n_max"] >= 2 * 1024
    quick = bench.PROFILES["quick"]["scaling"]
    assert len(quick["widths"]) <= 3 and quick["target_s"] <= 0.05
    names = [n for n, _, _ in bench._jobs("quick", bench.PROFILES["quick"], ("cpu", "torch"))]
    assert "bandwidth" in names and names.count("scaling_cpu") == 1 and "scaling_torch" in names


def _measure(batch, rate, loss):
    return {"batch": batch, "samples_per_s": rate, "median_s": 1.0, "iqr_s": [1.0, 1.0],
            "n": batch * 4, "epochs": 5, "first_loss": loss, "first_wall_s": 0.1}


def _raw():
    """Workers' records as the driver keeps them: ours, torch, jax (two variants)."""
    def proc(name, fw, results, other=0.01):
        return {"name": name, "kind": "scaling", "framework": fw, "wall_s": 3.0,
                "other_cpu_share": other, "steal_share": 0.0, "error": None, "skipped": None,
                "results": results}

    def per(rates, loss):
        return {scaling.net_name(w): {str(b): _measure(b, rates[(w, b)], loss)
                                      for b in (32, 1024)} for w in (16, 64)}

    ours = {(16, 32): 900e3, (16, 1024): 400e3, (64, 32): 120e3, (64, 1024): 200e3}
    torch = {k: v / 2 for k, v in ours.items()}
    jax = {(16, 32): 300e3, (16, 1024): 800e3, (64, 32): 100e3, (64, 1024): 250e3}
    return {"processes": [
        {"name": "train_cpu", "kind": "train", "results": {}},
        proc("scaling_cpu", "cpu", {"cpu": per(ours, 2.5)}),
        proc("scaling_torch", "torch", {"torch": per(torch, 2.5 * (1 + 1e-7))}, other=0.3),
        proc("scaling_jax", "jax", {"jax": per(jax, 2.5), "jax_scan": per(jax, 2.5 * (1 - 4e-7))}),
    ]}


def test_analysis_rows_are_widths_times_batches_with_ratios():
    sc = scaling.analyse(_raw(), LIM)
    assert sc["widths"] == [16, 64] and sc["batches"] == [32, 1024]
    assert [(r["width"], r["batch"]) for r in sc["rows"]] == [(16, 32), (16, 1024), (64, 32),
                                                              (64, 1024)]
    r = sc["rows"][0]
    assert list(r["rates"]) == ["cpu", "torch", "jax", "jax_scan"]
    assert r["best_peer"] == "torch" and r["vs_best_peer"] == pytest.approx(2.0)
    assert r["vs"]["jax"] == pytest.approx(3.0) and r["vs"]["jax_scan"] == pytest.approx(3.0)
    assert r["rates"]["cpu"]["gflops"] == pytest.approx(900e3 * 1711508 / 32 / 1e9)
    assert r["rates"]["cpu"]["frac_fma_peak"] == pytest.approx(r["rates"]["cpu"]["gflops"] / 300)
    assert r["rates"]["cpu"]["frac_roofline"] == pytest.approx(
        r["rates"]["cpu"]["gflops"] / r["roofline_gflops"])
    assert r["first_loss_rel_diff"]["torch"] == pytest.approx(1e-7, rel=1e-6)
    assert r["first_loss_rel_diff"]["jax_scan"] == pytest.approx(4e-7, rel=1e-6)
    r = sc["rows"][1]  # width 16, batch 1024: JAX the best peer, ours at half of it
    assert r["best_peer"] == "jax" and r["vs_best_peer"] == pytest.approx(0.5)
    assert r["n_params"] == 13002
    assert [w["name"] for w in sc["workers"]] == ["scaling_cpu", "scaling_torch", "scaling_jax"]
    assert scaling.analyse({"processes": [{"name": "x", "kind": "train"}]}, LIM) is None


def test_section_and_findings_state_the_numbers():
    res = {"scaling": scaling.analyse(_raw(), LIM), "limits": LIM, "profile": "quick",
           "machine": {"cpu": "Test CPU", "cores": 2}, "started": "2026-12-05T00:00:00"}
    text = scaling.section(res, ["scaling.png"])
    assert text.startswith("## Scaling with width")
    assert "![throughput and GFLOP/s against width](scaling.png)" in text
    assert "the FMA peak (300 GFLOP/s)" in text and "20.0 GB/s" in text
    # width 16, batch 32: 900k samples/s, 2x PyTorch, 0.0535 MFLOP per sample, 48.1 GFLOP/s,
    # roofline 46.2 GFLOP/s (memory side): 104% of it.
    assert ("| 16 (0.05) | 0.0535 | 900k | 450k | 300k | 300k | **2x** (PyTorch eager) | "
            "48.1 (104%) | 24.1 (52%) | 46.2 (memory) |") in text
    lines = scaling.findings(res["scaling"])
    assert ("Batch 32: ours over the best peer ranges from 1.2x (width 64) to 2x (width 16); "
            "ahead (over 1.05x) at widths 16, 64, level (0.95-1.05x) at none, behind (under "
            "0.95x) at none.") in lines
    assert ("Batch 1024: ours over the best peer ranges from 0.5x (width 16) to 0.8x "
            "(width 64); ahead (over 1.05x) at widths none, level (0.95-1.05x) at none, behind "
            "(under 0.95x) at 16, 64.") in lines
    growth = next(s for s in lines if s.startswith("Cost growth at batch 32"))
    assert "ours (cpu, Numba) x7.5," in growth  # 900k / 120k
    above = next(s for s in lines if s.startswith("Above the roofline"))
    assert above.startswith("Above the roofline: ours (cpu, Numba) at width 16, batch 32 (104%).")
    same = next(s for s in lines if s.startswith("Same computation"))
    assert "within 4.0e-07" in same and "JAX lax.scan epoch *" in same
    assert "up to 30% of the CPUs" in text  # the disturbed PyTorch worker is named by its share
    assert scaling.section({"scaling": None}, []) == ""


def test_figure_files(tmp_path):
    res = {"scaling": scaling.analyse(_raw(), LIM), "limits": LIM, "profile": "quick",
           "machine": {"cpu": "Test CPU", "cores": 2}, "started": "2026-12-05T00:00:00"}
    files = scaling.figure(res, tmp_path)
    assert files == ["scaling.png", "scaling.svg"]
    for f in files:
        assert (tmp_path / f).stat().st_size > 10_000
    assert scaling._cpu_line(res) == ("Test CPU, 2 cores; profile quick, run 2026-12-05T00:00:00; "
                                      "other programs and steal took up to 30% of the CPUs")
    assert scaling.figure({"scaling": None}, tmp_path) == []


def test_bandwidth_is_measured_and_checked():
    from dlbasics.studies.speed.limits import memory_bandwidth

    bw = memory_bandwidth(4, 2)
    assert bw["mib_per_array"] == 4 and bw["threads"] >= 1
    for key in ("gbs", "triad_gbs", "read_gbs"):
        assert math.isfinite(bw[key]) and bw[key] > 0
    assert bw["gbs"] == max(bw["triad_gbs"], bw["read_gbs"])


def test_only_scaling_keeps_the_limits_and_the_sweep(tmp_path):
    jobs = bench._jobs("quick", bench.PROFILES["quick"], ("cpu", "numpy", "torch"))
    assert [name for name, _, _ in bench._select(jobs, "scaling")] == [
        "fma512", "fma256", "gemm_numpy", "gemm_scipy", "bandwidth", "scaling_cpu",
        "scaling_torch"]
    assert bench._select(jobs, None) is jobs
    with pytest.raises(ValueError, match="only must be one of"):
        bench.run("quick", tmp_path, only="train")
    assert bench._command("full", tmp_path, "scaling").startswith(
        "dlbasics bench --profile full --only scaling --out ")


def test_core_latency_hands_the_counter_back_and_forth(monkeypatch):
    import time

    import numpy as np

    import dlbasics.models._threads as threads
    from dlbasics.studies.speed._handoff import STOP, TURN, handoff
    from dlbasics.studies.speed.limits import core_latency_ns

    counter = np.zeros(2, dtype=np.int64)
    handoff(0, 1, counter, 1)  # thread 0's one round alone: its turn, 0 -> 1
    assert counter.tolist() == [1, 0]
    handoff(1, 2, counter, 1)  # then thread 1's: 1 -> 2
    assert counter.tolist() == [2, 0]
    counter[:] = [1, 1]  # stopped (watchdog or interrupt) while thread 0 waits for 0: returns
    handoff(0, 1, counter, 5)
    assert counter[TURN] == 1 and counter[STOP] == 1
    for bad in ({"rounds": 0}, {"repeats": 0}, {"deadline_s": 0.0}):
        with pytest.raises(ValueError, match="rounds and repeats|deadline_s"):
            core_latency_ns(**bad)
    ns = core_latency_ns(rounds=2000, repeats=2)
    # a cache line between two cores: tens to hundreds of ns (a repeat stopped at its 1 s
    # deadline runs again); None only where the two threads kept sharing one CPU
    assert ns is None or 1.0 < ns < 1e5

    def thread_0_alone(fn, n, *args, threads=None, abort=None):
        fn(0, 1, *args)  # its second round waits for a thread that never comes

    monkeypatch.setattr(threads, "run_blocks", thread_0_alone)
    t0 = time.perf_counter()
    assert core_latency_ns(rounds=10, repeats=2, deadline_s=0.05) is None  # watchdog stops
    assert time.perf_counter() - t0 < 5.0  # four stopped waits of 0.05 s, not for ever
