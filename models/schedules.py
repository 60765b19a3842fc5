"""Learning-rate schedules, kept outside the optimizers.

A schedule is a callable ``schedule(epoch) -> lr`` for 0-based epochs; :func:`dlbasics.models.train`
evaluates it at the start of every epoch and passes the rate to the optimizer's update.
"""

from __future__ import annotations

import math

from ..kernels import _checks


class Schedule:
    """Base class: ``__call__(epoch)`` returns the learning rate of that epoch."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """``lr`` at every epoch."""

    def __init__(self, lr):
        self.lr = _checks.real("lr", lr, low=0.0, low_open=True)

    def __call__(self, epoch):
        return self.lr


class InverseScaling(Schedule):
    """``lr / (epoch + 1) ** power`` (scikit-learn's ``"invscaling"``)."""

    def __init__(self, lr, power=0.5):
        self.lr = _checks.real("lr", lr, low=0.0, low_open=True)
        self.power = _checks.real("power", power, low=0.0)

    def __call__(self, epoch):
        return self.lr / (epoch + 1) ** self.power


class StepDecay(Schedule):
    """``lr * gamma ** (epoch // step_size)``."""

    def __init__(self, lr, step_size=10, gamma=0.5):
        self.lr = _checks.real("lr", lr, low=0.0, low_open=True)
        self.step_size = _checks.integer("step_size", step_size, low=1)
        self.gamma = _checks.real("gamma", gamma, low=0.0, high=1.0, low_open=True)

    def __call__(self, epoch):
        return self.lr * self.gamma ** (epoch // self.step_size)


class Cosine(Schedule):
    """Cosine annealing from ``lr`` to ``lr_min`` over ``epochs`` epochs, then ``lr_min``."""

    def __init__(self, lr, epochs, lr_min=0.0):
        self.lr = _checks.real("lr", lr, low=0.0, low_open=True)
        self.epochs = _checks.integer("epochs", epochs, low=1)
        self.lr_min = _checks.real("lr_min", lr_min, low=0.0, high=self.lr)

    def __call__(self, epoch):
        frac = min(epoch, self.epochs) / self.epochs
        rate = self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * frac))
        return max(rate, 1e-300)
