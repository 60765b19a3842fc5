"""The ``"cuda"`` backend against the whole-network references of ``tests/naive.py``: the tests
of ``tests/test_network_reference.py`` (forward, loss, gradient, training steps and epochs over
the registries), run here on the device (under the CUDA simulator in CI)."""

import pytest

from tests.test_network_reference import (  # noqa: F401 (collected here with backend "cuda")
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
def fast():
    """The device backend always runs whole epochs on the device."""
    return True
