"""Compile every GPU kernel to PTX as a real GPU would, without a GPU.

Run as ``python -m tests.gpu.compile_all [--float64]`` (without ``NUMBA_ENABLE_CUDASIM``): it
switches :mod:`dlbasics.kernels.gpu_config` to compile-only mode and drives every public GPU
function, the ``DeviceMLP`` hooks and the population kernel with small host arrays, so each kernel
is type-checked and compiled by numba-cuda and libNVVM for the argument types it really gets
(results are not computed). Prints one line per case and exits non-zero if any failed.
"""

import sys
import time
import traceback

import numpy as np


def cases(dtype):
    from dlbasics.kernels.gpu_activations import (
        gpu_activate,
        gpu_activation_backward,
        gpu_derivative,
    )
    from dlbasics.kernels.gpu_dense import gpu_dense_backward, gpu_dense_forward
    from dlbasics.kernels.gpu_dropout import (
        gpu_dropout_apply,
        gpu_dropout_forward,
        gpu_dropout_mask,
        gpu_scale_weights,
    )
    from dlbasics.kernels.gpu_losses import gpu_loss_and_gradient
    from dlbasics.kernels.gpu_optimizers import gpu_adam_update, gpu_rmsprop_update, gpu_sgd_update
    from dlbasics.kernels.gpu_perceptron import gpu_perceptron_epoch, gpu_perceptron_predict

    z = np.zeros((4, 5), dtype)
    W = np.zeros((5, 3), dtype)
    p = np.zeros(10, dtype)
    labels = np.array([0, 1, 2, 1])
    return {
        "activate": lambda: gpu_activate("tanh", z),
        "activate softmax": lambda: gpu_activate("softmax", z),
        "derivative": lambda: gpu_derivative("relu", z),
        "activation backward": lambda: gpu_activation_backward("sigmoid", z, z, z),
        "softmax backward": lambda: gpu_activation_backward("softmax", z, z, z),
        "dense forward": lambda: gpu_dense_forward(z, W, np.zeros(3, dtype), "relu"),
        "dense backward": lambda: gpu_dense_backward(z, W, np.zeros((4, 3), dtype)),
        "loss dense": lambda: gpu_loss_and_gradient("squared", z, z),
        "loss labels": lambda: gpu_loss_and_gradient("cross_entropy_logits", labels,
                                                     np.zeros((4, 3), dtype)),
        "dropout mask": lambda: gpu_dropout_mask((4, 5), 0.5, 1, dtype=dtype),
        "dropout forward": lambda: gpu_dropout_forward(z, 0.5, 1),
        "dropout apply": lambda: gpu_dropout_apply(z, z, 0.5),
        "scale weights": lambda: gpu_scale_weights(W, 0.5),
        "sgd": lambda: gpu_sgd_update(p, p.copy(), 0.1),
        "rmsprop": lambda: gpu_rmsprop_update(p, p.copy(), p.copy(), p.copy(), centered=True),
        "adam": lambda: gpu_adam_update(p, p.copy(), p.copy(), p.copy(), 1),
        "perceptron epoch": lambda: gpu_perceptron_epoch(z, np.array([1, -1, 1, -1]),
                                                         np.zeros(5, dtype),
                                                         np.zeros(1, dtype)),
        "perceptron predict": lambda: gpu_perceptron_predict(z, np.zeros(5, dtype),
                                                             np.zeros(1, dtype)),
        "mlp": lambda: mlp(dtype),
    }


def mlp(dtype):
    """Every DeviceMLP hook (train() itself would divide by the zeros of compile-only mode)."""
    from dlbasics.models import MLP, Adam, RMSProp

    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3)).astype(dtype)
    y = rng.integers(0, 2, size=12)
    for kw, targets, opt in [
        (dict(output="softmax", loss="cross_entropy", keep_prob=0.8), y, Adam(0.01)),
        (dict(output="tanh", loss="squared", keep_prob=0.9, dropout="inverted"),
         y.astype(dtype), RMSProp(0.01)),
    ]:
        m = MLP([3, 4, 2 if targets is y else 1], dtype=dtype, backend="cuda", **kw)
        Y, lab, dense = m.check_y(targets, 12)
        dev = m._device
        state = dev.adopt_state(opt, opt.init(m.params))
        state = dev.epoch(X, Y, lab, dense, np.arange(12), 4, opt, state, 0.01)[0]
        dev.release_state(opt, state)
        dev.evaluate(X, Y, lab, dense)
        m.forward(X)
        m.gradient(X, targets)


def population():
    from dlbasics.kernels.gpu_population import gpu_population_epoch
    from dlbasics.models import MLP
    from dlbasics.models.mlp import Workspace

    model = MLP([3, 4, 1], output="sigmoid", loss="binary_cross_entropy", keep_prob=0.8)
    K, batch, n = 3, 4, 12
    w = Workspace(model.sizes, model.keep, batch, np.float32)
    P = np.stack([model.params] * K)
    S = [np.zeros_like(P) for _ in range(3)]
    X = np.zeros((n, 3), np.float32)
    Y = np.zeros((n, 1), np.float32)
    gpu_population_epoch(
        P, np.zeros_like(P), model.layout, model.codes, model.keep, False, model.slope, X, Y,
        np.zeros(1, np.int64), np.tile(np.arange(n), (K, 1)), batch,
        np.zeros((K, w.ws.size), np.float32), w.offs, np.zeros((K, batch), np.int64),
        model.loss_code, model.fused, True, model.eps, np.arange(K), np.array([0, 5, 4]),
        np.zeros((K, 7), np.float32), S[0], S[1], S[2], np.zeros(K, np.int64),
        np.ones(K, np.bool_), np.zeros((K, 4)))


def main(argv):
    from dlbasics.kernels import gpu_config as g

    g.enable_compile_only((9, 0))
    todo = [(f"float32 {k}", f) for k, f in cases(np.float32).items()]
    todo.append(("float32 population", population))
    if "--float64" in argv:
        todo += [(f"float64 {k}", f) for k, f in cases(np.float64).items()
                 if k in ("dense forward", "dense backward", "loss labels", "adam", "mlp")]
    failed = 0
    t0 = time.perf_counter()
    for name, fn in todo:
        t = time.perf_counter()
        try:
            fn()
            print(f"ok   {name} ({time.perf_counter() - t:.1f}s)", flush=True)
        except Exception:  # noqa: BLE001 - report every failing case
            failed += 1
            print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
    print(f"{len(g.compiled_kernels())} kernel specializations compiled to PTX in "
          f"{time.perf_counter() - t0:.1f}s; {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
