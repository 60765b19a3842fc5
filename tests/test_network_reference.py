"""Every backend's whole network against the plain-NumPy references of ``tests/naive.py``.

The references (``naive.net_*``) are written from the lecture notes, independently of
``dlbasics.models``: forward pass at test time and in training (dropout in the notes'
convention, weight scaling at test time, and inverted), the loss, its gradient by hand-written
backpropagation, training steps through the naive optimizer twins and whole epochs of mini-batch
training. Every comparison is in float64 at 1e-12 (relative to the largest element).

The cases iterate dlbasics' own registries: hidden activations (``ACTIVATIONS`` but softmax),
the output/loss pairs the MLP accepts (``OUTPUTS`` x ``LOSS_NAMES``) and the optimizer rules
(``OPTIMIZERS``), so a new entry is tested here on every backend without editing a list.
``tests/gpu/test_gpu_network_reference.py`` runs the same tests on the ``"cuda"`` backend under
the CUDA simulator.
"""

import numba
import numpy as np
import pytest

import dlbasics.models.backends as backends
import dlbasics.models.population as population
from dlbasics.kernels.activations import ACTIVATIONS
from dlbasics.models import MLP, train, train_population
from dlbasics.models.mlp import LOSS_NAMES, OUTPUTS
from dlbasics.models.optimizers import OPTIMIZERS
from tests import naive

RTOL = 1e-12

#: Hidden activations from the registry (softmax is allowed only as an output).
HIDDEN = tuple(name for name in ACTIVATIONS if name != "softmax")
#: Dropout settings: none, the notes' convention (with dropout on the input layer too) and
#: inverted dropout; keep probabilities per layer input (index 0: the network's input).
DROPOUTS = {
    "none": {},
    "scale": {"keep_prob": "all", "dropout": "scale"},
    "inverted": {"keep_prob": "all", "dropout": "inverted"},
}


def _valid_pairs():
    """Every (output, loss) pair of the registries that the MLP accepts."""
    pairs = []
    for loss in LOSS_NAMES:
        for output in OUTPUTS:
            try:
                MLP([1, 1], output=output, loss=loss, backend="numpy")
            except ValueError:
                continue
            pairs.append((output, loss))
    return pairs


PAIRS = _valid_pairs()
#: Every pair with dense targets, and cross-entropy also with integer class labels.
TARGETS = [pytest.param(o, lo, False, id=f"{o}-{lo}") for o, lo in PAIRS] + [
    pytest.param(o, lo, True, id=f"{o}-{lo}-labels") for o, lo in PAIRS if lo == "cross_entropy"
]


def test_pairs_cover_every_loss_and_output():
    """The pair table is not vacuous: squared loss takes every output, and every loss has one."""
    assert {loss for _, loss in PAIRS} == set(LOSS_NAMES)
    assert {out for out, loss in PAIRS if loss == "squared"} == set(OUTPUTS)
    assert ("sigmoid", "binary_cross_entropy") in PAIRS
    assert ("softmax", "cross_entropy") in PAIRS


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def assert_close(got, want, rtol=RTOL):
    """``got`` within ``rtol`` of ``want``, relative to each element or to the largest one."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape
    scale = float(np.max(np.abs(want))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(scale, 1e-300))


def _keep_list(sizes):
    """Distinct keep probabilities for every layer input, the network's input included."""
    return [0.85, 0.7, 0.6, 0.75][: len(sizes) - 1]


def dropout_kw(sizes, dropout):
    """The MLP keyword arguments of a DROPOUTS entry."""
    d = dict(DROPOUTS[dropout])
    if d.get("keep_prob") == "all":
        d["keep_prob"] = _keep_list(sizes)
    return d


def make_pair(backend, sizes, seed=3, dropout="none", rng=None, **kw):
    """A float64 MLP with random weights *and* biases, and its naive description."""
    d = dropout_kw(sizes, dropout)
    model = MLP(sizes, dtype=np.float64, backend=backend, seed=seed, **d, **kw)
    rng = np.random.default_rng(seed) if rng is None else rng
    model.set_params_vector(rng.normal(0.0, 0.6, size=model.n_params))
    net = naive.network(sizes, seed=seed, **d, **kw)
    return model, net


def make_data(rng, n, sizes, output, loss, labels=False):
    """Inputs and targets fitting the loss: reals (squared), soft targets in [0, 1] (binary
    cross-entropy), class labels or rows of class probabilities (cross-entropy)."""
    k = sizes[-1]
    X = rng.normal(size=(n, sizes[0]))
    if loss == "squared":
        y = rng.normal(size=(n, k))
    elif loss == "binary_cross_entropy":
        y = rng.uniform(size=(n, k))
    elif labels:
        y = rng.integers(0, k, size=n)
    else:
        y = rng.dirichlet(np.ones(k), size=n)
    return X, y


def optimizer_cases():
    """One optimizer per rule of the registry (a weight decay, where it has one, set non-zero),
    plus one variant per boolean hyper-parameter flipped (centered RMSProp, AMSGrad, decoupled
    weight decay, ...).

    An ``eps`` hyper-parameter is set to 1e-4: where a gradient element is as small as ``eps``
    (a unit barely active after a cancelling sum), an adaptive rule's step ``g / (sqrt(v) +
    eps)`` turns the element's relative rounding error into an error of the step itself, so two
    correct float64 computations can differ by 1e-9; a larger ``eps`` bounds that amplification
    (the formulas are the same for any ``eps``).
    """
    cases = []
    for name, cls in OPTIMIZERS.items():
        base = {"lr": 0.05}
        if "eps" in cls(**base).get_params():
            base["eps"] = 1e-4
        if "weight_decay" in cls(**base).get_params():
            base["weight_decay"] = 0.02
        cases.append(pytest.param(cls(**base), id=name))
        for flag, value in cls(**base).get_params().items():
            if isinstance(value, bool):
                cases.append(pytest.param(cls(**base, **{flag: not value}), id=f"{name}-{flag}"))
    return cases


def _split_from_two_rows(monkeypatch):
    """Make the cpu backend split every batch of two rows or more into row chunks (one thread
    each, :func:`dlbasics.kernels.network.split_gradient`), which it otherwise does from
    ``split_min_rows()`` (at least 64) rows on."""
    if not backends.fast_parallel_regions() or numba.get_num_threads() < 2:
        pytest.skip("needs two Numba threads and an OpenMP or TBB threading layer to split")
    monkeypatch.setattr(backends, "SPLIT_MIN_ROWS", 2)
    monkeypatch.setattr(backends, "SPLIT_MIN_WORK", 0)


def _own_products_everywhere(monkeypatch):
    """Make the cpu backend's training products run through our register-blocked products
    (:mod:`dlbasics.kernels.smallgemm`) for every layer and row count, which it otherwise does
    from ``BLAS_MIN_ROWS`` (8) rows through layers of ``OWN_PRODUCTS_MIN_WORK`` (16,384)
    weights."""
    monkeypatch.setattr(backends, "BLAS_MIN_ROWS", 1)
    monkeypatch.setattr(backends, "OWN_PRODUCTS_MIN_WORK", 1)


def _cpu_variant(name, monkeypatch):
    """The cpu backend set up as the fixture variant ``name`` asks ("cpu", "cpu-split",
    "cpu-own", "cpu-split-own"); ``name`` itself for another backend."""
    if not name.startswith("cpu"):
        return name
    if "split" in name:
        _split_from_two_rows(monkeypatch)
    if "own" in name:
        _own_products_everywhere(monkeypatch)
    return "cpu"


@pytest.fixture(params=["cpu", "cpu-split", "numpy"])
def backend(request, monkeypatch):
    return _cpu_variant(request.param, monkeypatch)


@pytest.fixture(params=["cpu", "cpu-split", "cpu-own", "numpy"])
def gradient_backend(request, monkeypatch):
    """:func:`backend` and, for the training step's gradient (where the record of
    :meth:`~dlbasics.models.backends.CpuBackend.train_net` chooses the products), the cpu
    backend with our register-blocked products in place of BLAS."""
    return _cpu_variant(request.param, monkeypatch)


@pytest.fixture(params=[("cpu", True), ("cpu", False), ("cpu-split", True),
                        ("cpu-split", False), ("cpu-own", True), ("cpu-own", False),
                        ("cpu-split-own", True), ("cpu-split-own", False), ("numpy", False)],
                ids=["cpu-fused", "cpu-general", "cpu-split-fused", "cpu-split-general",
                     "cpu-own-fused", "cpu-own-general", "cpu-split-own-fused",
                     "cpu-split-own-general", "numpy"])
def trainer(request, monkeypatch):
    """``(backend, fast)`` of every training path: the cpu backend's fused epoch and its
    general mini-batch loop, each also with batches split into row chunks and with our
    register-blocked products in place of BLAS, and the numpy backend."""
    backend, fast = request.param
    return _cpu_variant(backend, monkeypatch), fast


# ---------------------------------------------------------------------------------------------
# forward pass
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dropout", list(DROPOUTS))
@pytest.mark.parametrize("activation", HIDDEN)
def test_forward_test_time(backend, activation, dropout):
    """``forward``: the full network, dropout replaced by its test-time rule."""
    sizes = [3, 5, 4, 2]
    rng = np.random.default_rng(7)
    model, net = make_pair(backend, sizes, dropout=dropout, rng=rng, activation=activation)
    X = rng.normal(size=(11, 3))
    want = naive.net_forward(net, model.params, X, train=False)[-1][2]
    assert_close(model.forward(X), want)


@pytest.mark.parametrize("dropout", ["scale", "inverted"])
def test_test_time_rule_differs_from_no_dropout(backend, dropout):
    """Guard of the reference itself: the notes' weight scaling changes the outputs, inverted
    dropout leaves them as without dropout (same weights)."""
    sizes = [3, 5, 4, 2]
    model, net = make_pair(backend, sizes, dropout=dropout)
    plain, _ = make_pair(backend, sizes)
    X = np.random.default_rng(1).normal(size=(6, 3))
    if dropout == "scale":
        assert np.max(np.abs(model.forward(X) - plain.forward(X))) > 1e-3
    else:
        assert_close(model.forward(X), plain.forward(X))


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{o}-{lo}" for o, lo in PAIRS])
def test_forward_outputs(backend, pair):
    """Every output activation of the registry after a hidden tanh layer."""
    output, loss = pair
    sizes = [3, 6, 4]
    rng = np.random.default_rng(8)
    model, net = make_pair(backend, sizes, dropout="scale", rng=rng, output=output, loss=loss)
    X = rng.normal(size=(9, 3))
    want = naive.net_forward(net, model.params, X)[-1][2]
    assert_close(model.forward(X), want)


@pytest.mark.parametrize("dropout", ["scale", "inverted"])
@pytest.mark.parametrize("activation", HIDDEN)
def test_forward_training_masks(backend, activation, dropout):
    """``forward_mc``: thinned networks with the training masks of steps 0, 1, ... (one
    network: exactly the training-mode forward pass of step 0)."""
    if backend == "cuda":
        pytest.skip("forward_mc of the cuda backend runs on the CPU path")
    sizes = [4, 6, 5, 3]
    rng = np.random.default_rng(9)
    model, net = make_pair(backend, sizes, dropout=dropout, rng=rng, activation=activation)
    X = rng.normal(size=(7, 4))
    mc_net = dict(net, seed=11)
    one = naive.net_forward(mc_net, model.params, X, train=True, step=0)[-1][2]
    assert_close(model.forward_mc(X, n_nets=1, seed=11), one)
    three = sum(naive.net_forward(mc_net, model.params, X, train=True, step=s)[-1][2]
                for s in range(3)) / 3
    assert_close(model.forward_mc(X, n_nets=3, seed=11), three)
    assert np.max(np.abs(one - naive.net_forward(net, model.params, X)[-1][2])) > 1e-3


# ---------------------------------------------------------------------------------------------
# loss and accuracy
# ---------------------------------------------------------------------------------------------


def _accuracy(net, a, y):
    """Fraction of correct predictions: argmax for softmax, else outputs on y's side of 0.5."""
    if net["names"][-1] == "softmax":
        truth = y if y.ndim == 1 else y.argmax(axis=1)
        return np.mean(a.argmax(axis=1) == truth)
    return np.mean((a > 0.5) == (y.reshape(a.shape) > 0.5))


@pytest.mark.parametrize(("output", "loss", "labels"), TARGETS)
def test_loss_and_accuracy(backend, output, loss, labels):
    """``loss`` (test time, dropout by its rule) and ``accuracy`` for every output/loss pair."""
    sizes = [3, 5, 3]
    rng = np.random.default_rng(10)
    model, net = make_pair(backend, sizes, dropout="scale", rng=rng, output=output, loss=loss)
    X, y = make_data(rng, 12, sizes, output, loss, labels)
    assert_close(model.loss(X, y), naive.net_loss(net, model.params, X, y))
    if loss != "squared":
        a = naive.net_forward(net, model.params, X)[-1][2]
        assert model.accuracy(X, y) == pytest.approx(_accuracy(net, a, y), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# gradient (training mode)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dropout", list(DROPOUTS))
@pytest.mark.parametrize("activation", HIDDEN)
def test_gradient_hidden(gradient_backend, activation, dropout):
    """``gradient`` through two hidden layers of every activation, with the masks of step 3."""
    backend = gradient_backend
    sizes = [3, 5, 4, 2]
    rng = np.random.default_rng(11)
    model, net = make_pair(backend, sizes, dropout=dropout, rng=rng, activation=activation)
    X, y = make_data(rng, 6, sizes, "identity", "squared")
    value, grad = model.gradient(X, y, step=3)
    want_value, want_grad = naive.net_gradient(net, model.params, X, y, step=3)
    assert_close(value, want_value)
    assert_close(grad, want_grad)


@pytest.mark.parametrize("dropout", ["none", "inverted"])
@pytest.mark.parametrize(("output", "loss", "labels"), TARGETS)
def test_gradient_outputs(gradient_backend, output, loss, labels, dropout):
    """``gradient`` of every output/loss pair (batch of 9: BLAS-sized on the CPU), L2 penalty
    included."""
    backend = gradient_backend
    sizes = [3, 6, 3]
    rng = np.random.default_rng(12)
    model, net = make_pair(backend, sizes, dropout=dropout, rng=rng, output=output, loss=loss,
                           activation="softplus")
    X, y = make_data(rng, 9, sizes, output, loss, labels)
    value, grad = model.gradient(X, y, step=1, alpha=0.3)
    want_value, want_grad = naive.net_gradient(net, model.params, X, y, step=1, alpha=0.3)
    assert_close(value, want_value)
    assert_close(grad, want_grad)


def test_reference_gradient_is_the_derivative_of_the_reference_loss():
    """The backprop reference against central differences of the reference loss itself (same
    dropout masks), so the two references cannot share a mistake."""
    for output, loss in PAIRS:
        if output in ("step", "sign"):
            continue  # piecewise constant: the difference quotient sees no slope
        for dropout in ("scale", "inverted"):
            rng = np.random.default_rng(13)
            sizes = [3, 4, 3]
            net = naive.network(sizes, activation="tanh", output=output, loss=loss,
                                keep_prob=_keep_list(sizes), dropout=dropout, seed=2)
            n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
            params = rng.normal(0.0, 0.6, size=n_params)
            X, y = make_data(rng, 5, sizes, output, loss)
            _, grad = naive.net_gradient(net, params, X, y, step=4, alpha=0.2)
            h = 1e-6
            num = np.empty(n_params)
            for i in range(n_params):
                e = np.zeros(n_params)
                e[i] = h
                up = naive.net_loss(net, params + e, X, y, train=True, step=4, alpha=0.2)
                down = naive.net_loss(net, params - e, X, y, train=True, step=4, alpha=0.2)
                num[i] = (up - down) / (2 * h)
            np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8,
                                       err_msg=f"{output}-{loss}-{dropout}")


# ---------------------------------------------------------------------------------------------
# training: steps and epochs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt", optimizer_cases())
def test_training_steps(trainer, opt):
    """Three full-batch steps of every optimizer rule with inverted dropout: the parameters
    and the recorded losses against the reference gradient plus the naive optimizer twin."""
    backend, fast = trainer
    sizes = [3, 5, 2]
    rng = np.random.default_rng(14)
    model, net = make_pair(backend, sizes, dropout="inverted", rng=rng, activation="tanh")
    X, y = make_data(rng, 7, sizes, "identity", "squared")
    params = model.params.copy()
    slots = {}
    losses = []
    for t in (1, 2, 3):
        params, slots, value = naive.net_train_step(net, params, X, y, opt.name,
                                                    opt.get_params(), slots, t)
        losses.append(value)
    hist = train(model, X, y, opt, batch_size=None, epochs=3, shuffle=False, fast=fast)
    assert hist.updates == [1, 2, 3]
    assert_close(hist.train_loss, losses)
    assert_close(model.params, params)


def _epoch_orders(n, epochs):
    rng = np.random.default_rng(99)
    return [rng.permutation(n) for _ in range(epochs)]


@pytest.mark.parametrize("opt", [o for o in optimizer_cases() if "-" not in o.id])
@pytest.mark.parametrize("dropout", list(DROPOUTS))
def test_epochs_with_given_order(trainer, dropout, opt):
    """Two epochs of mini-batches of 3 (the last of 1) in a given visiting order: dropout
    masks of update counts 0..7, optimizer state carried across the epochs."""
    backend, fast = trainer
    sizes = [3, 5, 4, 2]
    rng = np.random.default_rng(15)
    model, net = make_pair(backend, sizes, dropout=dropout, rng=rng, activation="relu",
                           output="softmax", loss="cross_entropy")
    X, y = make_data(rng, 10, sizes, "softmax", "cross_entropy", labels=True)
    orders = _epoch_orders(10, 2)
    given = iter(orders)
    params, slots, count = model.params.copy(), {}, 0
    losses = []
    for order in orders:
        params, slots, count, total = naive.net_epoch(net, params, X, y, order, 3, opt.name,
                                                      opt.get_params(), slots, count)
        losses.append(total / 10)
    hist = train(model, X, y, opt, batch_size=3, epochs=2, shuffle=lambda _: next(given),
                 fast=fast)
    assert hist.updates == [4, 8]
    assert_close(hist.train_loss, losses)
    assert_close(model.params, params)


@pytest.mark.parametrize("dropout", list(DROPOUTS))
def test_stochastic_sgd_epoch(trainer, dropout):
    """Batch size 1 with plain SGD (the CPU's fused path updates inside the backward pass)."""
    backend, fast = trainer
    sizes = [3, 4, 3, 1]
    rng = np.random.default_rng(17)
    model, net = make_pair(backend, sizes, dropout=dropout, rng=rng, activation="leaky_relu",
                           output="sigmoid", loss="binary_cross_entropy")
    X, y = make_data(rng, 8, sizes, "sigmoid", "binary_cross_entropy")
    order = _epoch_orders(8, 1)[0]
    opt = OPTIMIZERS["sgd"](lr=0.2)
    params, _, _, total = naive.net_epoch(net, model.params, X, y, order, 1, "sgd",
                                          opt.get_params(), {}, 0)
    hist = train(model, X, y, opt, batch_size=1, epochs=1, shuffle=lambda _: order, fast=fast)
    assert hist.updates == [8]
    assert_close(hist.train_loss, [total / 8])
    assert_close(model.params, params)


def test_epochs_seeded_shuffle_and_l2(trainer):
    """``shuffle=True, seed=s``: the orders are ``default_rng(s).permutation(n)``, one per
    epoch; with the notes' dropout, Adam and an L2 penalty; a second call continues from the
    first's optimizer state (update counts and dropout steps go on)."""
    backend, fast = trainer
    sizes = [2, 6, 1]
    rng = np.random.default_rng(16)
    model, net = make_pair(backend, sizes, dropout="scale", rng=rng, activation="sigmoid")
    X, y = make_data(rng, 11, sizes, "identity", "squared")
    opt = OPTIMIZERS["adam"](lr=0.03, eps=1e-4)
    params, slots, count = model.params.copy(), {}, 0
    losses = []
    for seed, epochs in ((5, 2), (6, 1)):
        order_rng = np.random.default_rng(seed)
        for _ in range(epochs):
            params, slots, count, total = naive.net_epoch(
                net, params, X, y, order_rng.permutation(11), 4, "adam", opt.get_params(),
                slots, count, alpha=0.1)
            losses.append(total / 11)
    h1 = train(model, X, y, opt, batch_size=4, epochs=2, seed=5, alpha=0.1, fast=fast)
    h2 = train(model, X, y, opt, batch_size=4, epochs=1, seed=6, alpha=0.1, fast=fast,
               state=h1.state)
    assert h2.updates == [3]
    assert_close(h1.train_loss + h2.train_loss, losses)
    assert_close(model.params, params)


def test_epoch_over_data_larger_than_a_cache(trainer):
    """An epoch over an ``X`` of more than 1 MiB (float64), where the gather asks for each row
    16 rows before copying it (:data:`dlbasics.kernels.network.GATHER_AHEAD`), against the
    reference, with Adam and an L2 penalty: the rows copied are the order's, batch by batch
    (batches of 100 and a last one of 30; split into row chunks on the ``cpu-split`` paths)."""
    from dlbasics.kernels.network import GATHER_AHEAD_MIN_BYTES

    backend, fast = trainer
    sizes = [64, 8, 3]
    rng = np.random.default_rng(21)
    model, net = make_pair(backend, sizes, rng=rng, activation="relu", output="softmax",
                           loss="cross_entropy")
    X, y = make_data(rng, 2130, sizes, "softmax", "cross_entropy", labels=True)
    assert X.nbytes >= GATHER_AHEAD_MIN_BYTES
    order = _epoch_orders(2130, 1)[0]
    opt = OPTIMIZERS["adam"](lr=0.01)
    params, _, _, total = naive.net_epoch(net, model.params, X, y, order, 100, "adam",
                                          opt.get_params(), {}, 0, alpha=1e-3)
    hist = train(model, X, y, opt, batch_size=100, epochs=1, shuffle=lambda _: order,
                 alpha=1e-3, fast=fast)
    assert hist.updates == [22]
    assert_close(hist.train_loss, [total / 2130])
    assert_close(model.params, params)


# ---------------------------------------------------------------------------------------------
# populations: K networks trained at once, each against its own reference run
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def population_backend():
    """The backend of the per-network population kernel (cuda in the GPU twin of this file)."""
    return "cpu"


def check_population(backend, dropout, opt, lanes):
    """Five networks (seeds 3..7, each with its own shuffling seed) for two epochs of
    mini-batches of 3: each network's history and parameters against the reference run from
    its own initialisation (``naive.net_init``)."""
    sizes = [3, 5, 4, 2]
    seeds = [3, 4, 5, 6, 7]
    shuffles = [11, 12, 13, 14, 15]
    rng = np.random.default_rng(18)
    model, _ = make_pair(backend, sizes, dropout=dropout, rng=rng, activation="tanh",
                         output="softmax", loss="cross_entropy")
    X, y = make_data(rng, 10, sizes, "softmax", "cross_entropy", labels=True)
    hists, P = train_population(model, X, y, opt, seeds, batch_size=3, epochs=2,
                                shuffle_seeds=shuffles, lanes=lanes)
    for hist, params, seed, shuffle_seed in zip(hists, P, seeds, shuffles, strict=True):
        net = naive.network(sizes, activation="tanh", output="softmax", loss="cross_entropy",
                            seed=seed, **dropout_kw(sizes, dropout))
        want = naive.net_init(net, "glorot", seed)
        order_rng = np.random.default_rng(shuffle_seed)
        slots, count, losses = {}, 0, []
        for _ in range(2):
            want, slots, count, total = naive.net_epoch(net, want, X, y,
                                                        order_rng.permutation(10), 3,
                                                        opt.name, opt.get_params(), slots,
                                                        count)
            losses.append(total / 10)
        assert hist.updates == [4, 8]
        assert_close(hist.train_loss, losses)
        assert_close(params, want)


@pytest.mark.parametrize("opt", [o for o in optimizer_cases() if "-" not in o.id])
@pytest.mark.parametrize("dropout", list(DROPOUTS))
def test_population_per_network(population_backend, dropout, opt):
    """``train_population``'s per-network kernel, every rule, dropout in both conventions."""
    check_population(population_backend, dropout, opt, lanes=False)


@pytest.mark.parametrize("opt", [o for o in optimizer_cases() if "-" not in o.id])
def test_population_lanes(monkeypatch, opt):
    """The lane layout (networks as the innermost axis; no dropout), made eligible for five
    networks in chunks of four lanes."""
    monkeypatch.setattr(population, "LANES_MIN_NETWORKS", 1)
    monkeypatch.setattr(population, "LANES", 4)
    check_population("cpu", "none", opt, lanes=None)
