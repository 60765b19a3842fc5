"""Phase probes (dlbasics.kernels.probes): off, they leave nothing in the step; on (a process of
their own), every path of the CPU step charges its phases, the threads' waiting only where
there are threads, and the step computes the same bits."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dlbasics.kernels import probes
from dlbasics.models import MLP, SGD, Adam, train

SIZES = [64, 256, 128, 4]  # 50,052 parameters: the column split takes batches of 32 rows

# (optimizer, batch): the step's three CPU paths with two Numba threads
CASES = {"whole": ("sgd", 4), "column split": ("sgd", 32), "row split": ("adam", 128)}

CHILD = r"""
import json, sys
import numpy as np
from dlbasics.kernels import probes
from dlbasics.models import MLP, SGD, Adam, train
from dlbasics.studies.speed.phases import path_of

rng = np.random.default_rng(0)
X = rng.normal(size=(512, 64)).astype(np.float32)
y = rng.integers(0, 4, 512)
out = {"enabled": probes.ENABLED}
for name, (opt, batch) in json.loads(sys.argv[1]).items():
    m = MLP(SIZES, activation="relu", output="softmax", loss="cross_entropy", seed=0)
    o = SGD(0.05) if opt == "sgd" else Adam(1e-3)
    train(m, X, y, o, batch_size=batch, epochs=1, seed=0)
    probes.reset()
    h = train(m, X, y, o, batch_size=batch, epochs=2, seed=1)
    out[name] = {"cycles": probes.totals(), "seconds": h.time[-1],
                 "path": path_of(m, batch) if opt == "sgd" else None,
                 "params": m.params.tolist()}
print(json.dumps(out))
""".replace("SIZES", repr(SIZES))


def _run(env):
    env = dict(env, NUMBA_NUM_THREADS="2")
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(CASES)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The cases with the probes on (a marked cache of their own) and off (this session's
    cache), each in a fresh process."""
    from dlbasics.studies.speed.phases import probe_env

    on = _run(probe_env(tmp_path_factory.mktemp("probe_cache")))
    off = _run({k: v for k, v in os.environ.items() if k != probes.ENV})
    return on, off


def test_off_in_this_process():
    assert not probes.ENABLED
    rng = np.random.default_rng(1)
    X = rng.normal(size=(256, 64)).astype(np.float32)
    y = rng.integers(0, 4, 256)
    m = MLP(SIZES, activation="relu", output="softmax", loss="cross_entropy", seed=0)
    probes.reset()
    for opt, batch in CASES.values():
        train(m, X, y, SGD(0.05) if opt == "sgd" else Adam(1e-3), batch_size=batch, epochs=1)
    assert probes.totals() == dict.fromkeys(probes.PHASES, 0)


def test_each_cpu_adds_to_a_line_of_its_own():
    """The totals are a row per CPU, each row a 64-byte line of its own; ``totals`` adds the
    rows."""
    assert probes.CYCLES.shape == (probes.TRACKS, len(probes.PHASES))
    assert probes.CYCLES.strides[0] == 64 and probes.CYCLES.ctypes.data % 64 == 0
    try:
        probes.CYCLES[3, probes.LOSS] = 5
        probes.CYCLES[40, probes.LOSS] = 7
        probes.CYCLES[0, probes.GATHER] = 1
        assert probes.totals() == dict(dict.fromkeys(probes.PHASES, 0), loss=12, gather=1)
    finally:
        probes.reset()
    assert probes.totals() == dict.fromkeys(probes.PHASES, 0)


def test_on_needs_a_marked_cache(tmp_path):
    env = dict(os.environ, **{probes.ENV: "1", "NUMBA_CACHE_DIR": str(tmp_path)})
    done = subprocess.run([sys.executable, "-c", "import dlbasics.kernels.network"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "RuntimeError" in done.stderr and probes.MARKER in done.stderr
    assert str(tmp_path) in done.stderr


def test_paths_taken(runs):
    on, off = runs
    assert on["enabled"] and not off["enabled"]
    assert on["whole"]["path"] == ["whole", 1]
    assert on["column split"]["path"] == ["column split", 2]


@pytest.mark.parametrize("case", list(CASES))
def test_phases_charged(runs, case):
    on, off = runs
    cyc = on[case]["cycles"]
    assert all(off[c]["cycles"][p] == 0 for c in CASES for p in probes.PHASES)
    for phase in ("gather", "products", "elementwise", "loss", "update"):
        assert cyc[phase] > 0, (case, phase)
    if case == "whole":
        assert cyc["waiting"] == 0
    else:
        assert cyc["waiting"] > 0


def test_phases_within_the_wall_time(runs):
    """The phases of the threads add up to no more than the threads' wall time (the counter's
    rate bounded generously: 0.5 to 6 GHz)."""
    on, _ = runs
    for case in CASES:
        threads = 1 if case == "whole" else 2
        total = sum(on[case]["cycles"].values())
        assert 0 < total <= 6e9 * on[case]["seconds"] * threads, case


def test_same_bits(runs):
    on, off = runs
    for case in CASES:
        np.testing.assert_array_equal(np.array(on[case]["params"], np.float32),
                                      np.array(off[case]["params"], np.float32), err_msg=case)
