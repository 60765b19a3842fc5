"""The multi-layer perceptron of the lecture notes, on one flat parameter vector."""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import secrets
import zipfile

import numpy as np

from ..kernels import _checks
from ..kernels.activations import ACTIVATIONS
from ..kernels.config import LEAKY_SLOPE
from ..kernels.losses import BCE_LOGITS, CE_LOGITS, SQUARED, default_eps
from ..kernels.views import aligned_zeros
from .backends import BACKENDS as _ENGINES
from .backends import PREDICT_CHUNK  # noqa: F401  (re-exported: its historical home)

#: The built-in backends' names (the registry itself: :data:`dlbasics.models.backends.BACKENDS`).
BACKENDS = tuple(_ENGINES)
OUTPUTS = tuple(ACTIVATIONS)
LOSS_NAMES = ("squared", "binary_cross_entropy", "cross_entropy")
INITS = ("glorot", "he")


class Workspace:
    """Flat buffers for one MLP and a largest batch size ``batch`` (see
    :mod:`dlbasics.models._core`).

    Attributes
    ----------
    ws : ndarray
        The float buffer holding, per layer, ``z``, ``a``, dropped inputs and masks, then the
        gathered inputs, gathered targets and two delta buffers.
    offs : ndarray of shape (n_layers + 1, 4)
        Start of each region in ``ws`` (``-1`` where a layer has no dropout).
    lbuf : ndarray of shape (batch,)
        Gathered integer labels.
    """

    def __init__(self, sizes, keep, batch, dtype):
        L = len(sizes) - 1
        offs = np.full((L + 1, 4), -1, dtype=np.int64)
        pos = 0

        def take(width):
            nonlocal pos
            start = pos
            pos += batch * width
            return start

        for l in range(L):
            offs[l, 0] = take(sizes[l + 1])
            offs[l, 1] = take(sizes[l + 1])
            if keep[l] < 1.0:
                offs[l, 2] = take(sizes[l])
                offs[l, 3] = take(sizes[l])
        widest = max(sizes)
        offs[L, 0] = take(sizes[0])
        offs[L, 1] = take(sizes[-1])
        offs[L, 2] = take(widest)
        offs[L, 3] = take(widest)
        self.batch = batch
        self.offs = offs
        self.ws = np.zeros(pos, dtype=dtype)
        self.lbuf = np.zeros(batch, dtype=np.int64)


def _aligned_copy(a):
    """A writable copy of the 1-D ``a`` starting on a cache line."""
    out = aligned_zeros(a.shape[0], a.dtype)
    out[...] = a
    return out


def _sizes(sizes):
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        raise TypeError("sizes must be a sequence of layer widths like [2, 16, 16, 1]")
    if len(sizes) < 2:
        raise ValueError(f"sizes must have at least 2 entries (inputs, outputs), got {sizes}")
    return [_checks.integer("sizes", s, low=1) for s in sizes]


class MLP:
    """A fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths including inputs and outputs, e.g. ``[2, 16, 16, 1]``.
    activation : str or sequence of str, default="tanh"
        Hidden activation, or one per hidden layer (any of
        :data:`dlbasics.kernels.activations.ACTIVATIONS` but softmax).
    output : str, default="identity"
        Output activation: ``"identity"`` (regression), ``"sigmoid"`` (binary or multi-label),
        ``"softmax"`` (multi-class), or any other elementwise activation with squared loss.
    loss : {"squared", "binary_cross_entropy", "cross_entropy"}, default="squared"
        Training loss. Sigmoid + binary cross-entropy and softmax + cross-entropy are computed
        from the logits (stable, and ``dL/dz = y* - y`` exactly as in the notes).
    keep_prob : float or sequence of float, optional
        Dropout keep probability ``p``. A float applies to every hidden layer; a sequence gives
        one value per layer input (index 0 is the input layer). ``None``: no dropout.
    dropout : {"scale", "inverted"}, default="scale"
        ``"scale"``: the notes' rule (train with masks, scale outgoing weights by ``p`` at test
        time); ``"inverted"``: scale kept units by ``1/p`` at training, nothing at test time.
    init : {"glorot", "he"}, default="glorot"
        Weight initialisation (Glorot uniform or He normal); biases start at zero.
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
    backend : {"cpu", "numpy", "cuda"}, default="cpu"
        Numba kernels on the CPU, plain NumPy (the baseline), or numba.cuda.
    seed : int, default=0
        Seed of the initialisation and of the dropout masks.

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        All parameters, layer by layer: ``W`` (row-major ``(n_in, n_out)``) then ``b``.
    weights, biases : list of ndarray
        Views into ``params``.
    engine : dlbasics.models.backends.Backend
        The backend object that does the arithmetic (one class per backend, one interface);
        the model and :func:`dlbasics.models.train` call only its methods.
    """

    def __init__(self, sizes, activation="tanh", output="identity", loss="squared",
                 keep_prob=None, dropout="scale", init="glorot", dtype=np.float32,
                 backend="cpu", seed=0):
        self.sizes = _sizes(sizes)
        L = len(self.sizes) - 1
        if isinstance(activation, str):
            _checks.choice("activation", activation, ACTIVATIONS)
            hidden = [activation] * (L - 1)
        else:
            if not isinstance(activation, (list, tuple)):
                raise TypeError(
                    f"activation must be a name or a list of names, got {type(activation).__name__}"
                )
            hidden = list(activation)
            if len(hidden) != L - 1:
                raise ValueError(
                    f"activation must be a name or a list of {L - 1} names (one per hidden "
                    f"layer), got {len(hidden)}"
                )
        for name in hidden:
            _checks.choice("activation", name, ACTIVATIONS)
            if name == "softmax":
                raise ValueError("activation 'softmax' is only allowed as the output")
        self.activation = activation if isinstance(activation, str) else list(activation)
        self.output = _checks.choice("output", output, OUTPUTS)
        self.loss_name = _checks.choice("loss", loss, LOSS_NAMES)
        self.dropout = _checks.choice("dropout", dropout, ("scale", "inverted"))
        self.init = _checks.choice("init", init, INITS)
        self.backend = _checks.choice("backend", backend, tuple(_ENGINES))
        if np.dtype(dtype) not in _checks.FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        self.dtype = np.dtype(dtype)
        self.seed = _checks.integer("seed", seed, low=0, high=2**63 - 1)
        self.keep_prob = keep_prob
        self.keep = self._keep_vector(keep_prob, L)
        self.codes = np.array([ACTIVATIONS[a] for a in hidden] + [ACTIVATIONS[output]],
                              dtype=np.int64)
        self.loss_code, self.fused = self._resolve_loss()
        self.eps = default_eps(self.dtype)
        self.slope = self.dtype.type(LEAKY_SLOPE)

        layout = np.zeros((L, 4), dtype=np.int64)
        off = 0
        for l in range(L):
            n_in, n_out = self.sizes[l], self.sizes[l + 1]
            layout[l] = (n_in, n_out, off, off + n_in * n_out)
            off += n_in * n_out + n_out
        self.layout = layout
        self.n_params = off
        # on cache lines: threads updating neighbouring columns share no line (colsplit)
        self.params = aligned_zeros(off, self.dtype)
        self.grad = aligned_zeros(off, self.dtype)
        self._bind_views()
        self.initialize(self.seed)
        self._workspaces = {}
        self.engine = _ENGINES[self.backend](self)

    # -- pickling: views must be rebound, buffers rebuilt ------------------------------------
    def __getstate__(self):
        self.engine.pull_params()
        state = self.__dict__.copy()
        for key in ("weights", "biases", "_workspaces", "engine"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        # writable even if unpickled read-only, and on cache lines
        self.params = _aligned_copy(self.params)
        self.grad = _aligned_copy(self.grad)
        self._workspaces = {}
        self._bind_views()
        self.engine = _ENGINES[self.backend](self)

    # -- construction helpers ------------------------------------------------------------------
    @staticmethod
    def _keep_vector(keep_prob, L):
        keep = np.ones(L, dtype=np.float64)
        if keep_prob is None:
            return keep
        if isinstance(keep_prob, numbers.Real) and not isinstance(keep_prob, bool):
            keep[1:] = _checks.real("keep_prob", keep_prob, low=0.0, high=1.0, low_open=True)
            return keep
        values = list(keep_prob)
        if len(values) != L:
            raise ValueError(
                f"keep_prob must be a float or a list of {L} values (one per layer input, the "
                f"first for the input layer), got {len(values)}"
            )
        for l, v in enumerate(values):
            keep[l] = _checks.real("keep_prob", v, low=0.0, high=1.0, low_open=True)
        return keep

    def _resolve_loss(self):
        out, loss = self.output, self.loss_name
        if loss == "squared":
            return SQUARED, out == "identity"
        if loss == "binary_cross_entropy":
            if out != "sigmoid":
                raise ValueError(
                    f"loss 'binary_cross_entropy' needs output='sigmoid', got output={out!r}"
                )
            return BCE_LOGITS, True
        if out != "softmax":
            raise ValueError(f"loss 'cross_entropy' needs output='softmax', got output={out!r}")
        return CE_LOGITS, True

    def _bind_views(self):
        self.weights = []
        self.biases = []
        for n_in, n_out, w_off, b_off in self.layout:
            self.weights.append(self.params[w_off : w_off + n_in * n_out].reshape(n_in, n_out))
            self.biases.append(self.params[b_off : b_off + n_out])

    def initialize(self, seed=None):
        """(Re)draw the weights (Glorot uniform or He normal, float64 then cast); zero biases."""
        rng = np.random.default_rng(self.seed if seed is None else seed)
        for W, b in zip(self.weights, self.biases, strict=True):
            n_in, n_out = W.shape
            if self.init == "glorot":
                limit = np.sqrt(6.0 / (n_in + n_out))
                W[...] = rng.uniform(-limit, limit, size=(n_in, n_out))
            else:
                W[...] = rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_in, n_out))
            b[...] = 0.0
        if hasattr(self, "engine"):  # not while __init__ draws the first weights
            self.engine.push_params()

    # -- configuration -------------------------------------------------------------------------
    @property
    def n_layers(self):
        return len(self.sizes) - 1

    @property
    def n_outputs(self):
        return self.sizes[-1]

    @property
    def is_classifier(self):
        return self.loss_name != "squared"

    def config(self):
        """Constructor arguments as a JSON-serialisable dict."""
        keep = self.keep_prob
        if keep is not None and not isinstance(keep, numbers.Real):
            keep = [float(v) for v in keep]
        return {
            "sizes": list(self.sizes),
            "activation": self.activation,
            "output": self.output,
            "loss": self.loss_name,
            "keep_prob": keep,
            "dropout": self.dropout,
            "init": self.init,
            "dtype": self.dtype.name,
            "backend": self.backend,
            "seed": self.seed,
        }

    def __repr__(self):
        return "MLP(" + ", ".join(f"{k}={v!r}" for k, v in self.config().items()) + ")"

    def set_params_vector(self, values):
        """Copy ``values`` (shape ``(n_params,)``) into :attr:`params` (views stay valid)."""
        values = np.asarray(values)
        _checks.shape("values", values, (self.n_params,))
        self.params[...] = values
        self.engine.push_params()

    # -- data checks ---------------------------------------------------------------------------
    def check_X(self, X, name="X"):
        """Validate inputs and cast them explicitly to the model's dtype (C-contiguous)."""
        if not isinstance(X, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(X).__name__}")
        if X.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{name} must have at least one sample, got shape {X.shape}")
        if X.shape[1] != self.sizes[0]:
            raise ValueError(
                f"{name} must have {self.sizes[0]} features (sizes[0]), got {X.shape[1]}"
            )
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not np.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or inf")
        return X

    def check_y(self, y, n, name="y"):
        """Validate targets for ``n`` samples; return ``(Y, labels, dense_targets)``.

        ``Y`` is a float ``(n, n_outputs)`` array of the model's dtype (squared loss, binary
        cross-entropy, one-hot cross-entropy) and ``labels`` an int64 ``(n,)`` array of class
        indices (cross-entropy with integer labels); the unused one is a dummy.
        """
        if not isinstance(y, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(y).__name__}")
        k = self.n_outputs
        dummy_Y = np.zeros((1, k), dtype=self.dtype)
        dummy_l = np.zeros(1, dtype=np.int64)
        if self.loss_name == "cross_entropy" and y.ndim == 1:
            if y.dtype.kind not in "iu":
                raise TypeError(
                    f"{name} must hold integer class labels for cross_entropy, got dtype {y.dtype}"
                )
            labels = _checks.int_labels(name, y, n, k)
            return dummy_Y, labels, False
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be numeric, got dtype {y.dtype}")
        if y.ndim == 1 and k == 1:
            y = y.reshape(-1, 1)
        if y.shape != (n, k):
            raise ValueError(f"{name} must have shape ({n}, {k}) or ({n},), got {y.shape}")
        Y = np.ascontiguousarray(y, dtype=self.dtype)
        if not np.isfinite(Y).all():
            raise ValueError(f"{name} contains NaN or inf")
        if self.loss_name != "squared" and (Y.min() < 0 or Y.max() > 1):
            raise ValueError(f"{name} must lie in [0, 1] for {self.loss_name}")
        return Y, dummy_l, True

    # -- workspaces ----------------------------------------------------------------------------
    def workspace(self, batch):
        """The reused :class:`Workspace` for batches of up to ``batch`` rows."""
        ws = self._workspaces.get(batch)
        if ws is None:
            if len(self._workspaces) >= 4:
                self._workspaces.pop(next(iter(self._workspaces)))
            ws = Workspace(self.sizes, self.keep, batch, self.dtype)
            self._workspaces[batch] = ws
        return ws

    # -- compute -------------------------------------------------------------------------------
    def forward(self, X):
        """Output activations at test time (dropout: weight scaling or nothing if inverted).

        Parameters
        ----------
        X : ndarray of shape (n_samples, sizes[0])

        Returns
        -------
        ndarray of shape (n_samples, sizes[-1])
        """
        return self.engine.forward(self.check_X(X))

    def loss(self, X, y):
        """Mean training loss of the full network at test time (dropout by its test rule)."""
        X = self.check_X(X)
        return self.evaluate(X, *self.check_y(y, X.shape[0]))[0]

    def evaluate(self, X, Y, labels, dense):
        """Unchecked: ``(mean loss, accuracy)`` of the test-mode network on checked data.

        The accuracy is NaN for regressors.
        """
        return self.engine.evaluate(X, Y, labels, dense)

    def gradient(self, X, y, step=0, alpha=0.0):
        """Mean loss of the batch and its gradient w.r.t. :attr:`params` (training mode).

        Parameters
        ----------
        X : ndarray of shape (n_samples, sizes[0])
        y : ndarray
            Targets: ``(n_samples,)`` or ``(n_samples, n_outputs)`` floats, or integer class
            labels ``(n_samples,)`` for cross-entropy.
        step : int, default=0
            Update count: with dropout, the masks are those of this step (so a fixed ``step``
            means a fixed mask).
        alpha : float >= 0, default=0.0
            L2 penalty ``alpha / (2 n) * sum ||W||^2`` over the weights (not the biases) of the
            ``n`` rows, added to the loss and its gradient (scikit-learn's ``alpha``).

        Returns
        -------
        loss : float
            Mean loss over the batch.
        grad : ndarray of shape (n_params,)
            Laid out like :attr:`params`.
        """
        X = self.check_X(X)
        Y, labels, dense = self.check_y(y, X.shape[0])
        step = _checks.integer("step", step, low=0)
        alpha = _checks.real("alpha", alpha, low=0.0)
        order = np.arange(X.shape[0], dtype=np.int64)
        value = self.batch_gradient(X, Y, labels, dense, order, 0, X.shape[0], step, alpha)
        return value, np.array(self.engine.grad_host())

    def batch_gradient(self, X, Y, labels, dense, order, start, stop, step, alpha=0.0):
        """Unchecked: loss of rows ``order[start:stop]``, gradient into :attr:`grad` (with the
        L2 penalty ``alpha`` of the weights, see :meth:`gradient`)."""
        return self.engine.batch_gradient(X, Y, labels, dense, order, start, stop, step, alpha)

    def forward_mc(self, X, n_nets=100, seed=None):
        """Monte-Carlo dropout: average the outputs of ``n_nets`` sampled thinned networks.

        The alternative the notes set weight scaling against: instead of one network with
        weights scaled by ``p``, average the predictions of many networks thinned by random
        masks (each example of each network with its own mask).

        Parameters
        ----------
        X : ndarray of shape (n_samples, sizes[0])
        n_nets : int, default=100
            Number of thinned networks averaged.
        seed : int, optional
            Seed of the masks (default: the model's seed plus one, so they differ from the
            training masks of the first steps).

        Returns
        -------
        ndarray of shape (n_samples, sizes[-1])
        """
        X = self.check_X(X)
        n_nets = _checks.integer("n_nets", n_nets, low=1)
        seed = self.seed + 1 if seed is None else _checks.integer("seed", seed, low=0)
        return self.engine.forward_mc(X, n_nets, seed)

    def predict_proba(self, X):
        """Class probabilities: ``(n, n_classes)`` for softmax, ``(n, 2)`` for one sigmoid."""
        if self.output not in ("sigmoid", "softmax"):
            raise ValueError("predict_proba needs output 'sigmoid' or 'softmax'")
        p = self.forward(X)
        if self.output == "sigmoid" and self.n_outputs == 1:
            return np.hstack([1 - p, p])
        return p

    def predict(self, X):
        """Class labels (argmax for softmax, ``p > 0.5`` for sigmoid) or regression outputs."""
        p = self.forward(X)
        if self.output == "softmax":
            return p.argmax(axis=1)
        if self.output == "sigmoid":
            labels = (p > 0.5).astype(np.int64)
            return labels[:, 0] if self.n_outputs == 1 else labels
        return p[:, 0] if self.n_outputs == 1 else p

    def accuracy(self, X, y):
        """Fraction of correct class predictions (classifiers only)."""
        if not self.is_classifier:
            raise ValueError("accuracy needs a classifier (loss other than 'squared')")
        X = self.check_X(X)
        return self.evaluate(X, *self.check_y(y, X.shape[0]))[1]

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path):
        """Save parameters and configuration to a ``.npz`` file (no pickle).

        Parameters
        ----------
        path : str, PathLike or binary file
            A file name (``.npz`` is appended when missing, as :func:`numpy.savez` does) or an
            open binary file. A file name is written to a temporary file in the same directory
            that is renamed to ``path`` only once complete and flushed to disk, so ``path``
            always holds either the earlier file or the whole new one.

        Raises
        ------
        OSError
            The directory is not writable or the disk is full (a subclass such as
            ``PermissionError`` where one fits); the message names ``path``, and the temporary
            file is removed.
        """
        self.engine.pull_params()
        arrays = {"params": self.params, "config": np.array(json.dumps(self.config()))}
        if not isinstance(path, (str, os.PathLike)):
            np.savez(path, **arrays)
            return
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                           f".{os.path.basename(path)}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **arrays)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise OSError(exc.errno, f"could not save the model to {path}: "
                                     f"{exc.strerror or exc}", path) from exc

    @classmethod
    def load(cls, path, backend=None):
        """Load a model written by :meth:`save` (``allow_pickle=False``).

        Raises
        ------
        ValueError
            The file is not a whole dlbasics model file: truncated, altered (the ZIP checksums
            of ``.npz`` files catch changed bytes) or of something else; the message names it.
        OSError
            The file cannot be opened (missing, unreadable).
        """
        named = isinstance(path, (str, os.PathLike))
        name = os.fspath(path) if named else getattr(path, "name", "the file object")
        with contextlib.ExitStack() as stack:
            # a missing or unreadable file: the OSError of open, naming it
            source = stack.enter_context(open(path, "rb")) if named else path
            try:
                with np.load(source, allow_pickle=False) as f:
                    if "params" not in f or "config" not in f:
                        raise ValueError("params/config missing")
                    config = json.loads(str(f["config"]))
                    params = f["params"]
                if not isinstance(config, dict):
                    raise ValueError("its config is not a JSON object")
                if backend is not None:
                    config["backend"] = backend
                model = cls(**config)
            except (ValueError, TypeError, EOFError, KeyError, RuntimeError, OSError,
                    zipfile.BadZipFile) as exc:  # OSError here: a seek into nowhere
                raise ValueError(f"{name} is not a dlbasics model file, or not a whole one "
                                 f"(truncated or altered: {exc})") from exc
        if params.shape != model.params.shape:
            raise ValueError(f"{name}: params shape {params.shape} does not match its config")
        model.set_params_vector(params.astype(model.dtype))
        return model

