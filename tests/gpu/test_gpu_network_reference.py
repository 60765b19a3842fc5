"""The ``"cuda"`` backend against the whole-network references of ``tests/naive.py``: the tests
of ``tests/test_network_reference.py`` (forward, loss, gradient, training steps and epochs,
populations over the registries), run here on the device (under the CUDA simulator in CI).

The simulator is slow (every launch runs its threads in Python), so where the CPU file crosses
every registry entry with every dropout setting this file crosses the registry with one
setting and covers the others on one entry; the training tests (the one-block epoch) take every
combination.
"""

import pytest

from dlbasics.kernels import gpu_small
from tests.test_network_reference import (  # noqa: F401 (collected here with backend "cuda")
    DROPOUTS,
    HIDDEN,
    TARGETS,
    check_population,
    optimizer_cases,
    test_epochs_seeded_shuffle_and_l2,
    test_epochs_with_given_order,
    test_forward_outputs,
    test_loss_and_accuracy,
    test_stochastic_sgd_epoch,
    test_test_time_rule_differs_from_no_dropout,
    test_training_steps,
)
from tests.test_network_reference import test_forward_test_time as _forward_test_time
from tests.test_network_reference import test_gradient_hidden as _gradient_hidden
from tests.test_network_reference import test_gradient_outputs as _gradient_outputs

CUDA = ("cuda", True)


@pytest.fixture
def backend():
    return "cuda"


@pytest.fixture
def trainer():
    """The device epoch; these networks are small, so it runs in one block."""
    return CUDA


@pytest.mark.parametrize("activation", HIDDEN)
def test_forward_test_time_each_activation(activation):
    """Every hidden activation with the notes' dropout (weight scaling at test time)."""
    _forward_test_time("cuda", activation, "scale")


@pytest.mark.parametrize("dropout", ["none", "inverted"])
def test_forward_test_time_other_dropouts(dropout):
    _forward_test_time("cuda", "tanh", dropout)


@pytest.mark.parametrize("activation", HIDDEN)
def test_gradient_each_activation(activation):
    """Every hidden activation through inverted-dropout masks (masks and their 1/p scale)."""
    _gradient_hidden("cuda", activation, "inverted")


@pytest.mark.parametrize("dropout", ["none", "scale"])
def test_gradient_other_dropouts(dropout):
    _gradient_hidden("cuda", "tanh", dropout)


@pytest.mark.parametrize(("output", "loss", "labels"), TARGETS)
def test_gradient_each_output(output, loss, labels):
    """Every output/loss pair without dropout (with it: the two tests above)."""
    _gradient_outputs("cuda", output, loss, labels, "none")


@pytest.fixture
def per_layer(monkeypatch):
    """The per-layer device kernels instead of the one-block epoch (the cooperative-grid path
    is compared with the cpu backend in test_gpu_mlp.py); ten times slower under the simulator,
    so two rules only (every rule's update is shared by both paths)."""
    monkeypatch.setattr(gpu_small, "SMALL_MAX_WIDTH", 0)
    monkeypatch.setattr(gpu_small, "GRID_ENABLED", False)


@pytest.mark.parametrize("dropout", list(DROPOUTS))
def test_per_layer_epochs(per_layer, dropout):
    for case in optimizer_cases():
        if case.id in ("sgd", "adam"):
            test_epochs_with_given_order(CUDA, dropout, case.values[0])


@pytest.mark.parametrize("opt", [o for o in optimizer_cases() if o.id in ("sgd", "adam")])
@pytest.mark.parametrize("dropout", list(DROPOUTS))
def test_population(dropout, opt):
    """``train_population`` on the device: each network against its reference run."""
    check_population("cuda", dropout, opt, lanes=None)
