"""What every framework of the speed benchmark shares: networks, data, initialisation, FLOP
model and the measurement protocol.

Imports NumPy only, so that a framework's worker process holds that framework and nothing else
(its peak RSS is then its own), and the parent process can use it without starting a BLAS pool.
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
import time

import numpy as np

#: The two networks of the benchmark: layer widths, hidden and output activation, loss, SGD rate.
NETS = {
    "784-256-256-10": {
        "sizes": [784, 256, 256, 10], "activation": "relu", "output": "softmax",
        "loss": "cross_entropy", "lr": 0.01,
    },
    "2-16-16-1": {
        "sizes": [2, 16, 16, 1], "activation": "tanh", "output": "sigmoid",
        "loss": "binary_cross_entropy", "lr": 0.1,
    },
}


def net_config(net):
    """The settings of network ``net``: an entry of :data:`NETS`, or a network of the width
    sweep named by its layer widths, ``"784-W-W-10"`` (any hidden widths between 784 inputs and
    10 classes), which takes the settings of 784-256-256-10 (ReLU, softmax cross-entropy, the
    same SGD rate) with its own sizes.

    Raises
    ------
    ValueError
        ``net`` is neither in :data:`NETS` nor a ``784-...-10`` name of positive widths.
    """
    if net in NETS:
        return NETS[net]
    try:
        sizes = [int(w) for w in str(net).split("-")]
    except ValueError:
        sizes = []
    if len(sizes) < 3 or sizes[0] != 784 or sizes[-1] != 10 or min(sizes) < 1:
        raise ValueError(f"net must be one of {sorted(NETS)} or '784-W-...-10', got {net!r}")
    return dict(NETS["784-256-256-10"], sizes=sizes)


#: Seed of the benchmark data; seed ``k`` initialises network ``k`` (network 0 for single runs).
DATA_SEED = 0
#: The label of the full-batch configuration (batch size = number of samples).
FULL = "full"


def make_data(net, n, seed=DATA_SEED):
    """The benchmark's data set of ``n`` rows for ``net``, identical in every process.

    784-256-256-10 (and every ``784-...-10`` of :func:`net_config`: the same rows): standard
    normal inputs and uniform labels 0..9 (int64).
    2-16-16-1: standard normal 2-D inputs, target ``x0 * x1 > 0`` (float32 0/1, XOR-like).

    Returns
    -------
    X : ndarray of shape (n, sizes[0]), float32
    y : ndarray of shape (n,)
    """
    rng = np.random.default_rng(seed)
    sizes = net_config(net)["sizes"]
    X = rng.normal(size=(n, sizes[0])).astype(np.float32)
    if sizes[-1] > 1:
        y = rng.integers(0, sizes[-1], n).astype(np.int64)
    else:
        y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    return X, y


def glorot_init(sizes, seed):
    """Weights and biases exactly as ``dlbasics.models.MLP(sizes, init="glorot", seed=seed)`` draws
    them.

    Glorot uniform ``W ~ U(-a, a)``, ``a = sqrt(6 / (n_in + n_out))``, drawn in float64 from
    ``numpy.random.default_rng(seed)`` layer by layer and cast to float32; zero biases.

    Returns
    -------
    list of (W, b)
        ``W`` of shape (n_in, n_out) (a layer is ``x @ W + b``), ``b`` of shape (n_out,).
    """
    rng = np.random.default_rng(seed)
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        limit = np.sqrt(6.0 / (n_in + n_out))
        W = rng.uniform(-limit, limit, size=(n_in, n_out)).astype(np.float32)
        layers.append((W, np.zeros(n_out, dtype=np.float32)))
    return layers


def flat_params(layers):
    """The flat parameter vector of :class:`dlbasics.models.MLP` (per layer ``W`` row-major, then
    ``b``)."""
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in layers])


def n_params(sizes):
    """Number of parameters (weights and biases) of a dense network."""
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def train_step_flops(sizes, batch):
    """Floating-point operations of one SGD step on a batch of ``batch`` samples.

    A multiply-add counts 2. Forward ``z = x W + b``: ``2 B n_in n_out`` per layer. Backward:
    ``dW = x^T delta`` the same again, and ``dx = delta W^T`` for every layer but the first (no
    gradient w.r.t. the data). Update ``w <- w - lr g``: 2 per parameter. Bias additions,
    activations and the loss are left out (they are ``O(B * width)``, not ``O(B * width^2)``).

    Example: 2-16-16-1 at batch 1: ``sum n_in n_out = 32 + 256 + 16 = 304``; forward 608,
    dW 608, dx ``2 (256 + 16) = 544``, update ``2 * 337 = 674``; total 2434.
    """
    mults = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return 2 * batch * sum(mults) * 2 + 2 * batch * sum(mults[1:]) + 2 * n_params(sizes)


def train_flops_per_sample(sizes, batch):
    """:func:`train_step_flops` divided by the batch size."""
    return train_step_flops(sizes, batch) / batch


def train_step_bytes(sizes, batch):
    """A simple model of the memory traffic (bytes, float32) of one SGD step.

    Parameters: read in the forward pass, read again for ``dx``, gradient written, and the
    update reads parameters and gradient and writes parameters: 6 accesses per parameter.
    Activations: ``z`` and ``a`` written forward, read and a delta written backward: about 5
    accesses per unit per sample; inputs: gathered (read + write), read forward and for ``dW``
    of the first layer: 4 per feature per sample. Used only for the roofline-style figure's
    arithmetic intensity, as ``train_step_flops / train_step_bytes``.
    """
    units = sum(sizes[1:])
    return 4 * (6 * n_params(sizes) + batch * (4 * sizes[0] + 5 * units))


def peak_rss_mb():
    """Peak resident set size of this process in MiB (``getrusage``; KiB on Linux)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def epoch_order(n, seed):
    """The visiting order of an epoch: what ``dlbasics.models.train(..., seed=seed)`` uses in epoch
    1."""
    return np.random.default_rng(seed).permutation(n).astype(np.int64)


def _pow2_batches(n, batch, n_max, up=False):
    """``batch * 2**k`` nearest to ``n`` in log scale (``up``: the next one at or above),
    clipped to ``[batch, n_max]``; epoch sizes from a small set limit recompiles of
    shape-specialising frameworks (a JAX ``lax.scan`` epoch compiles per length)."""
    steps = max(1.0, n / batch)
    k = math.ceil(math.log2(steps) - 1e-9) if up else round(math.log2(steps))
    return int(min(n_max, batch * 2 ** max(k, 0)))


def measure(epoch, batch, n_max, target_s, repeats, first_steps=4, min_steps=2,
            compiles_per_size=False):
    """Run the protocol of the benchmark on one configuration and summarise it.

    ``epoch(n, seed, want_loss)`` trains one epoch on the first ``n`` rows of the data in the
    order :func:`epoch_order` ``(n, seed)`` and returns ``(seconds, mean_loss_or_None)``; it is
    given the same seeds in the same sequence in every framework, so the batches are the same.

    1. First call on ``first_steps`` batches from the shared initialisation (compilation, lazy
       set-up); its time and its mean loss are kept (the loss is a cross-framework check).
    2. Calibration: epochs of growing size until one takes at least ``target_s / 4``; the
       epoch size ``n`` is then the ``batch * 2**k`` (at most ``n_max``) whose epoch takes
       closest to ``target_s``. With ``compiles_per_size`` (a framework that compiles once
       per epoch length, as JAX's ``lax.scan`` epoch does) each calibration size runs once
       untimed first, so that compilation does not pass for a slow epoch (which made such
       epochs a few steps short).
    3. A warm-up epoch at that size (excluded; skipped when calibration ended at it), then
       ``repeats`` timed epochs (more, up to 4x, when even ``n_max`` rows take less than
       ``target_s``). Throughput = ``n / median``.
    """
    seed = 0
    n_first = min(n_max, batch * first_steps)
    t0 = time.perf_counter()
    first_s, first_loss = epoch(n_first, seed, True)
    first_wall = time.perf_counter() - t0
    seed += 1
    calib = []
    n_c = n_first
    t_c, _ = epoch(n_c, seed, False)
    seed += 1
    calib.append([n_c, t_c])
    while t_c < target_s / 4 and n_c < n_max:
        grow = min(16.0, max(2.0, 0.5 * target_s / max(t_c, 1e-6)))
        n_c = _pow2_batches(n_c * grow, batch, n_max, up=True)
        if compiles_per_size:
            epoch(n_c, seed, False)  # the same seed again below: every framework's sequence
        t_c, _ = epoch(n_c, seed, False)
        seed += 1
        calib.append([n_c, t_c])
    n = _pow2_batches(target_s * n_c / max(t_c, 1e-9), batch, n_max)
    n = min(n_max, max(n, batch * min_steps))
    if n != n_c:
        epoch(n, seed, False)
        seed += 1
    t_est = t_c * n / n_c
    reps = int(min(4 * repeats, max(repeats, math.ceil(repeats * target_s / max(t_est, 1e-9)))))
    times = []
    for _ in range(reps):
        s, _ = epoch(n, seed, False)
        seed += 1
        times.append(s)
    med = statistics.median(times)
    q = np.percentile(times, [25, 75]).tolist() if len(times) > 1 else [med, med]
    return {
        "batch": batch,
        "n": n,
        "epochs": len(times),
        "times": times,
        "median_s": med,
        "iqr_s": [q[0], q[1]],
        "samples_per_s": n / med,
        "first_n": n_first,
        "first_s": first_s,
        "first_wall_s": first_wall,
        "first_loss": None if first_loss is None else float(first_loss),
        "calibration": calib,
    }


def sync_print(*args):
    """Print to stderr at once (the worker's log)."""
    print(*args, file=sys.stderr, flush=True)
