"""Tiny GPU cases for NVIDIA's compute-sanitizer (racecheck, memcheck) on a real GPU.

Run as ``compute-sanitizer --tool racecheck python -m tests.gpu.sanitize_cases`` (what
``scripts/gpu_check.sh`` does): a dense forward and backward pass (below and from
``BLAS_MIN_ROWS`` rows: the cuBLAS route where CuPy is installed), the loss kernels, and one
training epoch of two small MLPs (gather, dropout, forward, loss, backward, Adam update,
evaluation) through each device epoch (one block, cooperative grid, per layer), all under the
shipped launch geometry and under the tests' small one (several blocks, every grid-stride loop
turning). Every result is checked against NumPy, so the run also
fails on a wrong value; the sanitizer reports hazards and out-of-bounds accesses on its own.
"""

import sys

import numpy as np


def run_cases():
    from dlbasics.kernels import config, gpu_small
    from dlbasics.kernels import losses as L
    from dlbasics.kernels.gpu_dense import gpu_dense_backward, gpu_dense_forward
    from dlbasics.kernels.gpu_losses import gpu_loss_and_gradient
    from dlbasics.models import MLP, Adam, train

    rng = np.random.default_rng(0)
    shipped = {k: getattr(config, k) for k in ("THREADS_PER_BLOCK", "TILE", "MAX_BLOCKS")}
    small = {"THREADS_PER_BLOCK": 8, "TILE": 4, "MAX_BLOCKS": 3}
    for name, geometry in (("shipped", shipped), ("small", small)):
        for key, value in geometry.items():
            setattr(config, key, value)
        for rows in (5, 9):
            x = rng.normal(size=(rows, 6)).astype(np.float32)
            W = rng.normal(size=(6, 5)).astype(np.float32)
            b = rng.normal(size=5).astype(np.float32)
            d = rng.normal(size=(rows, 5)).astype(np.float32)
            z, a = gpu_dense_forward(x, W, b, "relu")
            np.testing.assert_allclose(z, x @ W + b, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(a, np.maximum(x @ W + b, 0), rtol=1e-4, atol=1e-4)
            dW, db, dx = gpu_dense_backward(x, W, d)
            np.testing.assert_allclose(dW, x.T @ d, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(db, d.sum(axis=0), rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(dx, d @ W.T, rtol=1e-4, atol=1e-4)
            print(f"ok dense {name} rows={rows}", flush=True)
        p = rng.normal(size=(7, 4)).astype(np.float32)
        y = rng.integers(0, 4, size=7)
        value, grad = gpu_loss_and_gradient("cross_entropy_logits", y, p)
        cv, cg = L.loss_and_gradient("cross_entropy_logits", y, p)
        assert abs(value - cv) <= 1e-5 * abs(cv), (value, cv)
        np.testing.assert_allclose(grad, cg, rtol=1e-4, atol=1e-6)
        print(f"ok loss {name}", flush=True)
        X = rng.normal(size=(20, 3)).astype(np.float32)
        yl = rng.integers(0, 2, size=20)
        for path, width, grid in (("one block", 64, True), ("grid", 0, True),
                                  ("per layer", 0, False)):
            gpu_small.SMALL_MAX_WIDTH, gpu_small.GRID_ENABLED = width, grid
            for sizes, kw, batch in (([3, 4, 2], {"keep_prob": 0.8}, 4), ([3, 4, 4, 2], {}, 9)):
                m = MLP(sizes, output="softmax", loss="cross_entropy", backend="cuda", seed=1,
                        **kw)
                c = MLP(sizes, output="softmax", loss="cross_entropy", seed=1, **kw)
                h = train(m, X, yl, Adam(0.01), batch_size=batch, epochs=1, metrics="full")
                hc = train(c, X, yl, Adam(0.01), batch_size=batch, epochs=1, metrics="full")
                np.testing.assert_allclose(h.train_loss, hc.train_loss, rtol=1e-4)
                np.testing.assert_allclose(m.params, c.params, rtol=1e-4, atol=1e-5)
                print(f"ok epoch {name} {path} {sizes} batch {batch}", flush=True)
        gpu_small.SMALL_MAX_WIDTH, gpu_small.GRID_ENABLED = 64, True
    for key, value in shipped.items():
        setattr(config, key, value)


def main():
    from dlbasics.kernels import gpu_config as g

    g.require_cuda()
    print("device:", g.device_name(), flush=True)
    run_cases()
    print("all sanitizer cases ran", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
