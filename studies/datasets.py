"""Problems of the studies: synthetic sets made in code and two real sets available offline.

Every problem is a function of explicit arguments and a ``seed`` (no global random state) that
returns a :class:`Dataset` with train / validation / test splits: the seed draws the data *and*
the split, so a study whose runs each use their own seed measures the variance that comes from
the data too. Inputs are standardised with the mean and standard deviation of the *training*
split only (``standardize=False`` keeps the raw inputs).

Split sizes. Synthetic problems draw ``n`` points for training and validation (split
:data:`TRAIN_SHARE` / rest) and a separate test set of ``n_test`` points from the same
distribution (default :data:`N_TEST`, 10,000: its binomial standard error, at most 0.005, is
small against the effects the studies measure). ``digits`` is split 60/20/20 (a 360-point test
set: the data set has 1797 samples). ``mnist1d`` trains on ``n_train`` (4000, as in Greydanus
2020), validates on ``n_val`` and tests on the package's own held-out part (20% of what it
generates).

=============== ======== ======= =============================================================
name            task     d -> k  what it is
=============== ======== ======= =============================================================
``blobs``       binary   d -> 1  two Gaussian-like clouds, linearly separable with a known
                                 margin ``margin`` around a random hyperplane
``xor``         binary   2 -> 1  four noisy clusters at (+-1, +-1), label = XOR of the signs
``moons``       binary   2 -> 1  two interleaving half circles
``circles``     binary   2 -> 1  a small circle inside a large one
``spirals``     binary   2 -> 1  two interleaved spirals
``sine``        regress. 1 -> 1  ``sin(pi x)`` on ``[-1, 1]`` plus noise
``step``        regress. 1 -> 1  ``1[x > 0]`` plus noise
``bump``        regress. 1 -> 1  ``1[|x| < 0.5]`` plus noise (the notes' two-sigmoid "bump")
``digits``      multi.   64 -> 10 scikit-learn's bundled 8x8 digits (needs ``dlbasics[data]``)
``mnist1d``     multi.   40 -> 10 MNIST-1D generated locally by the ``mnist1d`` package
                                 (``make_dataset(get_dataset_args())``; never downloaded;
                                 needs ``dlbasics[data]``)
=============== ======== ======= =============================================================

Targets: binary problems give float labels in {0, 1} of shape ``(n,)`` (sigmoid output with
binary cross-entropy), multi-class problems integer labels of shape ``(n,)`` (softmax output with
cross-entropy), regression problems float targets of shape ``(n, 1)``.

``load(name, seed=0, **args)`` builds a problem (cached per process: a worker process builds
each data set once); ``dims(name, **args)`` gives ``(n_features, n_outputs, task)`` without
building it.
"""

from __future__ import annotations

import functools
import json
import math
import random
from dataclasses import dataclass, field

import numpy as np

#: Fractions of the samples in the train and validation splits (the rest is the test split) of
#: the problems without a separate test draw (digits).
SPLIT = (0.6, 0.2)
#: Share of the ``n`` train + validation points of a synthetic problem that train.
TRAIN_SHARE = 0.75
#: Default size of a synthetic problem's test set.
N_TEST = 10_000

EXTRA = "pip install dlbasics[data]"


class MissingExtra(ImportError):
    """An optional package needed by a problem is not installed."""


@dataclass(frozen=True)
class Dataset:
    """A problem with fixed splits.

    Attributes
    ----------
    name : str
    task : {"binary", "multiclass", "regression"}
    X_train, X_val, X_test : ndarray of shape (n_split, n_features), float32
    y_train, y_val, y_test : ndarray
        ``(n_split,)`` float32 in {0, 1} (binary), ``(n_split,)`` int64 (multi-class), or
        ``(n_split, 1)`` float32 (regression).
    n_classes : int
        Number of classes (0 for regression).
    info : dict
        Problem-specific facts (e.g. the margin and radius of ``blobs``; the standardisation).
    """

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    info: dict = field(default_factory=dict)

    @property
    def n_features(self):
        return self.X_train.shape[1]

    @property
    def n_outputs(self):
        """Width of the network output: 1 for binary and regression, ``n_classes`` otherwise."""
        return self.n_classes if self.task == "multiclass" else 1

    def sizes(self):
        """``(n_train, n_val, n_test)``."""
        return self.X_train.shape[0], self.X_val.shape[0], self.X_test.shape[0]


# ----------------------------------------------------------------------------------------------
# splitting and standardisation
# ----------------------------------------------------------------------------------------------


def _split_indices(n, rng, split=SPLIT):
    perm = rng.permutation(n)
    n_tr = int(round(split[0] * n))
    n_va = int(round(split[1] * n))
    if n_tr < 1 or n_va < 1 or n - n_tr - n_va < 1:
        raise ValueError(f"n={n} samples is too few for train/validation/test splits {split}")
    return perm[:n_tr], perm[n_tr : n_tr + n_va], perm[n_tr + n_va :]


def _synthetic_splits(n, n_test, rng):
    """Train / validation indices of the first ``n`` points (shuffled), test = the last
    ``n_test`` (a separate draw from the same distribution)."""
    perm = rng.permutation(n)
    n_tr = int(round(TRAIN_SHARE * n))
    if n_tr < 1 or n - n_tr < 1:
        raise ValueError(f"n={n} samples is too few for train and validation splits")
    return perm[:n_tr], perm[n_tr:], np.arange(n, n + n_test)


def _finish(name, task, X, y, rng, standardize, n_classes=0, info=None, splits=None):
    """Split ``X, y`` (or use ``splits``), standardise on train, cast, freeze."""
    info = dict(info or {})
    if splits is None:
        splits = _split_indices(X.shape[0], rng)
    parts = [(X[i], y[i]) for i in splits]
    mu = np.zeros(X.shape[1])
    sd = np.ones(X.shape[1])
    if standardize:
        Xtr = parts[0][0].astype(np.float64)
        mu = Xtr.mean(axis=0)
        sd = Xtr.std(axis=0)
        sd[sd == 0] = 1.0
    info["standardize"] = bool(standardize)
    info["mean"] = mu.tolist() if X.shape[1] <= 8 else "per-feature (train split)"
    info["std"] = sd.tolist() if X.shape[1] <= 8 else "per-feature (train split)"
    out = []
    for Xi, yi in parts:
        Xi = np.ascontiguousarray((Xi - mu) / sd, dtype=np.float32)
        if task == "multiclass":
            yi = np.ascontiguousarray(yi, dtype=np.int64)
        elif task == "regression":
            yi = np.ascontiguousarray(yi, dtype=np.float32).reshape(-1, 1)
        else:
            yi = np.ascontiguousarray(yi, dtype=np.float32)
        out.extend([Xi, yi])
    return Dataset(name, task, *out, n_classes=n_classes, info=info), (mu, sd)


def _rng(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(int(seed))


# ----------------------------------------------------------------------------------------------
# synthetic classification
# ----------------------------------------------------------------------------------------------


def blobs(seed=0, n=400, dim=2, margin=0.5, spread=1.0, n_test=N_TEST, standardize=True):
    """Linearly separable two-class data with a known margin.

    Points are drawn from ``N(+-(margin + spread) u, spread^2 I)`` for a random unit normal
    ``u``, and every point closer than ``margin`` to the hyperplane ``u . x = 0`` is drawn again,
    so the hyperplane separates the classes with margin at least ``margin`` (raw coordinates).

    ``info`` holds ``w, b`` (the separating hyperplane ``w . x + b = 0`` in the *returned*,
    possibly standardised coordinates), ``margin`` (its geometric margin over all splits, in the
    returned coordinates), ``margin_raw`` and ``radius`` (largest ``||x||`` over the training
    split, returned coordinates): the perceptron makes at most ``(radius / margin)^2`` mistakes
    on the training split (Novikoff), with an input augmented by a constant 1 the bound uses
    ``radius^2 + 1``.
    """
    rng = _rng(seed)
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    u = rng.normal(size=dim)
    u /= np.linalg.norm(u)
    m = n + n_test
    y = (np.arange(m) % 2).astype(np.float64)
    sign = 2 * y - 1
    X = np.empty((m, dim))
    for i in range(m):
        while True:
            x = rng.normal(0.0, spread, size=dim) + sign[i] * (margin + spread) * u
            if sign[i] * (x @ u) >= margin:
                X[i] = x
                break
    ds, (mu, sd) = _finish("blobs", "binary", X, y, rng, standardize, info={"margin_raw": margin},
                           splits=_synthetic_splits(n, n_test, rng))
    # u . x = 0 with x = sd * x' + mu  ->  (u * sd) . x' + u . mu = 0
    w = u * sd
    b = float(u @ mu)
    Xall = np.vstack([ds.X_train, ds.X_val, ds.X_test]).astype(np.float64)
    yall = np.concatenate([ds.y_train, ds.y_val, ds.y_test]) * 2 - 1
    geo = float(np.min(yall * (Xall @ w + b)) / np.linalg.norm(w))
    ds.info.update(w=w.tolist(), b=b, margin=geo,
                   radius=float(np.linalg.norm(ds.X_train.astype(np.float64), axis=1).max()))
    return ds


def xor(seed=0, n=400, noise=0.25, n_test=N_TEST, standardize=True):
    """Four Gaussian clusters at ``(+-1, +-1)`` (std ``noise``); label 1 where the signs differ."""
    rng = _rng(seed)
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64)
    c = np.arange(n + n_test) % 4
    X = corners[c] + rng.normal(0.0, noise, size=(n + n_test, 2))
    y = (corners[c, 0] * corners[c, 1] < 0).astype(np.float64)
    return _finish("xor", "binary", X, y, rng, standardize,
                   splits=_synthetic_splits(n, n_test, rng))[0]


def moons(seed=0, n=400, noise=0.1, n_test=N_TEST, standardize=True):
    """Two interleaving half circles (as scikit-learn's ``make_moons``), Gaussian noise."""
    rng = _rng(seed)
    m = n + n_test
    y = (np.arange(m) % 2).astype(np.float64)
    t = rng.uniform(0.0, math.pi, size=m)
    X = np.where(y[:, None] == 0,
                 np.c_[np.cos(t), np.sin(t)],
                 np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    X = X + rng.normal(0.0, noise, size=X.shape)
    return _finish("moons", "binary", X, y, rng, standardize,
                   splits=_synthetic_splits(n, n_test, rng))[0]


def circles(seed=0, n=400, noise=0.05, factor=0.5, n_test=N_TEST, standardize=True):
    """A circle of radius ``factor`` (label 1) inside the unit circle (label 0), plus noise."""
    rng = _rng(seed)
    m = n + n_test
    y = (np.arange(m) % 2).astype(np.float64)
    t = rng.uniform(0.0, 2 * math.pi, size=m)
    r = np.where(y == 1, factor, 1.0)
    X = np.c_[r * np.cos(t), r * np.sin(t)] + rng.normal(0.0, noise, size=(m, 2))
    return _finish("circles", "binary", X, y, rng, standardize,
                   splits=_synthetic_splits(n, n_test, rng))[0]


def spirals(seed=0, n=400, noise=0.05, turns=1.5, n_test=N_TEST, standardize=True):
    """Two interleaved spirals of ``turns`` turns (the second rotated by pi), plus noise."""
    rng = _rng(seed)
    m = n + n_test
    y = (np.arange(m) % 2).astype(np.float64)
    s = np.sqrt(rng.uniform(0.0, 1.0, size=m))  # uniform density along the arm
    angle = s * turns * 2 * math.pi + y * math.pi
    X = np.c_[s * np.cos(angle), s * np.sin(angle)] + rng.normal(0.0, noise, size=(m, 2))
    return _finish("spirals", "binary", X, y, rng, standardize,
                   splits=_synthetic_splits(n, n_test, rng))[0]


# ----------------------------------------------------------------------------------------------
# 1-D regression
# ----------------------------------------------------------------------------------------------

TARGETS = {
    "sine": lambda x: np.sin(math.pi * x),
    "step": lambda x: (x > 0).astype(np.float64),
    "bump": lambda x: (np.abs(x) < 0.5).astype(np.float64),
}


def _regression(name, seed, n, noise, n_test, standardize, clean_test=False):
    rng = _rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n + n_test, 1))
    y = TARGETS[name](x[:, 0]) + rng.normal(0.0, noise, size=n + n_test)
    if clean_test:  # the test split: a dense grid of [-1, 1] with the noise-free target
        x[n:, 0] = np.linspace(-1.0, 1.0, n_test)
        y[n:] = TARGETS[name](x[n:, 0])
    return _finish(name, "regression", x, y, rng, standardize,
                   splits=_synthetic_splits(n, n_test, rng))[0]


def sine(seed=0, n=200, noise=0.1, n_test=N_TEST, standardize=True, clean_test=False):
    """``y = sin(pi x) + noise`` for ``x ~ U[-1, 1]``.

    ``clean_test=True``: the test split is ``n_test`` evenly spaced points of ``[-1, 1]`` with
    the noise-free target (its loss is the error against the function itself).
    """
    return _regression("sine", seed, n, noise, n_test, standardize, clean_test)


def step(seed=0, n=200, noise=0.05, n_test=N_TEST, standardize=True, clean_test=False):
    """``y = 1[x > 0] + noise`` for ``x ~ U[-1, 1]``.

    ``clean_test=True``: the test split is ``n_test`` evenly spaced points of ``[-1, 1]`` with
    the noise-free target (its loss is the error against the function itself).
    """
    return _regression("step", seed, n, noise, n_test, standardize, clean_test)


def bump(seed=0, n=200, noise=0.05, n_test=N_TEST, standardize=True, clean_test=False):
    """``y = 1[|x| < 0.5] + noise`` for ``x ~ U[-1, 1]``: the bump two sigmoids can build.

    ``clean_test=True``: the test split is ``n_test`` evenly spaced points of ``[-1, 1]`` with
    the noise-free target (its loss is the error against the function itself).
    """
    return _regression("bump", seed, n, noise, n_test, standardize, clean_test)


# ----------------------------------------------------------------------------------------------
# real data, offline
# ----------------------------------------------------------------------------------------------


def _need(module, problem):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise MissingExtra(
            f"problem {problem!r} needs the package {module.split('.')[0]!r}: {EXTRA}"
        ) from exc


def digits(seed=0, n=None, standardize=True):
    """scikit-learn's bundled 8x8 digits (1797 samples, 64 features, 10 classes), offline.

    ``n`` keeps a random subset of that many samples (all by default).
    """
    rng = _rng(seed)
    sk = _need("sklearn.datasets", "digits")
    X, y = sk.load_digits(return_X_y=True)
    if n is not None:
        keep = np.sort(rng.permutation(X.shape[0])[: int(n)])
        X, y = X[keep], y[keep]
    return _finish("digits", "multiclass", X.astype(np.float64), y, rng, standardize,
                   n_classes=10)[0]


@functools.lru_cache(maxsize=4)
def _mnist1d_draw(seed, num_samples):
    """``(x, y, x_test, y_test)`` of ``make_dataset`` with ``seed`` and ``num_samples`` (cached:
    do not modify)."""
    data = _need("mnist1d.data", "mnist1d")
    args = data.get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        d = data.make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    return d["x"], d["y"], d["x_test"], d["y_test"]


def mnist1d(seed=0, n_train=4000, n_val=1000, standardize=True, n_pool=None):
    """MNIST-1D (Greydanus 2020) generated locally: ``make_dataset(get_dataset_args())``.

    The package's default arguments, with its ``seed`` set to ``seed`` and ``num_samples`` such
    that the training part of its own 80/20 split holds ``n_pool`` samples (default ``n_train +
    n_val``): ``n_val`` of them (drawn with ``seed``) validate, the next ``n_train`` of that
    draw train, and its held-out 20% (``n_pool / 4`` samples) is the test set (1250 by
    default). The paper's reference MLP trains on 4000 and tests on 1000 samples of the
    package's default draw. The package seeds NumPy's and Python's global generators; their
    states are restored afterwards.

    ``n_pool`` larger than ``n_train + n_val`` trains on a subset of a larger draw: for one seed,
    every ``n_train`` with the same ``n_pool`` and ``n_val`` has the same validation and test
    sets, and a smaller training set is a subset of a larger one (a training-set-size sweep
    with a test set of ``n_pool / 4`` at every size; the draw is generated once per process).
    """
    rng = _rng(seed)
    total = int(n_train) + int(n_val)
    pool = total if n_pool is None else int(n_pool)
    if pool < total:
        raise ValueError(f"n_pool must be at least n_train + n_val = {total}, got {pool}")
    if pool % 4:
        raise ValueError(f"the pool of training and validation samples must be a multiple of 4 "
                         f"(the 80/20 split), got {pool}")
    Xtr, ytr, Xte, yte = _mnist1d_draw(int(seed), pool * 5 // 4)
    X = np.vstack([Xtr, Xte]).astype(np.float64)
    y = np.concatenate([ytr, yte])
    perm = rng.permutation(Xtr.shape[0])
    n_va = int(n_val)
    splits = (perm[n_va:total], perm[:n_va], np.arange(Xtr.shape[0], X.shape[0]))
    return _finish("mnist1d", "multiclass", X, y, rng, standardize, n_classes=10,
                   splits=splits)[0]


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------

#: Problem name -> (builder, fixed dims or a function of the arguments, task).
PROBLEMS = {
    "blobs": (blobs, lambda a: (int(a.get("dim", 2)), 1), "binary"),
    "xor": (xor, lambda a: (2, 1), "binary"),
    "moons": (moons, lambda a: (2, 1), "binary"),
    "circles": (circles, lambda a: (2, 1), "binary"),
    "spirals": (spirals, lambda a: (2, 1), "binary"),
    "sine": (sine, lambda a: (1, 1), "regression"),
    "step": (step, lambda a: (1, 1), "regression"),
    "bump": (bump, lambda a: (1, 1), "regression"),
    "digits": (digits, lambda a: (64, 10), "multiclass"),
    "mnist1d": (mnist1d, lambda a: (40, 10), "multiclass"),
}


#: Problems that need an optional package (module to import), installed by ``dlbasics[data]``.
REQUIRES = {"digits": "sklearn", "mnist1d": "mnist1d"}


def require(name):
    """Raise :class:`MissingExtra` if problem ``name`` needs a package that is not installed."""
    import importlib.util

    module = REQUIRES.get(name)
    if module is not None and importlib.util.find_spec(module) is None:
        raise MissingExtra(f"problem {name!r} needs the package {module!r}: {EXTRA}")


def check(name, args=None):
    """Raise ``ValueError`` unless ``name`` is a problem; ``TypeError`` for unknown arguments."""
    if not isinstance(name, str):
        raise TypeError(f"problem name must be a string, got {type(name).__name__}")
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; known: {', '.join(PROBLEMS)}")
    import inspect

    params = inspect.signature(PROBLEMS[name][0]).parameters
    for key in args or {}:
        if key not in params:
            raise TypeError(f"problem {name!r} has no argument {key!r} (has: {', '.join(params)})")
    if (args or {}).get("n", 0) is None and params["n"].default is not None:
        raise TypeError(f"n must be an integer for problem {name!r}, got None")
    _check_values(args or {})


#: Ranges of the problems' arguments (checked before any data is made).
_INT_ARGS = {"n": (10, 10_000_000), "dim": (1, 100_000), "n_test": (1, 10_000_000),
             "n_train": (10, 10_000_000), "n_val": (1, 10_000_000),
             "n_pool": (12, 10_000_000)}
_REAL_ARGS = {"noise": (0.0, 100.0), "margin": (0.0, 1e6), "spread": (0.0, 1e6),
              "factor": (0.0, 1.0), "turns": (0.0, 100.0)}


def _check_values(args):
    from ..kernels import _checks

    for key, value in args.items():
        if key in _INT_ARGS:
            low, high = _INT_ARGS[key]
            if key == "n" and value is None:
                continue
            _checks.integer(key, value, low=low, high=high)
        elif key in _REAL_ARGS:
            low, high = _REAL_ARGS[key]
            _checks.real(key, value, low=low, high=high)
        elif key in ("standardize", "clean_test") and not isinstance(value, bool):
            raise TypeError(f"{key} must be True or False, got {value!r}")


def dims(name, **args):
    """``(n_features, n_outputs, task)`` of a problem, without building it."""
    check(name, args)
    _, d, task = PROBLEMS[name]
    return (*d(args), task)


@functools.lru_cache(maxsize=16)
def _load(name, seed, args_json):
    return PROBLEMS[name][0](seed=seed, **json.loads(args_json))


def load(name, seed=0, **args):
    """Build problem ``name`` with ``seed`` and its arguments (cached per process).

    The cache hands the same arrays to every caller: do not modify them. (They are not made
    read-only because Numba compiles read-only arrays as a separate type: every kernel would be
    compiled twice.)
    """
    check(name, args)
    from ..kernels import _checks

    seed = _checks.integer("seed", seed, low=0, high=2**63 - 1)
    return _load(name, seed, json.dumps(args, sort_keys=True))
