import numpy as np
import pytest
from numpy.testing import assert_allclose

from dlbasics.models import MLP
from tests import naive

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus"]
HEADS = [("identity", "squared"), ("sigmoid", "binary_cross_entropy"),
         ("softmax", "cross_entropy"), ("sigmoid", "squared"), ("tanh", "squared")]


def _data(model, n, rng):
    X = rng.normal(size=(n, model.sizes[0]))
    k = model.n_outputs
    if model.loss_name == "cross_entropy":
        y = rng.integers(0, k, n)
    elif model.loss_name == "binary_cross_entropy":
        y = (rng.random((n, k)) < 0.5).astype(np.float64)
    else:
        y = rng.normal(size=(n, k))
    return X, y


def _central_differences(model, X, y, step, h=1e-6):
    """Numerical gradient of the training loss (fixed dropout mask: fixed step)."""
    base = model.params.copy()
    fd = np.empty_like(base)
    for i in range(base.size):
        model.params[i] = base[i] + h
        up = model.gradient(X, y, step=step)[0]
        model.params[i] = base[i] - h
        down = model.gradient(X, y, step=step)[0]
        model.params[i] = base[i]
        fd[i] = (up - down) / (2 * h)
    return fd


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_gradient_central_differences_depths(depth, backend, rng):
    sizes = [3] + [4] * (depth - 1) + [2]
    model = MLP(sizes, activation="tanh", output="softmax", loss="cross_entropy",
                dtype=np.float64, backend=backend, seed=depth)
    X, y = _data(model, 5, rng)
    _, g = model.gradient(X, y)
    assert_allclose(g, _central_differences(model, X, y, 0), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("keep", [None, 0.6, [0.7, 0.5, 0.8]])
@pytest.mark.parametrize("output, loss", HEADS)
@pytest.mark.parametrize("activation", HIDDEN)
def test_gradient_central_differences_all_heads(activation, output, loss, keep, rng):
    model = MLP([3, 5, 4, 2], activation=activation, output=output, loss=loss, keep_prob=keep,
                dtype=np.float64, seed=7)
    # nonzero biases: a row whose inputs are all dropped would sit exactly on relu's kink
    model.params += rng.normal(size=model.n_params) * 0.1
    X, y = _data(model, 6, rng)
    _, g = model.gradient(X, y, step=11)
    fd = _central_differences(model, X, y, 11)
    assert_allclose(g, fd, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("keep, dropout", [(None, "scale"), (0.7, "scale"), (0.7, "inverted")])
@pytest.mark.parametrize("output, loss", HEADS[:3])
def test_cpu_and_numpy_backends_agree(output, loss, keep, dropout, rng):
    kw = dict(activation="relu", output=output, loss=loss, keep_prob=keep, dropout=dropout,
              dtype=np.float64, seed=3)
    a = MLP([4, 8, 3], backend="cpu", **kw)
    b = MLP([4, 8, 3], backend="numpy", **kw)
    X, y = _data(a, 9, rng)
    va, ga = a.gradient(X, y, step=5)
    vb, gb = b.gradient(X, y, step=5)
    assert_allclose(va, vb, rtol=1e-12)
    assert_allclose(ga, gb, rtol=1e-10, atol=1e-14)
    assert_allclose(a.forward(X), b.forward(X), rtol=1e-12)
    assert_allclose(a.loss(X, y), b.loss(X, y), rtol=1e-12)


def test_forward_matches_naive_layer_by_layer(rng):
    model = MLP([3, 6, 5, 4], activation=["relu", "tanh"], output="softmax",
                loss="cross_entropy", dtype=np.float64)
    X = rng.normal(size=(7, 3))
    h = X
    for W, b, act in zip(model.weights, model.biases, ["relu", "tanh", "softmax"], strict=True):
        h = naive.dense_forward(h, W, b, act)[1]
    assert_allclose(model.forward(X), h, rtol=1e-12)


def test_params_layout_and_views():
    model = MLP([2, 3, 1], dtype=np.float64)
    assert model.n_params == 2 * 3 + 3 + 3 * 1 + 1
    assert model.params.flags.c_contiguous
    assert model.weights[0].shape == (2, 3) and model.biases[1].shape == (1,)
    model.weights[1][2, 0] = 42.0
    assert model.params[2 * 3 + 3 + 2] == 42.0  # W1 follows W0 and b0, row-major
    for W, b in zip(model.weights, model.biases, strict=True):
        assert np.shares_memory(W, model.params) and np.shares_memory(b, model.params)
    _, g = model.gradient(np.ones((1, 2)), np.ones(1))
    assert g.shape == model.params.shape


def test_notes_gradient_identity_sigmoid_bce(rng):
    """Second layer of the notes' binary network: dL/dw_j1 = (y* - y) z_j."""
    model = MLP([2, 2, 1], activation="sigmoid", output="sigmoid", loss="binary_cross_entropy",
                dtype=np.float64)
    model.biases[0][:] = 0.0
    x = rng.normal(size=(1, 2))
    y = np.array([1.0])
    z = naive.activate("sigmoid", x @ model.weights[0] + model.biases[0])
    ystar = model.forward(x)[0, 0]
    _, g = model.gradient(x, y)
    w2 = slice(model.layout[1, 2], model.layout[1, 2] + 2)
    assert_allclose(g[w2], (ystar - 1.0) * z[0], rtol=1e-12)


def test_one_sgd_step_worked_by_hand():
    """A 1-1-1 identity network, squared loss, one sample: every number written out.

    x = 2, y = 1, W0 = 0.5, b0 = 0, W1 = 3, b1 = 1
    forward:  h = 0.5 * 2 + 0 = 1;  out = 3 * 1 + 1 = 4;  L = 1/2 (4 - 1)^2 = 4.5
    backward: d_out = 4 - 1 = 3;  dW1 = 3 * h = 3;  db1 = 3
              d_h = 3 * W1 = 9;   dW0 = 9 * x = 18; db0 = 9
    """
    model = MLP([1, 1, 1], activation="identity", dtype=np.float64)
    model.set_params_vector(np.array([0.5, 0.0, 3.0, 1.0]))
    value, g = model.gradient(np.array([[2.0]]), np.array([1.0]))
    assert value == 4.5
    assert_allclose(g, [18.0, 9.0, 3.0, 3.0])


def test_predict_and_proba(rng):
    clf = MLP([2, 4, 3], output="softmax", loss="cross_entropy", dtype=np.float64)
    X = rng.normal(size=(5, 2))
    p = clf.predict_proba(X)
    assert_allclose(p.sum(axis=1), 1.0)
    assert np.array_equal(clf.predict(X), p.argmax(axis=1))
    binary = MLP([2, 4, 1], output="sigmoid", loss="binary_cross_entropy")
    pb = binary.predict_proba(X)
    assert pb.shape == (5, 2)
    assert np.array_equal(binary.predict(X), (pb[:, 1] > 0.5).astype(int))
    reg = MLP([2, 4, 1])
    assert reg.predict(X).shape == (5,)
    with pytest.raises(ValueError, match="predict_proba"):
        reg.predict_proba(X)


def test_weight_scaling_matches_scaled_weights(rng):
    """Test time with the notes' rule equals a dropout-free net whose outgoing weights of
    each dropout layer are multiplied by p."""
    kw = dict(activation="tanh", dtype=np.float64, seed=2)
    drop = MLP([3, 5, 5, 1], keep_prob=[0.8, 0.5, 0.6], **kw)
    plain = MLP([3, 5, 5, 1], **kw)
    for (W, _), p in zip(zip(plain.weights, plain.biases, strict=True), [0.8, 0.5, 0.6],
                         strict=True):
        W *= p
    X = rng.normal(size=(4, 3))
    assert_allclose(drop.forward(X), plain.forward(X), rtol=1e-12)
    inv = MLP([3, 5, 5, 1], keep_prob=0.5, dropout="inverted", **kw)
    assert_allclose(inv.forward(X), MLP([3, 5, 5, 1], **kw).forward(X), rtol=1e-12)


def test_dropout_masks_thin_each_example(rng):
    """Within one batch each example gets its own thinned network; a dropped unit gets no
    gradient from that example."""
    model = MLP([1, 200, 1], activation="identity", keep_prob=[1.0, 0.5], dtype=np.float64)
    X = np.ones((2, 1))
    y = np.zeros(2)
    g_both = model.gradient(X, y, step=0)[1]
    W1 = slice(model.layout[1, 2], model.layout[1, 2] + 200)
    g0 = model.gradient(X[:1], y[:1], step=0)[1][W1]
    # row 0 of the 2-row batch uses the same mask as the single-row batch (row index 0)
    assert np.count_nonzero(g0) < 150 and np.count_nonzero(g0) > 50
    assert not np.array_equal(g_both[W1] * 2, g0)  # row 1 had a different mask


def test_deterministic_and_buffers_reused(rng):
    model = MLP([4, 16, 3], output="softmax", loss="cross_entropy", keep_prob=0.8)
    X = rng.normal(size=(32, 4))
    y = rng.integers(0, 3, 32)
    v1, g1 = model.gradient(X, y, step=1)
    ws = model.workspace(32)
    v2, g2 = model.gradient(X, y, step=1)
    assert model.workspace(32) is ws
    assert v1 == v2 and np.array_equal(g1, g2)


def test_save_load_roundtrip(tmp_path, rng):
    model = MLP([3, 7, 2], activation="relu", output="softmax", loss="cross_entropy",
                keep_prob=0.9, seed=5)
    model.params += rng.normal(size=model.n_params).astype(np.float32) * 0.1
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = MLP.load(path)
    X = rng.normal(size=(10, 3))
    assert np.array_equal(loaded.forward(X), model.forward(X))
    assert loaded.config() == model.config()
    with np.load(path, allow_pickle=False) as f:
        assert set(f.files) == {"params", "config"}
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.zeros(3))
    with pytest.raises(ValueError, match="not a dlbasics model"):
        MLP.load(bad)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(sizes=[3]), ValueError, "sizes"),
        (dict(sizes=[3, 0, 1]), ValueError, "sizes"),
        (dict(sizes="3,1"), TypeError, "sizes"),
        (dict(sizes=[3, 1], activation="swish"), ValueError, "activation"),
        (dict(sizes=[3, 2, 1], activation=["tanh", "relu"]), ValueError, "activation"),
        (dict(sizes=[3, 2, 1], activation="softmax"), ValueError, "activation"),
        (dict(sizes=[3, 1], output="sigmoid", loss="cross_entropy"), ValueError, "output"),
        (dict(sizes=[3, 1], loss="binary_cross_entropy"), ValueError, "output"),
        (dict(sizes=[3, 1], loss="hinge"), ValueError, "loss"),
        (dict(sizes=[3, 2, 1], keep_prob=0.0), ValueError, "keep_prob"),
        (dict(sizes=[3, 2, 1], keep_prob=1.5), ValueError, "keep_prob"),
        (dict(sizes=[3, 2, 1], keep_prob=[0.5]), ValueError, "keep_prob"),
        (dict(sizes=[3, 1], dtype=np.int32), TypeError, "dtype"),
        (dict(sizes=[3, 1], backend="tpu"), ValueError, "backend"),
        (dict(sizes=[3, 1], init="zeros"), ValueError, "init"),
        (dict(sizes=[3, 1], seed=-1), ValueError, "seed"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MLP(**kwargs)


def test_bad_data(rng):
    clf = MLP([2, 3], output="softmax", loss="cross_entropy")
    X = rng.normal(size=(4, 2))
    with pytest.raises(ValueError, match="X"):
        clf.gradient(X[:, :1], np.zeros(4, int))
    with pytest.raises(ValueError, match="X"):
        clf.gradient(np.full((4, 2), np.nan), np.zeros(4, int))
    with pytest.raises(ValueError, match="X"):
        clf.gradient(np.zeros((0, 2)), np.zeros(0, int))
    with pytest.raises(TypeError, match="X"):
        clf.gradient([[1.0, 2.0]], np.zeros(1, int))
    with pytest.raises(ValueError, match="y"):
        clf.gradient(X, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="y"):
        clf.gradient(X, np.zeros(3, int))
    with pytest.raises(TypeError, match="y"):
        clf.gradient(X, np.zeros(4))
    reg = MLP([2, 1])
    with pytest.raises(ValueError, match="y"):
        reg.gradient(X, np.array([1.0, np.inf, 0, 0]))
    b = MLP([2, 1], output="sigmoid", loss="binary_cross_entropy")
    with pytest.raises(ValueError, match="y"):
        b.gradient(X, np.array([0.0, 2.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="step"):
        reg.gradient(X, np.zeros(4), step=-1)


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    model = MLP([4, 6, 5, 3], activation="tanh", output="softmax", loss="cross_entropy",
                dtype=np.float64)
    X = rng.normal(size=(8, 4))
    y = rng.integers(0, 3, 8)
    ts = [torch.tensor(a.copy(), requires_grad=True) for pair in
          zip(model.weights, model.biases, strict=True) for a in pair]
    h = torch.tensor(X)
    for i in range(3):
        h = h @ ts[2 * i] + ts[2 * i + 1]
        if i < 2:
            h = torch.tanh(h)
    out = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    out.backward()
    value, g = model.gradient(X, y)
    assert_allclose(value, out.item(), rtol=1e-12)
    ref = np.concatenate([t.grad.numpy().ravel() for t in ts])
    assert_allclose(g, ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_monte_carlo_dropout_approaches_weight_scaling_for_linear_net(backend, rng):
    """For a linear network the mean over thinned networks equals the weight-scaled network
    exactly in expectation; with many samples they agree closely."""
    model = MLP([5, 20, 1], activation="identity", keep_prob=[0.8, 0.5], dtype=np.float64,
                backend=backend, seed=4)
    X = rng.normal(size=(3, 5))
    scaled = model.forward(X)
    mc = model.forward_mc(X, n_nets=4000, seed=1)
    spread = np.abs(scaled).max()
    assert_allclose(mc, scaled, atol=0.05 * spread + 0.02)
    assert not np.allclose(model.forward_mc(X, n_nets=1, seed=1), scaled, atol=1e-6)


def test_monte_carlo_backends_agree(rng):
    kw = dict(activation="tanh", output="softmax", loss="cross_entropy", keep_prob=0.7,
              dtype=np.float64, seed=2)
    X = rng.normal(size=(6, 3))
    a = MLP([3, 8, 4], backend="cpu", **kw).forward_mc(X, n_nets=7, seed=3)
    b = MLP([3, 8, 4], backend="numpy", **kw).forward_mc(X, n_nets=7, seed=3)
    assert_allclose(a, b, rtol=1e-12)
    assert_allclose(a.sum(axis=1), 1.0)


def test_pickle_keeps_views_bound(rng):
    import pickle

    model = MLP([3, 4, 2], output="softmax", loss="cross_entropy", dtype=np.float64)
    clone = pickle.loads(pickle.dumps(model))
    assert np.shares_memory(clone.weights[0], clone.params)
    clone.params[0] = 123.0
    assert clone.weights[0][0, 0] == 123.0
    X = rng.normal(size=(4, 3))
    assert np.array_equal(model.forward(X), pickle.loads(pickle.dumps(model)).forward(X))
