"""pytest-benchmark cases: ``fit`` of our drop-in MLPClassifier against scikit-learn's at the
same settings (run: pytest tests/benchmarks/test_bench_sklearn.py --benchmark-only).

scikit-learn's ``fit`` is timed once in the same run and its time and the ratio go into
``extra_info`` (shown with ``--benchmark-columns`` or in the JSON). Under
``--benchmark-disable`` (CI) each case runs once, as a plain correctness test: ours follows
the same loss curve as scikit-learn's. The speed report's section is
:mod:`dlbasics.studies.speed.sklearn_fit`."""

import time
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.neural_network import MLPClassifier as Theirs  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from dlbasics.models import MLPClassifier as Ours  # noqa: E402


@pytest.mark.parametrize("solver,max_iter", [("adam", 20), ("sgd", 20), ("lbfgs", 20)])
def test_fit_digits_against_sklearn(benchmark, solver, max_iter):
    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    params = dict(solver=solver, max_iter=max_iter, n_iter_no_change=max_iter + 1,
                  random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Ours(**dict(params, max_iter=1)).fit(X[:300], y[:300])  # compile untimed
        t0 = time.perf_counter()
        theirs = Theirs(**params).fit(X, y)
        sklearn_s = time.perf_counter() - t0
        ours = benchmark(lambda: Ours(**params).fit(X, y))
    if benchmark.stats is not None:
        ours_s = benchmark.stats.stats.median
        benchmark.extra_info.update(sklearn_s=sklearn_s, ratio=sklearn_s / ours_s)
    assert ours.n_iter_ == theirs.n_iter_
    if solver != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)
    assert abs(ours.score(X, y) - theirs.score(X, y)) <= 0.01
