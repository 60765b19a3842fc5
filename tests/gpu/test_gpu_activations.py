"""GPU activations against tests/naive.py and against their CPU twins."""

import numpy as np
import pytest

from dlbasics.kernels import activations as A
from dlbasics.kernels.gpu_activations import gpu_activate, gpu_activation_backward, gpu_derivative
from tests import naive
from tests.gpu.conftest import assert_close, host, naive_tol

DTYPES = [np.float32, np.float64]
NAMES = list(A.ACTIVATIONS)


def _z(rng, dtype, shape=(5, 7)):
    z = rng.normal(scale=3.0, size=shape).astype(dtype)
    z.flat[0] = 0.0  # the kink of relu/step/sign
    return z


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_activate_matches_naive_and_cpu(name, dtype, rng):
    z = _z(rng, dtype)
    got = gpu_activate(name, z)
    assert isinstance(got, np.ndarray) and got.dtype == dtype and got.shape == z.shape
    assert_close(got, A.activate(name, z))
    t = naive_tol(dtype)
    np.testing.assert_allclose(got, naive.activate(name, z), rtol=t, atol=t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", A.ELEMENTWISE)
def test_derivative_matches_naive_and_cpu(name, dtype, rng):
    z = _z(rng, dtype)
    got = gpu_derivative(name, z)
    assert_close(got, A.derivative(name, z))
    t = naive_tol(dtype)
    np.testing.assert_allclose(got, naive.derivative(name, z), rtol=t, atol=t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_naive_and_cpu(name, dtype, rng):
    z = _z(rng, dtype)
    a = A.activate(name, z)
    delta = rng.normal(size=z.shape).astype(dtype)
    got = gpu_activation_backward(name, z, a, delta)
    assert_close(got, A.activation_backward(name, z, a, delta))
    t = naive_tol(dtype)
    np.testing.assert_allclose(got, naive.activation_backward(name, z, delta), rtol=t, atol=t)


def test_device_arrays_in_device_arrays_out(rng):
    from numba import cuda

    z = _z(rng, np.float32)
    dz = cuda.to_device(z)
    got = gpu_activate("softmax", dz)
    assert not isinstance(got, np.ndarray)
    assert_close(host(got), A.activate("softmax", z))
    out = cuda.device_array_like(z)
    res = gpu_activation_backward("tanh", dz, gpu_activate("tanh", dz), dz, out=out)
    assert res is out
    assert_close(host(out), A.activation_backward("tanh", z, A.activate("tanh", z), z))


def test_out_buffer_one_dimensional_and_in_place(rng):
    z = _z(rng, np.float64, shape=(9,))
    want = A.activate("softmax", z)
    out = np.empty_like(z)
    assert gpu_activate("softmax", z, out=out) is out
    assert_close(out, want)
    w = z.copy()
    gpu_activate("tanh", w, out=w)
    assert_close(w, np.tanh(z))


def test_errors_before_launch(rng):
    z = _z(rng, np.float32)
    with pytest.raises(ValueError, match="activation"):
        gpu_activate("swish", z)
    with pytest.raises(TypeError, match="dtype"):
        gpu_activate("tanh", z.astype(np.int32))
    with pytest.raises(ValueError, match="softmax"):
        gpu_derivative("softmax", z)
    with pytest.raises(ValueError, match="shape"):
        gpu_activation_backward("tanh", z, z[:2], z)
    with pytest.raises(ValueError, match="shape"):
        gpu_activate("tanh", z, out=np.empty((2, 2), np.float32))


# ---------------------------------------------------------------------------------------------
# the registries through the cuda backend of MLP
# ---------------------------------------------------------------------------------------------

HIDDEN = [name for name in A.ACTIVATIONS if name != "softmax"]


def _run_pair(rng, activation, opt):
    from dlbasics.models import MLP, train

    X = rng.normal(size=(12, 3))
    y = np.sin(X[:, :2])
    models = [MLP([3, 5, 2], activation=activation, output="tanh", loss="squared", backend=b,
                  dtype=np.float64, seed=2) for b in ("cpu", "cuda")]
    runs = [train(m, X, y, opt, batch_size=5, epochs=2, metrics="full", seed=1) for m in models]
    assert runs[1].path == "device"
    return models, runs


@pytest.mark.parametrize("activation", HIDDEN)
def test_every_hidden_activation_trains_on_the_cuda_backend_as_on_the_cpu(activation, rng):
    """Each registry activation as the hidden one (and tanh output through squared loss), two
    epochs of mini-batch SGD: the device run equals the CPU's (float64; bitwise in the
    simulator, 1e-10 on a GPU)."""
    from dlbasics.models import SGD

    (m_cpu, m_gpu), (h_cpu, h_gpu) = _run_pair(rng, activation, SGD(0.1))
    assert_close(m_gpu.params, m_cpu.params, rtol=1e-10)
    np.testing.assert_allclose(h_gpu.train_loss, h_cpu.train_loss, rtol=1e-10)


@pytest.mark.parametrize("name", ["nadam", "radam", "adam"])
def test_step_count_optimizers_train_on_the_cuda_backend_as_on_the_cpu(name, rng):
    """The optimizers whose update depends on the step count (NAdam's momentum product, RAdam's
    rectification from step 6) over 6 updates on the device, against the CPU."""
    from dlbasics.models.optimizers import OPTIMIZERS

    opt = OPTIMIZERS[name](lr=0.02, b2=0.9)
    (m_cpu, m_gpu), (h_cpu, h_gpu) = _run_pair(rng, "gelu", opt)
    assert h_gpu.updates == h_cpu.updates == [3, 6]  # updates done after each epoch
    assert_close(m_gpu.params, m_cpu.params, rtol=1e-10)
