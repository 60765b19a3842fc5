"""JAX (CPU, XLA) in a worker process.

``jax``: the usual loop, one ``jax.jit``-compiled train step (gather, ``value_and_grad``, SGD
update, parameters donated) called from Python per mini-batch. ``jax_scan`` (measured beside it,
not one of the issue's peers): a whole epoch compiled into one XLA program with ``lax.scan``
over the mini-batches, the closest JAX analogue of our fused epoch. Populations: the train step
``jax.vmap``-ed over stacked parameters of K networks, then jitted. Every epoch ends with
``block_until_ready`` (JAX dispatches asynchronously).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from .common import epoch_order, glorot_init, net_config  # noqa: E402


def version():
    import jax
    import jaxlib

    return {"version": jax.__version__, "jaxlib": jaxlib.__version__,
            "devices": [str(d) for d in jax.devices()]}


def _functions(net):
    """``loss(params, xb, yb)`` and ``step(params, X, y, idx) -> (params, loss)`` of ``net``."""
    import jax
    import jax.numpy as jnp

    cfg = net_config(net)
    act = jax.nn.relu if cfg["activation"] == "relu" else jnp.tanh
    lr = cfg["lr"]
    multiclass = cfg["sizes"][-1] > 1

    def loss(params, xb, yb):
        h = xb
        for l, (W, b) in enumerate(params):
            h = h @ W + b
            if l < len(params) - 1:
                h = act(h)
        if multiclass:
            logp = jax.nn.log_softmax(h)
            return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))
        z = h[:, 0]
        return jnp.mean(jnp.maximum(z, 0) - z * yb + jnp.log1p(jnp.exp(-jnp.abs(z))))

    def step(params, X, y, idx):
        value, grads = jax.value_and_grad(loss)(params, X[idx], y[idx])
        params = jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
        return params, value

    return loss, step


def _device_params(layers):
    import jax.numpy as jnp

    return [(jnp.asarray(W), jnp.asarray(b)) for W, b in layers]


class Single:
    """One network; ``scan=True`` compiles whole epochs with ``lax.scan``."""

    def __init__(self, net, X, y, scan=False):
        import jax
        import jax.numpy as jnp

        self.init = glorot_init(net_config(net)["sizes"], 0)
        _, step = _functions(net)
        self.scan = scan
        self.X = jnp.asarray(X)
        self.y = jnp.asarray(y.astype(np.int32) if y.dtype.kind == "i" else y)
        if scan:

            def epoch_fn(params, X, y, orders):
                params, losses = jax.lax.scan(lambda p, idx: step(p, X, y, idx), params, orders)
                return params, jnp.mean(losses)

            self.fn = jax.jit(epoch_fn, donate_argnums=0)
        else:
            self.fn = jax.jit(step, donate_argnums=0)
        self.params = None

    def reset(self):
        self.params = _device_params(self.init)

    def epoch(self, batch, n, seed, want_loss):
        import jax

        t0 = time.perf_counter()
        orders = epoch_order(n, seed).astype(np.int32).reshape(n // batch, batch)
        params, X, y, fn = self.params, self.X, self.y, self.fn
        if self.scan:
            params, total = fn(params, X, y, orders)
            total = total * (n // batch) if want_loss else None
        else:
            total = [] if want_loss else None
            for idx in orders:
                params, value = fn(params, X, y, idx)
                if want_loss:
                    total.append(value)
        jax.block_until_ready(params)
        seconds = time.perf_counter() - t0
        self.params = params
        if not want_loss:
            return seconds, None
        return seconds, float(np.sum(np.asarray(total)) / (n // batch))


class Population:
    """K networks (seeds 0..K-1): the train step vmapped over stacked parameters, jitted."""

    def __init__(self, net, K, X, y):
        import jax
        import jax.numpy as jnp

        sizes = net_config(net)["sizes"]
        layers = [glorot_init(sizes, k) for k in range(K)]
        self.init = [(np.stack([lay[l][0] for lay in layers]),
                      np.stack([lay[l][1] for lay in layers])) for l in range(len(sizes) - 1)]
        _, step = _functions(net)
        self.fn = jax.jit(jax.vmap(step, in_axes=(0, None, None, None)), donate_argnums=0)
        self.X = jnp.asarray(X)
        self.y = jnp.asarray(y.astype(np.int32) if y.dtype.kind == "i" else y)
        self.params = None

    def epoch(self, batch, n, seed, want_loss):
        import jax

        if want_loss or self.params is None:
            self.params = _device_params(self.init)
        t0 = time.perf_counter()
        orders = epoch_order(n, seed).astype(np.int32).reshape(n // batch, batch)
        params, X, y, fn = self.params, self.X, self.y, self.fn
        total = [] if want_loss else None
        for idx in orders:
            params, value = fn(params, X, y, idx)
            if want_loss:
                total.append(value)
        jax.block_until_ready(params)
        seconds = time.perf_counter() - t0
        self.params = params
        if not want_loss:
            return seconds, None
        return seconds, float(np.mean(np.asarray(total)))
