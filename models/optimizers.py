r"""Optimizers as ``init``/``update`` pairs with explicit state (the optax design).

``state = opt.init(params)`` creates the state (a small named tuple of the update count and the
slot arrays); ``state = opt.update(grads, state, params)`` changes ``params`` and the slots in
place with the compiled kernels of :mod:`dlbasics.kernels.optimizers` and returns the state with its
count advanced. Equations and defaults follow ``torch.optim`` (see each kernel's docstring):

=========== =====================================================================
SGD         :math:`w \leftarrow w - \xi g`  (the notes' fixed learning rate)
Momentum    :math:`b \leftarrow \mu b + g;\ w \leftarrow w - \xi b`
Nesterov    :math:`b \leftarrow \mu b + g;\ w \leftarrow w - \xi (g + \mu b)`
AdaGrad     :math:`s \leftarrow s + g^2;\ w \leftarrow w - \xi g / (\sqrt{s} + \epsilon)`
RMSProp     :math:`v \leftarrow \alpha v + (1-\alpha) g^2;\ w \leftarrow w - \xi g / d`,
            :math:`d = \sqrt{v} + \epsilon`
            (centered: :math:`\sqrt{v - \bar g^2}` in the denominator)
Adam        bias-corrected first and second moments (optionally AMSGrad)
AdamW       Adam with decoupled weight decay :math:`w \leftarrow w (1 - \xi \lambda)`
NAdam       Adam with Nesterov momentum and the momentum schedule of Dozat (2016)
RAdam       Adam with the variance rectification of Liu et al. (2020)
=========== =====================================================================

Learning-rate schedules live outside the optimizers (:mod:`dlbasics.models.schedules`): the training
loop passes the scheduled rate to :meth:`Optimizer.update` as ``lr``.

The compiled dispatcher :func:`apply_update` runs any rule from an integer code, a
hyper-parameter vector and three slot arrays; the fused epoch and population kernels use it, and
so does :meth:`Optimizer.update`, so every path applies bitwise the same update.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import _checks
from ..kernels.optimizers import (  # noqa: F401 (re-exported: the models layer's dispatcher)
    ADAGRAD_CODE,
    ADAM_CODE,
    HP_B1,
    HP_B2,
    HP_DECOUPLED,
    HP_EPS,
    HP_FLAG,
    HP_LR,
    HP_MOMENTUM_DECAY,
    HP_SIZE,
    HP_WD,
    MOMENTUM_CODE,
    NADAM_CODE,
    NESTEROV_CODE,
    RADAM_CODE,
    RMSPROP_CODE,
    SGD_CODE,
    _flag,
    apply_update,
)
from ..kernels.views import aligned_zeros


def _zeros_like(params):
    """Zeros shaped as the flat ``params`` (:meth:`Optimizer.init` checks), starting on a cache
    line as the parameters do: threads updating neighbouring columns then share no line of the
    state either."""
    return aligned_zeros(params.shape[0], params.dtype)


class SGDState(NamedTuple):
    count: int


class MomentumState(NamedTuple):
    count: int
    momentum_buffer: np.ndarray


class AdaGradState(NamedTuple):
    count: int
    sum_sq: np.ndarray


class RMSPropState(NamedTuple):
    count: int
    square_avg: np.ndarray
    grad_avg: np.ndarray


class AdamState(NamedTuple):
    count: int
    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray
    max_exp_avg_sq: np.ndarray


class MomentsState(NamedTuple):
    count: int
    exp_avg: np.ndarray
    exp_avg_sq: np.ndarray


class Optimizer:
    """Base class: hyper-parameters, ``init`` and ``update``. Subclasses set ``code`` (a rule
    code of :func:`apply_update`) and ``name``; the base class itself has neither and cannot be
    built."""

    code = None
    name = ""

    def __init__(self, lr):
        if type(self).code is None:
            raise TypeError(
                f"{type(self).__name__} has no rule code: subclass Optimizer and set code"
            )
        self.lr = _checks.real("lr", lr, low=0.0, low_open=True)

    # -- hyper-parameters -----------------------------------------------------------------------
    def get_params(self):
        """Hyper-parameters as a dict (constructor arguments)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_params() == other.get_params()

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(self.get_params().items()))))

    def hyper_vector(self, dtype, lr=None):
        """The ``hp`` vector of :func:`apply_update` in ``dtype`` (``lr`` overrides the rate)."""
        hp = np.zeros(HP_SIZE, dtype=dtype)
        hp[HP_LR] = self.lr if lr is None else lr
        self._fill(hp)
        return hp

    def _fill(self, hp):
        pass

    # -- state ----------------------------------------------------------------------------------
    def init(self, params):
        """Fresh state for ``params`` (a flat float array): count 0, zeroed slots."""
        _checks.float_array("params", params, ndim=1)
        return self._init(params)

    def _init(self, params):
        return SGDState(0)

    @staticmethod
    def slots(state, params):
        """The three slot arrays of ``state`` for :func:`apply_update` (empty where unused)."""
        arrays = list(state[1:])
        for name, a in zip(state._fields[1:], arrays, strict=True):
            if not isinstance(a, np.ndarray) or a.dtype != params.dtype or (
                a.size and a.shape != params.shape
            ):
                raise ValueError(f"state slot {name} does not match params")
        while len(arrays) < 3:
            arrays.append(params[:0])
        return arrays

    def update(self, grads, state, params, lr=None):
        """Update ``params`` in place from ``grads``; return the advanced state.

        Parameters
        ----------
        grads : ndarray of shape (n_params,)
            Gradient, same dtype and length as ``params``.
        state : NamedTuple
            From :meth:`init` or a previous :meth:`update`.
        params : ndarray of shape (n_params,)
            Flat parameter vector, updated in place.
        lr : float, optional
            Learning rate for this step (a schedule's value); defaults to ``self.lr``.
        """
        _checks.float_array("params", params, ndim=1, writable=True)
        _checks.float_array("grads", grads, ndim=1, dtype=params.dtype)
        _checks.shape("grads", grads, params.shape)
        if lr is not None:
            lr = _checks.real("lr", lr, low=0.0, low_open=True)
        s1, s2, s3 = self.slots(state, params)
        t = state.count + 1
        apply_update(self.code, params, grads, s1, s2, s3, t, self.hyper_vector(params.dtype, lr))
        return state._replace(count=t)


def _unit_interval(name, value):
    return _checks.real(name, value, low=0.0, high=1.0, high_open=True)


class SGD(Optimizer):
    """Plain gradient descent with a fixed learning rate, :math:`w \\leftarrow w - \\xi g`."""

    code = SGD_CODE
    name = "sgd"

    def __init__(self, lr=0.01):
        super().__init__(lr)


class Momentum(Optimizer):
    """Heavy-ball momentum (``torch.optim.SGD(momentum=mu)``)."""

    code = MOMENTUM_CODE
    name = "momentum"

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr)
        self.momentum = _unit_interval("momentum", momentum)

    def _fill(self, hp):
        hp[HP_B1] = self.momentum

    def _init(self, params):
        return MomentumState(0, _zeros_like(params))


class Nesterov(Momentum):
    """Nesterov momentum (``torch.optim.SGD(momentum=mu, nesterov=True)``)."""

    code = NESTEROV_CODE
    name = "nesterov"


class AdaGrad(Optimizer):
    """AdaGrad (``torch.optim.Adagrad``): per-parameter rates from the summed squared gradients."""

    code = ADAGRAD_CODE
    name = "adagrad"

    def __init__(self, lr=0.01, eps=1e-10):
        super().__init__(lr)
        self.eps = _checks.real("eps", eps, low=0.0, low_open=True)

    def _fill(self, hp):
        hp[HP_EPS] = self.eps

    def _init(self, params):
        return AdaGradState(0, _zeros_like(params))


class RMSProp(Optimizer):
    """RMSProp (``torch.optim.RMSprop``), plain or centered."""

    code = RMSPROP_CODE
    name = "rmsprop"

    def __init__(self, lr=0.01, alpha=0.99, eps=1e-8, centered=False):
        super().__init__(lr)
        self.alpha = _unit_interval("alpha", alpha)
        self.eps = _checks.real("eps", eps, low=0.0, low_open=True)
        self.centered = _flag("centered", centered)

    def _fill(self, hp):
        hp[HP_B1] = self.alpha
        hp[HP_EPS] = self.eps
        hp[HP_FLAG] = self.centered

    def _init(self, params):
        return RMSPropState(0, _zeros_like(params), _zeros_like(params))


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``), optionally AMSGrad."""

    code = ADAM_CODE
    name = "adam"
    _decoupled = False

    def __init__(self, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, amsgrad=False):
        super().__init__(lr)
        self.b1 = _unit_interval("b1", b1)
        self.b2 = _unit_interval("b2", b2)
        self.eps = _checks.real("eps", eps, low=0.0, low_open=True)
        self.amsgrad = _flag("amsgrad", amsgrad)

    def _fill(self, hp):
        hp[HP_B1] = self.b1
        hp[HP_B2] = self.b2
        hp[HP_EPS] = self.eps
        hp[HP_WD] = getattr(self, "weight_decay", 0.0)
        hp[HP_FLAG] = self.amsgrad
        hp[HP_DECOUPLED] = self._decoupled

    def _init(self, params):
        vmax = _zeros_like(params) if self.amsgrad else _zeros_like(params)[:0]
        return AdamState(0, _zeros_like(params), _zeros_like(params), vmax)


class AdamW(Adam):
    """AdamW (``torch.optim.AdamW``): Adam with decoupled weight decay."""

    name = "adamw"
    _decoupled = True

    def __init__(self, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(lr, b1, b2, eps, amsgrad)
        self.weight_decay = _checks.real("weight_decay", weight_decay, low=0.0)


class _TorchMoments(Optimizer):
    """What NAdam and RAdam share: Adam's hyper-parameters, L2 or decoupled weight decay, and
    the two moment slots (no rule code: not an optimizer of its own)."""

    def __init__(self, lr, b1, b2, eps, weight_decay, decoupled_weight_decay):
        super().__init__(lr)
        self.b1 = _unit_interval("b1", b1)
        self.b2 = _unit_interval("b2", b2)
        self.eps = _checks.real("eps", eps, low=0.0, low_open=True)
        self.weight_decay = _checks.real("weight_decay", weight_decay, low=0.0)
        self.decoupled_weight_decay = _flag("decoupled_weight_decay", decoupled_weight_decay)

    def _fill(self, hp):
        hp[HP_B1] = self.b1
        hp[HP_B2] = self.b2
        hp[HP_EPS] = self.eps
        hp[HP_WD] = self.weight_decay
        hp[HP_DECOUPLED] = self.decoupled_weight_decay

    def _init(self, params):
        return MomentsState(0, _zeros_like(params), _zeros_like(params))


class NAdam(_TorchMoments):
    r"""NAdam (``torch.optim.NAdam``): Adam with Nesterov momentum, the momentum
    :math:`\mu_t = \beta_1 (1 - \frac12 0.96^{t\psi})` growing over the steps."""

    code = NADAM_CODE
    name = "nadam"

    def __init__(self, lr=2e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
                 momentum_decay=4e-3, decoupled_weight_decay=False):
        super().__init__(lr, b1, b2, eps, weight_decay, decoupled_weight_decay)
        self.momentum_decay = _checks.real("momentum_decay", momentum_decay, low=0.0)

    def _fill(self, hp):
        super()._fill(hp)
        hp[HP_MOMENTUM_DECAY] = self.momentum_decay


class RAdam(_TorchMoments):
    """RAdam (``torch.optim.RAdam``): Adam whose adaptive step is rectified by the variance of
    its early second-moment estimate, and plain momentum SGD while that is undefined."""

    code = RADAM_CODE
    name = "radam"

    def __init__(self, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False):
        super().__init__(lr, b1, b2, eps, weight_decay, decoupled_weight_decay)


#: Optimizer classes by name.
OPTIMIZERS = {
    cls.name: cls
    for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSProp, Adam, AdamW, NAdam, RAdam)
}


def make_optimizer(name, **hyper):
    """Build an optimizer from its name (see :data:`OPTIMIZERS`) and hyper-parameters."""
    return OPTIMIZERS[_checks.choice("optimizer", name, OPTIMIZERS)](**hyper)
