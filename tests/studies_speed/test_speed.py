"""The speed benchmark at its quick profile: schema, finite positive throughputs, report files.

One quick run (every installed framework, each in its own process) is shared by the tests of
this module; frameworks that are not installed are reported as skipped by their worker.
"""

import importlib.util
import json
import math

import numpy as np
import pytest

from dlbasics.studies.speed import bench as speed
from dlbasics.studies.speed import common

PEER_MODULES = {"torch": "torch", "jax": "jax", "sklearn": "sklearn"}


def installed(fw):
    return fw not in PEER_MODULES or importlib.util.find_spec(PEER_MODULES[fw]) is not None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    rc = speed.main(["--profile", "quick", "--out", str(out), "--quiet",
                     "--frameworks", "cpu,numpy,torch,jax,sklearn"])
    with open(out / "results.json") as f:
        res = json.load(f)
    return rc, out, res


def _finite_positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_train_step_flops_by_hand():
    # 2-16-16-1, batch 1: sum n_in n_out = 2*16 + 16*16 + 16*1 = 304 multiply-adds.
    # forward 2*304 = 608; dW 608; dx for layers 2 and 3 only: 2*(256 + 16) = 544;
    # update: 2 * (304 weights + 16 + 16 + 1 biases) = 674.  Total 2434.
    assert speed.train_step_flops([2, 16, 16, 1], 1) == 2434
    # 784-256-256-10, batch 32: sum = 200704 + 65536 + 2560 = 268800; without the first
    # layer 68096; parameters 268800 + 256 + 256 + 10 = 269322.
    expected = 2 * 32 * 268800 * 2 + 2 * 32 * 68096 + 2 * 269322
    assert speed.train_step_flops([784, 256, 256, 10], 32) == expected == 39303188
    assert speed.train_flops_per_sample([784, 256, 256, 10], 32) == expected / 32


def test_shared_init_is_the_mlp_init():
    from dlbasics.models import MLP

    for net, cfg in common.NETS.items():
        m = MLP(cfg["sizes"], activation=cfg["activation"], output=cfg["output"],
                loss=cfg["loss"], dtype=np.float32, seed=3)
        flat = common.flat_params(common.glorot_init(cfg["sizes"], 3))
        np.testing.assert_array_equal(m.params, flat, err_msg=net)


def test_epoch_order_is_the_training_loop_order():
    assert np.array_equal(common.epoch_order(10, 7), np.random.default_rng(7).permutation(10))


def test_calibration_does_not_count_a_compile_per_epoch_length_as_epoch_time():
    # A framework that compiles once per epoch length (JAX's lax.scan epoch): 0.5 s on the first
    # epoch of each length, then 1 us per sample. Counted as epoch time, the compile made the
    # calibration settle on epochs of a few batches; warmed up per size, it finds the epoch of
    # about target_s (0.1 s = 100k samples, at most n_max).
    def framework():
        seen, calls = set(), []

        def epoch(n, seed, want_loss):
            calls.append((n, seed))
            t = n * 1e-6 + (0.5 if n not in seen else 0.0)
            seen.add(n)
            return t, (1.0 if want_loss else None)

        return epoch, calls

    epoch, calls = framework()
    plain = common.measure(epoch, 32, 1 << 20, 0.1, 3)
    epoch, calls_warm = framework()
    warm = common.measure(epoch, 32, 1 << 20, 0.1, 3, compiles_per_size=True)
    assert plain["n"] <= 32 * 16 and plain["calibration"][1][1] >= 0.5
    assert warm["n"] == 131072 and warm["median_s"] == pytest.approx(0.131072)
    assert all(t < 0.5 for _, t in warm["calibration"])
    # the seeds of the timed epochs follow the same sequence as without the untimed runs
    assert [s for _, s in calls_warm][:2] == [0, 1]
    assert sorted({s for _, s in calls_warm}) == list(range(max(s for _, s in calls_warm) + 1))


def test_profiles_are_sound():
    full = speed.PROFILES["full"]
    assert full["repeats"] >= 5
    assert full["nets"]["784-256-256-10"]["batches"] == [1, 8, 32, 128, 1024]
    assert full["population"]["Ks"] == [64, 512] and full["population"]["batches"] == [1, 32]
    assert full["scaling"]["widths"] == [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
    assert full["scaling"]["batches"] == [32, 1024] and full["bandwidth"]["mib"] >= 256


@pytest.mark.slow
def test_quick_run_schema(quick_run):
    rc, out, res = quick_run
    failed = {p["name"]: p["error"] for p in res["processes"] if p["error"]}
    assert rc == 0 and not failed, failed
    assert res["schema"] == speed.SCHEMA and res["profile"] == "quick"
    for key in ("command", "machine", "versions", "settings", "processes", "limits", "train",
                "population", "coldstart", "ratios", "population_ratios", "goals"):
        assert key in res, key
    for p in res["processes"]:
        assert _finite_positive(p["wall_s"])
        assert p["other_cpu_share"] is None or 0 <= p["other_cpu_share"] <= 1
        if not p["skipped"]:
            assert _finite_positive(p["peak_rss_mb"]), p["name"]
    lim = res["limits"]
    for key in ("fma_512", "fma_256", "gemm_numpy", "gemm_scipy"):
        assert _finite_positive(lim[key]["gflops"]), key
    assert _finite_positive(lim["bandwidth_gbs"])
    assert lim["bandwidth_gbs"] == lim["bandwidth"]["gbs"]
    assert lim["fma_peak_gflops"] >= lim["fma_512"]["gflops"]


@pytest.mark.slow
def test_quick_run_throughputs(quick_run):
    _, _, res = quick_run
    expected = [fw for fw in ("cpu", "numpy", "torch", "jax", "sklearn") if installed(fw)]
    settings = res["settings"]["nets"]
    for net, cfg in settings.items():
        for fw in expected + (["jax_scan"] if installed("jax") else []):
            per_batch = res["train"][net][fw]
            assert sorted(per_batch) == sorted(str(b) for b in cfg["batches"]), (net, fw)
            for label, m in per_batch.items():
                assert _finite_positive(m["samples_per_s"]), (net, fw, label)
                assert _finite_positive(m["gflops"]) and _finite_positive(m["frac_fma_peak"])
                assert m["n"] % m["batch"] == 0
                assert len(m["times"]) == m["epochs"] >= res["settings"]["repeats"]
                assert math.isfinite(m["first_loss"]), (net, fw, label)
    # Same data, same initialisation, same order: the first epoch's loss agrees across
    # frameworks up to float32 rounding.
    for net, per_fw in res["train"].items():
        for label, m in per_fw["cpu"].items():
            for fw, per_batch in per_fw.items():
                other = per_batch[label]["first_loss"]
                assert abs(other - m["first_loss"]) <= 1e-4 * abs(m["first_loss"]), (net, fw)
    variants = ["ours_population", "ours_sequential"]
    variants += ["jax_vmap"] if installed("jax") else []
    variants += ["torch_vmap"] if installed("torch") else []
    pop = res["settings"]["population"]
    for v in variants:
        for K in pop["Ks"]:
            for b in pop["batches"]:
                m = res["population"][v][str(K)][str(b)]
                assert _finite_positive(m["network_samples_per_s"]), (v, K, b)
    assert {"cpu_cached"} <= set(res["coldstart"])
    for c in res["coldstart"].values():
        assert _finite_positive(c["process_wall_s"]) and _finite_positive(c["first_epoch_s"])


@pytest.mark.slow
def test_quick_run_scaling_sweep(quick_run):
    _, _, res = quick_run
    cfg, sc = res["settings"]["scaling"], res["scaling"]
    variants = ["cpu"] + (["torch"] if installed("torch") else []) \
        + (["jax", "jax_scan"] if installed("jax") else [])
    # one row per width and batch, each with every installed framework's finite throughput
    assert [(r["width"], r["batch"]) for r in sc["rows"]] == \
        [(w, b) for w in cfg["widths"] for b in cfg["batches"]]
    for r in sc["rows"]:
        assert r["net"] == f"784-{r['width']}-{r['width']}-10"
        assert list(r["rates"]) == variants, (r["width"], r["batch"])
        for v, m in r["rates"].items():
            assert _finite_positive(m["samples_per_s"]) and _finite_positive(m["gflops"]), v
            assert m["gflops"] == pytest.approx(m["samples_per_s"] * r["flops_per_sample"] / 1e9)
            assert m["epochs"] >= res["settings"]["scaling"]["repeats"]
        # the ceilings are the run's limits
        assert r["fma_gflops"] == res["limits"]["fma_peak_gflops"]
        assert r["bandwidth_gflops"] == pytest.approx(
            res["limits"]["bandwidth_gbs"] * r["intensity"])
        # the same computation in every framework (first epoch's loss)
        for v, d in r["first_loss_rel_diff"].items():
            assert d <= 1e-4, (r["width"], r["batch"], v)
    # every framework is asked for (the default): the peers that are not installed skip
    ran = {w["name"] for w in sc["workers"] if not w["skipped"]}
    skipped = {w["name"] for w in sc["workers"] if w["skipped"]}
    assert ran == {"scaling_cpu"} | {f"scaling_{fw}" for fw in ("torch", "jax") if installed(fw)}
    assert skipped == {f"scaling_{fw}" for fw in ("torch", "jax") if not installed(fw)}


@pytest.mark.slow
def test_quick_run_goals_and_report(quick_run):
    _, out, res = quick_run
    # issue #17: five batch sizes and the FMA peak of 784-256-256-10, every batch size of
    # 2-16-16-1, every population row, two first-call and two memory goals
    settings = res["settings"]
    pop = settings["population"]
    assert len(res["goals"]) == 6 + len(settings["nets"]["2-16-16-1"]["batches"]) \
        + len(pop["Ks"]) * len(pop["batches"]) + 4
    for g in res["goals"]:
        assert g["met"] in (True, False, None)
        # a first-call overhead (first minus second epoch) may come out below zero
        assert g["met"] is None or (math.isfinite(g["measured"]) if g["at_most"]
                                    else _finite_positive(g["measured"]))
    readme = (out / "README.md").read_text()
    for text in ("## Goals on this machine", "## Training throughput", "## Population training",
                 "## The machine's limits", "dlbasics bench --profile quick", "results.json",
                 "## Scaling with width", "memory bandwidth",
                 "side by side", "## Where the time goes"):
        assert text in readme, text
    # the phase profile of the quick case (784-256-256-10 at batch 32: the column split)
    (ph,) = res["phases"]
    assert (ph["batch"], ph["path"], ph["threads"]) == (32, "column split", 2)
    assert list(ph["phases_us"]) == ["gather", "products", "elementwise", "loss", "update",
                                     "waiting"]
    assert all(v > 0 for v in ph["phases_us"].values())
    assert sum(ph["phases_us"].values()) <= ph["step_us"] * 1.01
    work = {k: v for k, v in ph["phases_us"].items() if k != "waiting"}
    assert max(work, key=work.get) == "products"  # waiting grows with the machine's load
    assert _finite_positive(ph["plain_step_us"]) and len(ph["plain_runs_us"]) == 2
    for g in res["goals"]:
        assert g["goal"] in readme
    for stem in ("throughput_784-256-256-10", "throughput_2-16-16-1", "roofline",
                 "population", "scaling"):
        for ext in ("png", "svg"):
            f = out / f"{stem}.{ext}"
            assert f.exists() and f.stat().st_size > 1000, f
            assert f"{stem}.png" in readme or ext == "svg"


def test_disturbed_workers_run_again_and_the_quieter_attempt_is_kept(monkeypatch, tmp_path):
    def rec(name, other, steal, rate):
        return {"name": name, "wall_s": 1.0, "other_cpu_share": other, "steal_share": steal,
                "load_before": [0.0, 0.0, 0.0], "error": None, "results": {"rate": rate}}

    jobs = [("train_a", {}, "ours"), ("train_b", {}, "jax"), ("train_c", {}, "torch"),
            ("coldstart_cpu_empty_cache", {}, "ours_fresh")]
    records = [rec("train_a", 0.02, 0.01, 1),   # 3% lost: kept as is
               rec("train_b", 0.0, 0.15, 2),    # steal alone is enough to run it again
               rec("train_c", 0.20, 0.0, 3),    # run again, but the retry is worse
               rec("coldstart_cpu_empty_cache", 0.5, 0.0, 4)]  # never repeated
    again = {"train_b": rec("train_b", 0.01, 0.0, 20), "train_c": rec("train_c", 0.3, 0.0, 30)}
    ran = []

    def fake_run(name, spec, env, workdir, timeout, log):
        ran.append(name)
        return again[name]

    monkeypatch.setattr(speed, "_run_job", fake_run)
    monkeypatch.setattr(speed, "_wait_quiet", lambda *a: True)
    speed._retry_contended(jobs, records, {"retry_budget_s": 1e9, "timeout_s": 1}, "",
                           tmp_path, speed.time.perf_counter(), lambda msg: None)
    assert ran == ["train_b", "train_c"]
    assert [r["results"]["rate"] for r in records] == [1, 20, 3, 4]
    assert records[1]["kept_attempt"] == 2 and records[2]["kept_attempt"] == 1
    assert records[1]["attempts"][0]["steal_share"] == 0.15
    assert "attempts" not in records[0]


def test_the_package_names_every_module_and_reaches_the_driver():
    import pkgutil

    import dlbasics.studies.speed as pkg

    assert {m.name for m in pkgutil.iter_modules(pkg.__path__)} - {"__main__"} \
        == pkg._SUBMODULES
    assert pkg.train_step_flops is speed.train_step_flops  # the driver's names, lazily
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        getattr(pkg, "nope")  # noqa: B009
