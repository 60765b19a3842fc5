"""Models of the lecture notes assembled from the kernels: perceptron, MLP, optimizers,
the training loop, population training and scikit-learn drop-in estimators.

``MLPClassifier``, ``MLPRegressor`` and ``Perceptron`` take scikit-learn's parameters (names,
defaults, meaning) and expose its fitted attributes, so code written for
``sklearn.neural_network`` and ``sklearn.linear_model.Perceptron`` switches by its import line.
They are imported on first use: they pull in scikit-learn when it is installed, which costs
seconds per process.
"""

import importlib

from . import optimizers, schedules
from .mlp import MLP
from .optimizers import SGD, AdaGrad, Adam, AdamW, Momentum, NAdam, Nesterov, RAdam, RMSProp
from .population import train_population
from .training import History, train

_LAZY = {"MLPClassifier": ".estimators", "MLPRegressor": ".estimators",
         "Perceptron": ".perceptron"}

__all__ = [
    "MLP", "History", "train", "train_population", "optimizers", "schedules",
    "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "AdamW", "NAdam", "RAdam",
    "Perceptron", "MLPClassifier", "MLPRegressor",
]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
