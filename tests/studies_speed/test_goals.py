"""The speed study's goal table (issue #17): ratios to the best of PyTorch eager, the JAX jit
step and the JAX ``lax.scan`` epoch, "at least" and "at most" goals, missing inputs, and their
rendering in the report. Synthetic results, no measurement."""

import math

import pytest

from dlbasics.studies.speed import bench, report

LARGE, SMALL = bench.LARGE, bench.SMALL

# samples/s per network, batch label and framework (cpu is ours)
RATES = {
    LARGE: {
        "1": {"cpu": 12000, "torch": 2000, "jax": 3000, "jax_scan": 2000, "sklearn": 1000},
        "8": {"cpu": 30000, "torch": 10000, "jax": 20000, "jax_scan": 25000, "sklearn": 5000},
        "32": {"cpu": 60000, "torch": 30000, "jax": 40000, "jax_scan": 80000, "sklearn": 9000},
        "128": {"cpu": 110000, "torch": 60000, "jax": 100000, "jax_scan": 90000,
                "sklearn": 40000},
        "1024": {"cpu": 130000, "torch": 120000, "jax": 130000, "jax_scan": 140000,
                 "sklearn": 80000},
    },
    SMALL: {
        "1": {"cpu": 1.4e6, "torch": 4e3, "jax": 7e4, "jax_scan": 8e5, "sklearn": 1.5e4},
        "32": {"cpu": 5e6, "torch": 1e5, "jax": 8e5, "jax_scan": 5e6, "sklearn": 3e5},
        "full": {"cpu": 1e7, "torch": 7e6, "jax": 7.5e6, "jax_scan": 1.1e7, "sklearn": 2e6},
    },
}


def _train(rates):
    train = {}
    for net, per_label in rates.items():
        for label, per_fw in per_label.items():
            for fw, rate in per_fw.items():
                m = {"samples_per_s": float(rate), "batch": 1 if label == "full" else int(label)}
                train.setdefault(net, {}).setdefault(fw, {})[label] = m
    if "1024" in train[LARGE]["cpu"]:
        train[LARGE]["cpu"]["1024"]["frac_fma_peak"] = 0.65
    return train


def _res(rates=RATES, small_batches=(1, 32, "full")):
    train = _train(rates)
    return {
        "settings": {"nets": {LARGE: {"batches": [1, 8, 32, 128, 1024]},
                              SMALL: {"batches": list(small_batches), "full_n": 4096}},
                     "coldstart": {"net": LARGE, "batch": 32, "n": 2048}},
        "train": train,
        "ratios": bench._ratios(train),
        "population_ratios": {"K=64, batch 1": {"vs_jax_vmap": 3.5},
                              "K=64, batch 32": {"vs_jax_vmap": 1.2}},
        "coldstart": {
            "cpu_empty_cache": {"first_epoch_s": 6.0, "first_call_overhead_s": 5.9,
                                "peak_rss_mb": 270.0},
            "cpu_cached": {"first_epoch_s": 0.25, "first_call_overhead_s": 0.2,
                           "peak_rss_mb": 180.0},
            "torch": {"first_epoch_s": 0.08, "first_call_overhead_s": 0.03,
                      "peak_rss_mb": 300.0},
        },
    }


def test_best_any_is_the_fastest_of_torch_jax_and_the_lax_scan_epoch():
    r = bench._ratios(_train(RATES))
    row = r[LARGE]["32"]
    # the lax.scan epoch is fastest: the goals' peer; the tables' best peer stays the jit step
    assert row["best_any"] == "jax_scan" and row["best_any_rate"] == 80000
    assert row["vs_best_any"] == pytest.approx(60000 / 80000)
    assert row["best_peer"] == "jax" and row["vs_best_peer"] == pytest.approx(60000 / 40000)
    # the jit step is fastest: both agree
    row = r[LARGE]["1"]
    assert row["best_any"] == row["best_peer"] == "jax"
    assert row["vs_best_any"] == row["vs_best_peer"] == pytest.approx(4.0)
    # scikit-learn is never a goal peer, even where it would be fastest
    fast_sk = {LARGE: {"1": {"cpu": 10, "torch": 2, "jax": 3, "jax_scan": 4, "sklearn": 50}}}
    row = bench._ratios(_train_plain(fast_sk))[LARGE]["1"]
    assert row["best_peer"] == "sklearn" and row["best_any"] == "jax_scan"
    assert row["vs_best_any"] == pytest.approx(2.5)


def _train_plain(rates):
    return {net: {fw: {lab: {"samples_per_s": float(v)}}
                  for lab, per_fw in per_label.items() for fw, v in per_fw.items()}
            for net, per_label in rates.items()}


def test_no_peer_measured_gives_no_best_any():
    row = bench._ratios(_train_plain({LARGE: {"1": {"cpu": 10, "sklearn": 5}}}))[LARGE]["1"]
    assert row["best_any"] is None and row["best_any_rate"] is None
    assert row["vs_best_any"] is None and row["vs_best_peer"] == 2.0


def test_goal_directions():
    for measured, met in ((1.0, True), (1.2, True), (0.99, False)):
        g = bench._goal("g", measured, 1.0)
        assert g["met"] is met and g["at_most"] is False and g["unit"] == "x"
    for measured, met in ((0.3, True), (0.1, True), (0.31, False)):
        g = bench._goal("g", measured, 0.3, unit="s", at_most=True)
        assert g["met"] is met and g["at_most"] is True
    for at_most in (False, True):
        g = bench._goal("g", None, 1.0, at_most=at_most)
        assert g["measured"] is None and g["met"] is None


def test_goals_follow_issue_17():
    goals = bench._goals(_res())
    got = [(g["goal"], g["measured"], g["threshold"], g["unit"], g["at_most"], g["met"])
           for g in goals]
    big = [(f"{LARGE}, batch {b}: ours / best peer", m, t, "x", False, met)
           for b, m, t, met in ((1, 4.0, 5.0, False),          # 12000 / jax 3000
                                (8, 1.2, 1.5, False),          # 30000 / scan 25000
                                (32, 0.75, 1.5, False),        # 60000 / scan 80000
                                (128, 1.1, 1.1, True),         # 110000 / jax 100000
                                (1024, 13 / 14, 1.1, False))]  # 130000 / scan 140000
    small = [(f"{SMALL}, {at}: ours / best peer", m, 1.0, "x", False, met)
             for at, m, met in (("batch 1", 1.75, True), ("batch 32", 1.0, True),
                                ("full batch", 1 / 1.1, False))]
    cs = f"first call ({LARGE}, batch 32)"
    expected = big + [(f"{LARGE}, batch 1024: fraction of the FMA peak", 0.65, 0.6, "of peak",
                       False, True)] + small + [
        ("population K=64, batch 1: ours / JAX vmap", 3.5, 3.0, "x", False, True),
        ("population K=64, batch 32: ours / JAX vmap", 1.2, 3.0, "x", False, False),
        (f"{cs}, empty Numba cache: first epoch, compiling included", 6.0, 5.0, "s", True,
         False),
        (f"{cs}, warm Numba cache: first epoch minus second", 0.2, 0.3, "s", True, True),
        ("memory, one-epoch process, empty Numba cache: peak RSS / PyTorch's", 0.9, 0.7,
         "x PyTorch", True, False),
        ("memory, one-epoch process, warm Numba cache: peak RSS / PyTorch's", 0.6, 0.7,
         "x PyTorch", True, True),
    ]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g[0] == e[0] and g[2:] == e[2:], (g, e)
        assert g[1] == pytest.approx(e[1]), g
    peers = [g["peer"] for g in goals[:5]]
    assert peers == ["jax", "jax_scan", "jax_scan", "jax", "jax_scan"]
    assert [g["peer"] for g in goals[6:9]] == ["jax_scan", "jax_scan", "jax_scan"]


def test_one_small_goal_per_batch_size_of_the_profile():
    rates = {LARGE: RATES[LARGE], SMALL: dict(RATES[SMALL])}
    res = _res(rates, small_batches=(1, 8, 32, "full"))
    small = [g for g in bench._goals(res) if g["goal"].startswith(SMALL)]
    assert [g["goal"].split(": ")[0] for g in small] == \
        [f"{SMALL}, batch 1", f"{SMALL}, batch 8", f"{SMALL}, batch 32", f"{SMALL}, full batch"]
    # batch 8 is in the profile but was not measured
    assert small[1]["measured"] is None and small[1]["met"] is None


def test_missing_inputs_give_none():
    # the quick profile: 784-256-256-10 at batches 1 and 32 only, no empty-cache cold start,
    # no PyTorch (so no memory ratio), JAX's vmap missing
    rates = {LARGE: {lab: {"cpu": 1e4, "jax": 2e3} for lab in ("1", "32")},
             SMALL: {lab: {"cpu": 1e6} for lab in ("1", "32", "full")}}
    res = _res(rates)
    del res["coldstart"]["cpu_empty_cache"], res["coldstart"]["torch"]
    res["population_ratios"] = {"K=8, batch 1": {"vs_jax_vmap": None}}
    goals = {g["goal"]: g for g in bench._goals(res)}
    assert goals[f"{LARGE}, batch 1: ours / best peer"]["measured"] == 5.0
    assert goals[f"{LARGE}, batch 1: ours / best peer"]["met"] is True
    missing = [name for name, g in goals.items() if g["measured"] is None]
    assert all(goals[name]["met"] is None for name in missing)
    assert set(missing) == {
        f"{LARGE}, batch 8: ours / best peer", f"{LARGE}, batch 128: ours / best peer",
        f"{LARGE}, batch 1024: ours / best peer", f"{LARGE}, batch 1024: fraction of the FMA peak",
        f"{SMALL}, batch 1: ours / best peer", f"{SMALL}, batch 32: ours / best peer",
        f"{SMALL}, full batch: ours / best peer", "population K=8, batch 1: ours / JAX vmap",
        f"first call ({LARGE}, batch 32), empty Numba cache: first epoch, compiling included",
        "memory, one-epoch process, empty Numba cache: peak RSS / PyTorch's",
        "memory, one-epoch process, warm Numba cache: peak RSS / PyTorch's"}
    warm = goals[f"first call ({LARGE}, batch 32), warm Numba cache: first epoch minus second"]
    assert warm["measured"] == 0.2 and warm["met"] is True


def test_goals_section_renders_units_and_directions():
    res = _res()
    res["goals"] = bench._goals(res)
    res["goals"].append(bench._goal("never measured", None, 2.0))
    text = report._goals_section(res)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:]
            for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert rows[f"{LARGE}, batch 1: ours / best peer"] == ["4x (JAX jit step)", ">= 5x",
                                                           "**missed** |"]
    assert rows[f"{LARGE}, batch 32: ours / best peer"][0] == "0.75x (JAX lax.scan epoch)"
    assert rows[f"{LARGE}, batch 128: ours / best peer"][1:] == [">= 1.1x", "**met** |"]
    assert rows[f"{LARGE}, batch 1024: fraction of the FMA peak"][:2] == \
        ["65.0% of peak", ">= 60% of peak"]
    cs = f"first call ({LARGE}, batch 32)"
    assert rows[f"{cs}, empty Numba cache: first epoch, compiling included"] == \
        ["6.00 s", "<= 5 s", "**missed** |"]
    assert rows[f"{cs}, warm Numba cache: first epoch minus second"] == \
        ["0.20 s", "<= 0.3 s", "**met** |"]
    assert rows["memory, one-epoch process, empty Numba cache: peak RSS / PyTorch's"] == \
        ["0.90x PyTorch", "<= 0.7x PyTorch", "**missed** |"]
    assert rows["memory, one-epoch process, warm Numba cache: peak RSS / PyTorch's"][:2] == \
        ["0.60x PyTorch", "<= 0.7x PyTorch"]
    assert rows["never measured"][0] == "not measured"
    met = sum(1 for g in res["goals"] if g["met"])
    assert met == 7 and f"{met} of {len(res['goals']) - 1} measured goals met" in text
    assert "fastest of PyTorch eager, the JAX jit step and the JAX `lax.scan` epoch" in text


def test_the_split_rule_is_the_cpu_backends():
    rule = bench._split_rule()
    assert rule["chunks"] == 2 and rule["rows"] == 64 and rule["work"] == 16384
    for net, rows in rule["min_rows"].items():
        n = bench.n_params(bench.NETS[net]["sizes"])
        assert rows == max(64, math.ceil(16384 / n)), net
    assert rule["min_rows"] == {LARGE: 64, SMALL: 64}
    res = {"split": rule, "processes": [{"name": "train_cpu", "info": {"numba_threads": 2}}],
           "settings": bench.PROFILES["full"]}
    note = report._threads_note(res)
    assert f"{SMALL} from 64 rows, i.e. batches 128, 1024 and full here" in note
    assert f"{LARGE} from 64 rows, i.e. batch 1024 here" in note  # 128: the column split
    assert rule["cols"] == {LARGE: [[1, 1], [8, 128]], SMALL: None}
    assert f"{LARGE} at 1 row and 8 to 128 rows, i.e. batches 1, 8, 32 and 128 here" in note
    assert "2 Numba threads" in note
    quick = report._threads_note(dict(res, settings=bench.PROFILES["quick"]))
    # quick: 2-16-16-1's full batch has 4096 rows; 784-256-256-10 runs batches 1 and 32 only
    assert f"{SMALL} from 64 rows, i.e. the full batch here" in quick
    assert f"{LARGE} from 64 rows, i.e. none of its batches here" in quick
    assert f"{LARGE} at 1 row and 8 to 128 rows, i.e. batches 1 and 32 here" in quick


def test_passes_keep_the_faster_and_list_every_pass():
    """``_keep_faster``: each configuration keeps its fastest pass, whichever came first, and
    lists every pass's throughput in the order seen."""
    store = {}
    bench._keep_faster(store, "32", {"samples_per_s": 10.0, "tag": "pass 1"})
    bench._keep_faster(store, "32", {"samples_per_s": 20.0, "tag": "pass 2"})
    bench._keep_faster(store, "32", {"samples_per_s": 15.0, "tag": "pass 3"})
    assert store["32"]["tag"] == "pass 2"
    assert store["32"]["passes_samples_per_s"] == [10.0, 20.0, 15.0]
    bench._keep_faster(store, "1", {"samples_per_s": 5.0, "tag": "only"})
    assert store["1"]["passes_samples_per_s"] == [5.0] and store["1"]["tag"] == "only"


def test_passes_bullet_reports_the_largest_spread_per_framework():
    """The Method bullet names the pass count and, per framework, the largest ratio of a
    configuration's faster pass to its slower one (largest first)."""
    train = {LARGE: {"jax": {"32": {"samples_per_s": 70.0, "passes_samples_per_s": [35.0, 70.0]},
                             "1": {"samples_per_s": 9.0, "passes_samples_per_s": [9.0, 6.0]}},
                     "cpu": {"32": {"samples_per_s": 57.0,
                                    "passes_samples_per_s": [57.0, 55.0]}}}}
    text = report._passes_bullet({"settings": {"passes": 2}, "train": train})
    assert "2 passes" in text
    assert f"JAX jit step up to 2.00x ({LARGE}, batch 32)" in text
    assert f"ours (cpu, Numba) up to 1.04x ({LARGE}, batch 32)" in text
    assert text.index("JAX jit step") < text.index("ours (cpu, Numba)")
    one = report._passes_bullet({"settings": {}, "train": train})
    assert one.startswith("- One pass")


def test_within_bullet_reports_the_largest_epoch_spread_per_framework():
    """The Method bullet on one measurement's timed epochs: per framework, the largest
    slowest-over-fastest ratio of a configuration (largest first); none without times."""
    train = {SMALL: {"cpu": {"128": {"times": [0.12, 0.12, 0.18, 0.18]},
                             "8": {"times": [0.3, 0.31]}},
                     "jax_scan": {"128": {"times": [0.2, 0.25, 0.22]}}}}
    text = report._within_bullet({"train": train})
    assert f"ours (cpu, Numba) up to 1.50x ({SMALL}, batch 128)" in text
    assert f"JAX lax.scan epoch * up to 1.25x ({SMALL}, batch 128)" in text
    assert text.index("ours (cpu, Numba)") < text.index("JAX lax.scan")
    assert report._within_bullet({"train": {SMALL: {"cpu": {"1": {"times": [0.1]}}}}}) is None


def test_sklearn_section_judges_the_goal_on_the_conservative_ratio():
    """The drop-in section: iterations each fit ran, the smaller of the two wall-time ratios,
    and the goal judged on it (10x for adam and sgd, faster for lbfgs)."""
    from dlbasics.studies.speed import sklearn_fit

    def rec(solver, sk, sk1, ours, n_iter):
        return {"data": "digits", "rows": 1797, "solver": solver, "max_iter": 100,
                "sklearn_s": sk, "ours_s": ours, "ours64_s": ours * 1.5, "ratio": sk / ours,
                "ratio64": sk / (ours * 1.5), "sklearn_1thread_s": sk1,
                "ratio_1thread": sk1 / ours, "cpu_ratio": 5.0, "sklearn_acc": 1.0,
                "ours_acc": 1.0, "ours64_acc": 1.0, "n_iter": n_iter}

    text = sklearn_fit.section([rec("adam", 1.2, 1.0, 0.1, [100, 100, 100]),
                                rec("lbfgs", 0.17, 0.065, 0.02, [16, 16, 16]),
                                rec("sgd", 0.9, 0.5, 0.2, [100, 100, 100])])
    assert "| 100 (100 / 100 / 100) |" in text and "| 100 (16 / 16 / 16) |" in text
    assert "| **10.0x** | >= 10x: met |" in text  # min(12x, 10x)
    assert "| **3.2x** | faster: met |" in text  # min(8.5x, 3.25x)
    assert "| **2.5x** | >= 10x: missed |" in text  # min(4.5x, 2.5x)


def test_phases_section_shows_each_phase_and_its_share():
    """The "where the time goes" table: a column per batch size, each phase's microseconds
    and share of the step, the remainder as *other*, the step with and without the probes;
    a run without records says it measured nothing."""
    from dlbasics.studies.speed import phases

    def rec(batch, path, threads, step, per, plain):
        return {"net": LARGE, "batch": batch, "rows": 512 if batch == 1 else 8192,
                "path": path, "threads": threads,
                "step_us": step, "phases_us": per, "other_us": step - sum(per.values()),
                "plain_step_us": plain}

    names = ("gather", "products", "elementwise", "loss", "update", "waiting")
    text = phases.section([
        rec(1, "column split", 2, 20.0, dict(zip(names, (0.2, 16.0, 0.4, 0.1, 0.0, 2.5),
                                                 strict=True)), 19.5),
        rec(1024, "row split", 2, 8000.0, dict(zip(names, (240, 7000, 110, 28, 300, 150),
                                                   strict=True)), 7900.0)])
    assert "| phase | batch 1 | batch 1024 |" in text
    assert "| path (threads) | column split (2) | row split (2) |" in text
    assert "| products | 16 (80%) | 7000 (88%) |" in text
    assert "| waiting | 2.5 (12%) | 150 (2%) |" in text
    assert "| other | 0.8 (4%) | 172 (2%) |" in text
    assert "| **step, probes on** | **20** | **8000** |" in text
    assert "| step, probes off | 19.5 | 7900 |" in text
    assert "(512 to 8,192 rows, down to 8 steps an epoch at batch 1024)" in text
    assert "Not measured" in phases.section(None)


def test_where_we_lose_uses_the_goals_peer_and_the_width_sweep():
    """A loss to the lax.scan epoch (the goals' peer) and a width-sweep loss are listed; a
    configuration ahead of every peer is not."""
    res = {"train": {LARGE: {"cpu": {"32": {"batch": 32}}}},
           "ratios": {LARGE: {"32": {"vs_best_any": 0.67, "best_any": "jax_scan"},
                              "1": {"vs_best_any": 1.9, "best_any": "jax_scan"}}},
           "population_ratios": {},
           "scaling": {"rows": [{"width": 256, "batch": 32, "vs_best_peer": 0.83},
                                {"width": 16, "batch": 32, "vs_best_peer": 3.6}]}}
    text = report._losses_section(res)
    assert f"- {LARGE}, batch 32: ours at 0.67x of JAX lax.scan epoch" in text
    assert "784-256-256-10, batch 32: ours at 0.83x of the best per-step peer" in text
    assert "batch 1:" not in text and "784-16-16-10" not in text


def test_spread_takes_the_goals_peer_only_for_the_epoch_spread():
    """``_spread``: the pass range from ours' slowest pass against the candidates' fastest to
    ours' fastest against the fastest of the candidates' slowest; the epoch spread of ours and
    of the goal's peer (the candidate with the highest throughput), not of a slower candidate
    whose epochs moved."""
    ours = {"samples_per_s": 100.0, "passes_samples_per_s": [90.0, 100.0],
            "times": [1.0, 1.1, 1.05]}
    peer = {"samples_per_s": 50.0, "passes_samples_per_s": [45.0, 50.0], "times": [2.0, 2.4]}
    slower = {"samples_per_s": 20.0, "passes_samples_per_s": [20.0], "times": [1.0, 3.0]}
    got = bench._spread(ours, [slower, None, peer])
    assert got["range"] == pytest.approx([90.0 / 50.0, 100.0 / 45.0])
    assert got["within"] == pytest.approx(1.2)  # the peer's 2.4 / 2.0, not the slower's 3.0
    assert bench._spread(None, [peer]) == {} and bench._spread(ours, [None]) == {}


def test_sklearn_fits_are_timed_in_balanced_rounds(monkeypatch):
    """Each round fits every estimator once; over four rounds each comes first once and follows
    each other estimator once; the one-thread scikit-learn fit runs with BLAS limited to one
    thread; every timed fit comes after a pause of ``PAUSE_S`` (and the untimed compiling fits
    after none); each estimator's fastest time lands in its own column; the record and the
    section say how the fits were timed."""
    import time

    from threadpoolctl import threadpool_info

    from dlbasics.studies.speed import sklearn_fit

    orders = [sklearn_fit.round_order(k) for k in range(4)]
    assert sorted(o[0] for o in orders) == sorted(sklearn_fit.ROUND)
    pairs = [(o[i], o[i + 1]) for o in orders for i in range(3)]
    assert len(set(pairs)) == len(pairs) == 12  # every ordered pair of neighbours once
    assert sklearn_fit.round_order(4) == orders[0]
    calls = []
    fake = {"sklearn": 3.0, "sklearn_1thread": 2.0, "ours": 0.5, "ours64": 1.0}
    real = sklearn_fit._fit_seconds

    def spy(est, X, y, repeats=1):
        wall, cpu, est = real(est, X, y, repeats)
        if X.shape[0] != 1797:  # the untimed compiling fits on 500 rows
            return wall, cpu, est
        if type(est).__module__.startswith("dlbasics"):
            name = "ours64" if str(est.dtype) == "float64" else "ours"
        else:
            one = all(lib["num_threads"] == 1 for lib in threadpool_info()
                      if lib["user_api"] == "blas")
            name = "sklearn_1thread" if one else "sklearn"
        calls.append(name)
        events.append(name)
        return fake[name] + len(calls) * 1e-3, cpu, est  # the first round is the fastest

    events = []
    monkeypatch.setattr(sklearn_fit, "_fit_seconds", spy)
    monkeypatch.setattr(time, "sleep", lambda s: events.append(("sleep", s)))
    probes = iter([11.0, 22.0])
    monkeypatch.setattr(sklearn_fit, "_handoff_ns", lambda: next(probes))
    recs = sklearn_fit.measure(cases=(("digits", "adam", 2),), repeats=5)
    monkeypatch.undo()
    assert calls == [n for k in range(5) for n in sklearn_fit.round_order(k)]
    assert events == [e for n in calls for e in (("sleep", sklearn_fit.PAUSE_S), n)]
    r = recs[0]
    first = {n: fake[n] + (calls.index(n) + 1) * 1e-3 for n in fake}
    assert (r["sklearn_s"], r["sklearn_1thread_s"], r["ours_s"], r["ours64_s"]) == (
        first["sklearn"], first["sklearn_1thread"], first["ours"], first["ours64"])
    assert r["ratio"] == first["sklearn"] / first["ours"]
    assert r["rounds"] and r["repeats"] == 5 and r["n_iter"] == [2, 2, 2]
    assert r["pause_s"] == sklearn_fit.PAUSE_S
    assert r["core_latency_ns"] == [11.0, 22.0]  # the probe before and after the case
    text = sklearn_fit.section(recs)
    assert "in five rounds of one fit of each estimator" in text
    assert f"each timed fit after {sklearn_fit.PAUSE_S:g} s of sleep" in text
    assert "The cross-core handoff before/after each case" in text


def test_sklearn_fit_section_names_the_cases_probed_far():
    """The section lists each case's cross-core handoff before/after (``?`` where the probe
    gave nothing) and names the cases with a probe above ``FAR_NS``; records without the
    probe (before it) get no such sentence."""
    from dlbasics.studies.speed import sklearn_fit

    base = {"rows": 1797, "max_iter": 100, "sklearn_s": 0.5, "ours_s": 0.05, "ours64_s": 0.1,
            "ratio": 10.0, "ratio64": 5.0, "cpu_ratio": 10.0, "sklearn_1thread_s": 0.5,
            "ratio_1thread": 10.0, "sklearn_acc": 1.0, "ours_acc": 1.0, "ours64_acc": 1.0,
            "n_iter": [100, 100, 100], "started": "2026-12-07T19:00:00+00:00",
            "load_before": 0.5, "load_after": 0.6, "cpus": 2, "repeats": 5, "rounds": True,
            "pause_s": 0.3}
    recs = [dict(base, data="digits", solver="adam", core_latency_ns=[27.4, 161.0]),
            dict(base, data="digits", solver="sgd", core_latency_ns=[None, 28.0]),
            dict(base, data="digits", solver="lbfgs", core_latency_ns=[100.0, 67.0])]
    text = sklearn_fit.section(recs)
    assert "digits adam 27/161; digits sgd ?/28; digits lbfgs 100/67." in text
    assert "Above 100 ns: digits adam." in text  # 100 itself is not above
    assert "From 40 to 100 ns, a state that paragraph does not describe: digits lbfgs." in text
    assert "None above" not in text
    recs[0]["core_latency_ns"] = [27.4, 33.0]
    recs[2]["core_latency_ns"] = [30.0, 40.0]
    text = sklearn_fit.section(recs)
    assert "None above 100 ns." in text and "From 40 to 100" not in text
    for r in recs:
        del r["core_latency_ns"]
    assert "cross-core handoff before/after" not in sklearn_fit.section(recs)


def test_population_section_states_the_lane_widths_of_the_run():
    from dlbasics.studies.speed import report

    res = {"processes": [{"name": "population_ours", "info": {"numba_threads": 2}}]}
    keys = [("64", "1"), ("64", "32"), ("512", "1"), ("512", "32")]
    # 2 threads: K=64 halves to 32 lanes for the threads; K=512 keeps 128 at batch 1 (3.1 kB a
    # lane) and halves to 32 at batch 32 (15.6 kB a lane, LANE_BYTES 512 KiB)
    assert report._lane_widths(res, keys) == (
        ": on 2 threads, lanes a chunk K=64 at batch 1: 32, K=64 at batch 32: 32, "
        "K=512 at batch 1: 128, K=512 at batch 32: 32")
    res1 = {"processes": [{"name": "population_ours", "info": {"numba_threads": 1}}]}
    # one thread: K=64 in one chunk of 64 lanes (not 128, half of them padding)
    assert report._lane_widths(res1, [("64", "1"), ("512", "32")]) == (
        ": on 1 threads, lanes a chunk K=64 at batch 1: 64, K=512 at batch 32: 32")
    assert report._lane_widths({"processes": []}, keys) == ""
    assert report._lane_widths(res, []) == ""


def test_placements_paragraph_lists_every_probed_worker_and_the_far_ones():
    procs = [
        {"name": "train_cpu", "kind": "train", "core_latency_ns": [31.2, 33.9]},
        {"name": "train_jax", "kind": "train", "core_latency_ns": [35.0, 171.4]},
        {"name": "population_ours", "kind": "population", "core_latency_ns": [168.0, 170.2]},
        {"name": "fma256", "kind": "fma", "core_latency_ns": [400.0, 40.0]},  # a limit's worker
        {"name": "train_torch", "kind": "train", "core_latency_ns": [None, 30.0]},  # one probe
        {"name": "train_sklearn", "kind": "train", "core_latency_ns": [None, None]},  # none
        {"name": "train_numpy", "kind": "train"},  # results from before the probe
    ]
    text = report._placements(procs)
    assert ("Before/after, by worker: train_cpu 31/34; train_jax 35/171; population_ours "
            "168/170; fma256 400/40; train_torch ?/30; train_sklearn ?/?. Above 100 ns before "
            "or after: train_jax; population_ours; fma256.") in text
    assert "train_numpy" not in text
    near = report._placements(procs[:1])
    assert near.endswith("train_cpu 31/34. None above 100 ns.")
    # results written before the probe existed render as they did
    assert report._placements(procs[-1:]) == "" and report._placements(()) == ""
    res = _res()
    res["goals"] = bench._goals(res)
    assert report._goals_section(res).endswith(report._unsettled(res["goals"]))
    res["processes"] = procs[:1]
    assert report._goals_section(res).endswith(near)
