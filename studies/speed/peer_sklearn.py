"""scikit-learn in a worker process: ``MLPClassifier(solver="sgd", alpha=0, momentum=0)``.

Both benchmark networks are classifiers: 784-256-256-10 is softmax + cross-entropy, and
2-16-16-1 with 0/1 targets is exactly scikit-learn's binary case (one logistic output, binary
log-loss). ``MLPRegressor`` would train an identity output with squared loss, a different
network, so it is not used. One epoch is one ``partial_fit`` call on the data in the shared
order (``shuffle=False``; the gather ``X[order]`` is timed with the epoch, as scikit-learn's own
shuffling gathers each batch). The shared initialisation is copied into ``coefs_`` and
``intercepts_`` (in place) after a first ``partial_fit`` on one batch has created them.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from .common import NETS, epoch_order, glorot_init


def version():
    import sklearn

    return {"version": sklearn.__version__}


class Single:
    def __init__(self, net, X, y):
        cfg = NETS[net]
        self.net = net
        self.cfg = cfg
        self.init = glorot_init(cfg["sizes"], 0)
        self.X = X
        self.y = y.astype(np.int64)
        self.classes = np.arange(max(cfg["sizes"][-1], 2))
        self.clf = None
        self.batch = None

    def _make(self, batch):
        from sklearn.neural_network import MLPClassifier

        cfg = self.cfg
        self.clf = MLPClassifier(
            hidden_layer_sizes=tuple(cfg["sizes"][1:-1]), activation=cfg["activation"],
            solver="sgd", alpha=0.0, batch_size=batch, learning_rate="constant",
            learning_rate_init=cfg["lr"], momentum=0.0, nesterovs_momentum=False,
            shuffle=False, random_state=0, max_iter=1, tol=0.0, early_stopping=False,
        )
        self.clf.partial_fit(self.X[:batch], self.y[:batch], classes=self.classes)
        self.batch = batch

    def reset(self):
        self.clf = None

    def epoch(self, batch, n, seed, want_loss):
        if self.clf is None or self.batch != batch:
            self._make(batch)
            for (W, b), cw, cb in zip(self.init, self.clf.coefs_, self.clf.intercepts_,
                                      strict=True):
                if cw.dtype != np.float32:
                    raise AssertionError(f"scikit-learn trains in {cw.dtype}, not float32")
                cw[...] = W
                cb[...] = b
        t0 = time.perf_counter()
        order = epoch_order(n, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf.partial_fit(self.X[order], self.y[order])
        seconds = time.perf_counter() - t0
        return seconds, (float(self.clf.loss_) if want_loss else None)
