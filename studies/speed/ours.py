"""Our backends in a worker process: single networks through :func:`dlbasics.models.train`, and
populations through :func:`dlbasics.models.train_population` or one network after another.

Times are the epoch times that the training loop records itself (``History.time``): the
compiled epoch (or, for the NumPy backend, the Python loop over mini-batches), without the
argument checks that ``train`` does once per call (a user training for many epochs pays them
once). The wall time of each whole call is kept beside it.
"""

from __future__ import annotations

import time

import numpy as np

from .common import flat_params, glorot_init, net_config


def _mlp(net, backend, seed):
    from ...models import MLP

    cfg = net_config(net)
    return MLP(cfg["sizes"], activation=cfg["activation"], output=cfg["output"],
               loss=cfg["loss"], dtype=np.float32, backend=backend, seed=seed)


class Single:
    """One network of ``net`` on ``backend`` ("cpu", "numpy" or "cuda")."""

    def __init__(self, net, backend, X, y):
        from ...models import SGD

        self.model = _mlp(net, backend, 0)
        self.init = flat_params(glorot_init(net_config(net)["sizes"], 0))
        if not np.array_equal(self.model.params, self.init):
            raise AssertionError("dlbasics.studies.speed.common.glorot_init differs from "
                                 "MLP's init")
        self.opt = SGD(net_config(net)["lr"])
        self.X, self.y = X, y
        self.walls = []

    def reset(self):
        self.model.set_params_vector(self.init)

    def epoch(self, batch, n, seed, want_loss):
        from ...models import train

        t0 = time.perf_counter()
        hist = train(self.model, self.X[:n], self.y[:n], self.opt, batch_size=batch, epochs=1,
                     seed=seed)
        self.walls.append(time.perf_counter() - t0)
        return hist.time[0], hist.train_loss[0]


class Population:
    """K networks of ``net`` (seeds 0..K-1) trained at once by
    :func:`dlbasics.models.train_population`."""

    def __init__(self, net, K, X, y):
        from ...models import SGD

        self.template = _mlp(net, "cpu", 0)
        self.K = K
        self.opt = SGD(net_config(net)["lr"])
        self.X, self.y = X, y

    def epoch(self, batch, n, seed, want_loss):
        from ...models import train_population

        hists, _ = train_population(self.template, self.X[:n], self.y[:n], self.opt,
                                    seeds=list(range(self.K)), batch_size=batch, epochs=1,
                                    shuffle_seeds=[seed] * self.K)
        # Each history holds the epoch time divided among the networks active in it.
        seconds = sum(h.time[0] for h in hists)
        return seconds, float(np.mean([h.train_loss[0] for h in hists]))


class Sequential:
    """The same K networks trained one after another with the single-network fused epoch."""

    def __init__(self, net, K, X, y):
        from ...models import SGD

        self.models = [_mlp(net, "cpu", k) for k in range(K)]
        self.inits = [m.params.copy() for m in self.models]
        self.opt = SGD(net_config(net)["lr"])
        self.X, self.y = X, y

    def epoch(self, batch, n, seed, want_loss):
        from ...models import train

        seconds = 0.0
        losses = []
        for m, p0 in zip(self.models, self.inits, strict=True):
            if want_loss:
                m.set_params_vector(p0)
            hist = train(m, self.X[:n], self.y[:n], self.opt, batch_size=batch, epochs=1,
                         seed=seed)
            seconds += hist.time[0]
            losses.append(hist.train_loss[0])
        return seconds, float(np.mean(losses))


def cuda_available():
    """``(True, name)`` when numba.cuda sees a GPU, else ``(False, reason)``."""
    try:
        from numba import cuda

        if not cuda.is_available():
            return False, "numba.cuda.is_available() is False (no GPU or driver)"
        name = cuda.get_current_device().name
        return True, name.decode() if isinstance(name, bytes) else str(name)
    except Exception as exc:  # noqa: BLE001 - any failure means no usable GPU
        return False, f"numba.cuda unusable: {exc}"
