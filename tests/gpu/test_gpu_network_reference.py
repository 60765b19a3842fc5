"""The ``"cuda"`` backend against the whole-network references of ``tests/naive.py``: the tests
of ``tests/test_network_reference.py`` (forward, loss, gradient, training steps and epochs over
the registries), run here on the device (under the CUDA simulator in CI)."""

import pytest

from dlbasics.kernels import gpu_small
from tests.test_network_reference import (  # noqa: F401 (collected here with backend "cuda")
    DROPOUTS,
    check_population,
    optimizer_cases,
    test_epochs_seeded_shuffle_and_l2,
    test_epochs_with_given_order,
    test_forward_outputs,
    test_forward_test_time,
    test_gradient_hidden,
    test_gradient_outputs,
    test_loss_and_accuracy,
    test_stochastic_sgd_epoch,
    test_test_time_rule_differs_from_no_dropout,
    test_training_steps,
)


@pytest.fixture
def backend():
    return "cuda"


@pytest.fixture
def trainer():
    """The device epoch; these networks are small, so it runs in one block."""
    return "cuda", True


@pytest.fixture
def per_layer(monkeypatch):
    """The per-layer device kernels instead (the cooperative-grid path is compared with the cpu
    backend in test_gpu_mlp.py); ten times slower under the simulator, so fewer cases."""
    monkeypatch.setattr(gpu_small, "SMALL_MAX_WIDTH", 0)
    monkeypatch.setattr(gpu_small, "GRID_ENABLED", False)


@pytest.mark.parametrize("opt", optimizer_cases())
def test_per_layer_training_steps(per_layer, opt):
    test_training_steps(("cuda", True), opt)


@pytest.mark.parametrize("dropout", list(DROPOUTS))
def test_per_layer_epochs(per_layer, dropout):
    for case in optimizer_cases():
        if case.id in ("sgd", "adam"):
            test_epochs_with_given_order(("cuda", True), dropout, case.values[0])
    test_stochastic_sgd_epoch(("cuda", True), dropout)


@pytest.mark.parametrize("opt", [o for o in optimizer_cases() if o.id in ("sgd", "adam")])
@pytest.mark.parametrize("dropout", list(DROPOUTS))
def test_population(dropout, opt):
    """``train_population`` on the device: each network against its reference run."""
    check_population("cuda", dropout, opt, lanes=None)
