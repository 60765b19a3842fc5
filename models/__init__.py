"""Models of the lecture notes assembled from the kernels: perceptron, MLP, optimizers,
the training loop, population training and scikit-learn-style estimators."""

from . import optimizers, schedules
from .estimators import MLPClassifier, MLPRegressor
from .mlp import MLP
from .optimizers import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp
from .perceptron import Perceptron
from .population import train_population
from .training import History, train

__all__ = [
    "MLP", "History", "train", "train_population", "optimizers", "schedules",
    "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "AdamW",
    "Perceptron", "MLPClassifier", "MLPRegressor",
]
