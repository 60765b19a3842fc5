"""Determinism: same seed and thread count -> bitwise-equal histories; 1 vs 2 threads -> equal
within 1e-6 relative in float64 (documented in README.md)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from dlbasics.models import MLP, Adam, train
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 20))
    y = rng.integers(0, 5, 512)
    out = {}
    for batch in (1, 32, 512):
        m = MLP([20, 300, 300, 5], activation="relu", output="softmax", loss="cross_entropy",
                keep_prob=0.9, dtype=np.float64, seed=3)
        h = train(m, X, y, Adam(1e-3), batch_size=batch, epochs=2, seed=5, metrics="full")
        out[str(batch)] = h.full_loss + h.train_loss + [float(np.abs(m.params).sum())]
    print(json.dumps(out))
""")


def _run(threads):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=600, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs():
    return {"1a": _run(1), "2a": _run(2), "2b": _run(2)}


def test_same_threads_bitwise(runs):
    assert runs["2a"] == runs["2b"]


def test_one_vs_two_threads_within_1e6(runs):
    for batch, values in runs["1a"].items():
        np.testing.assert_allclose(values, runs["2a"][batch], rtol=1e-6)
