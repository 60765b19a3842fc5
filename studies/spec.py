"""Studies as data: settings, runs, config hashes. This docstring is the Study API.

A *study* asks one question and answers it with a grid of **settings** (problem x model x
optimizer x hyper-parameters x batch size x epochs), a list of **seeds**, and an **analysis**
that turns the stored results into figures, tables and a conclusion. A *run* is one setting with
one seed; it is identified by ``(study, config_hash, seed)`` in the results store, where the
config hash is the SHA-256 of the setting's canonical JSON (plus the backend). Labels and
factors are *not* hashed: renaming a setting keeps its results.

Writing a study
---------------
Create ``studies/study_<name>.py``; the registry imports every such module. It registers a
factory that takes the profile (``"quick"`` or ``"full"``) and returns a :class:`Study`::

    from .registry import register
    from .spec import Setting, Study, grid

    @register("gd_variants")
    def make(profile):
        quick = profile == "quick"
        settings = [
            Setting(
                problem="xor", problem_args={"n": 200 if quick else 1000},
                model={"hidden": [8], "activation": "tanh"},    # sizes from the data
                optimizer="sgd", hyper={"lr": f["lr"]},
                batch_size={"batch": None, "mini-batch": 16, "stochastic": 1}[f["method"]],
                epochs=30 if quick else 200,
                factors=f,                    # what the analysis groups by; label from it
            )
            for f in grid(method=["batch", "mini-batch", "stochastic"], lr=[0.1, 0.5])
        ]
        return Study("gd_variants", title="...", question="...", settings=settings,
                     seeds=range(3 if quick else 10), analysis=analyse)

    def analyse(results, report):
        ...   # see dlbasics.studies.report and dlbasics.studies.stats

Setting fields (all plain JSON-able data)
    ``problem``, ``problem_args``
        A name of :data:`dlbasics.studies.datasets.PROBLEMS` and its keyword arguments (``n``,
        ``noise``, ...). ``data_seed`` (default ``None``): each run seed draws its own data and
        split, so the intervals over seeds include the variance of the data; an integer fixes
        one draw for every seed (a study that needs that says so in its notes).
    ``model``
        :class:`dlbasics.models.MLP` keyword arguments without ``seed``/``backend``. Instead of
        ``sizes`` you may give ``hidden`` (hidden widths): sizes become ``[n_features, *hidden,
        n_outputs]``. ``output``/``loss`` default by the problem's task: sigmoid + binary
        cross-entropy (binary), softmax + cross-entropy (multi-class), identity + squared
        (regression). A classification problem with ``loss="squared"`` trains on one-hot (or
        0/1) targets; its per-epoch accuracy is then NaN in the history (the MLP counts accuracy
        for classifiers only) but the summary's accuracies are computed from the outputs.
    ``optimizer``, ``hyper``
        A name of :data:`dlbasics.models.optimizers.OPTIMIZERS` and its hyper-parameters (``lr``,
        ...).
    ``batch_size``
        ``None`` batch GD, ``1`` stochastic, ``k`` mini-batch (as :func:`dlbasics.models.train`).
    ``epochs``, ``metrics``
        ``metrics="full"`` (default) records the test-mode training loss/accuracy at epochs
        0..E besides the validation ones; ``"running"`` only the cheap running loss.
    ``schedule``
        Optional learning-rate schedule ``{"name": "step_decay", "step_size": 10, ...}`` (names
        in :data:`SCHEDULES`; ``lr`` defaults to ``hyper["lr"]``). Scheduled runs train alone.
    ``label``, ``factors``
        Display name and the factors the analysis groups by (``{"method": "batch", "lr": 0.1}``);
        the label defaults to ``"method=batch, lr=0.1"`` (without factors: the optimizer and
        the start of the config hash). Labels must be unique in a study.

Seeds: each run seed sets the network initialisation (and dropout masks), the shuffling order
and (unless ``data_seed`` is fixed) the data and its split. The CLI's ``--seeds N`` takes the
first N of the study's (report) seeds (extended by consecutive integers when N is larger).

Tuned studies: ``Study(..., settings=(), seeds=REPORT_SEEDS, tuning=Tuning(...))`` declares a
tuning grid instead of settings; :mod:`dlbasics.studies.protocol` runs it on the tuning seeds,
extends grids at their edges, selects one setting per condition and runs those on the report
seeds, then times each alone. The analysis then sees the selected settings x report seeds, with
``results.plan`` (the selection), ``results.tuning`` (the tuning grid's runs, e.g. for
sensitivity curves) and ``results.timing`` (measured seconds per epoch).

How runs execute (:mod:`dlbasics.studies.runner`): each run builds its data, builds the MLP, trains,
evaluates the final network on the test split, and is written to the store as soon as it
finishes. Small networks with the same problem, architecture, batch size and epochs are trained
together by :func:`dlbasics.models.population.train_population` (they may differ in seed, optimizer
and hyper-parameters); a network's history is the same as when trained alone.

What each stored run holds (``Record`` in :mod:`dlbasics.studies.results`): ``status`` (``"ok"``,
``"diverged"``, ``"failed"`` with ``error``), ``history`` (:meth:`dlbasics.models.History.to_dict`:
``full_loss``/``full_accuracy``/``val_loss``/``val_accuracy`` at epochs 0..E, ``train_loss``,
``updates``, ``grad_evals``, ``time``, ``lr`` at epochs 1..E) and ``summary`` (``final_*`` of
those lists, ``best_val_loss``/``best_val_epoch``, ``test_loss``/``test_accuracy`` of the final
network, ``epochs``, ``updates``, ``grad_evals``, ``train_seconds``).

The analysis
    ``analysis(results, report)`` receives a :class:`dlbasics.studies.results.Results` (the study's
    stored runs joined to its settings) and a :class:`dlbasics.studies.report.Report`; it draws
    figures, adds tables and text, and writes the conclusion from the numbers. The framework
    adds the rest of ``reports/<study>/README.md``: question, setup (computed from the
    settings), a table of every setting (run counts; mean [95% CI] of final validation loss and
    accuracy, test loss and accuracy, training seconds), machine, versions and the command.
    A study without an analysis gets :func:`dlbasics.studies.report.default_analysis`. An analysis
    that raises still leaves that page (with the error) and makes the command exit with status 1.

    ``Results`` (one entry per study seed, NaN where a run is missing, failed or diverged, so
    two settings' arrays pair seed by seed):

    * ``results.select(method="batch")`` -> settings whose factors match;
      ``factor_values("lr")``, ``by_factor("method")`` -> ``{value: [settings]}``;
    * ``results.values(setting, "final_val_loss")`` -> ``(n_seeds,)`` summary values;
    * ``results.curves(setting, "val_loss")`` -> ``(n_seeds, n_points)`` history lists, with
      x-values ``results.epochs(setting, "val_loss")`` (eval metrics at epochs 0..E, the others
      at 1..E); ``results.histories(setting)`` -> ``{seed: history}``;
    * ``results.counts(setting)`` -> ``{"ok", "diverged", "failed", "missing"}``.

    :mod:`dlbasics.studies.stats`: ``mean_ci(values, bounds=...)`` (a ``CI`` with ``.fmt()``),
    ``curve_ci``, ``paired(a, b)`` (paired t and Wilcoxon tests on the same seeds),
    ``best_of_grid(results, settings, key="final_val_loss")`` (selection on validation; a
    setting that diverged on any seed loses; test keys are refused), ``time_to_target`` and
    ``times_to_target(results, setting, target, metric, mode)`` (epochs, updates, gradient
    evaluations and seconds to reach a loss or an accuracy).

    :mod:`dlbasics.studies.report`: ``with report.figure(name, caption, ncols=2) as (fig, axes):``
    (saved as PNG + SVG and shown in the README), ``band(ax, x, curves, label,
    bounds=POSITIVE)`` (mean line and 95% CI band over seeds), ``report.table(headers, rows,
    caption)``, ``report.text(markdown)``, ``report.section(title)``,
    ``report.conclusion(markdown)``; ``fmt``, ``fmt_ci(values, bounds=FRACTION)`` format
    numbers (4 significant digits). Figures are never shown.

    A sketch (see ``studies/study_gd_demo.py`` for a complete one)::

        def analyse(results, report):
            best = {m: stats.best_of_grid(results, results.select(method=m))[0]
                    for m in results.factor_values("method")}
            with report.figure("curves", "Validation loss at the best lr") as (_, ax):
                for m, s in best.items():
                    band(ax, results.epochs(s), results.curves(s, "val_loss"), m,
                         bounds=POSITIVE)
                ax.set_xlabel("epoch"); ax.set_ylabel("validation loss"); ax.legend()
            p = stats.paired(results.values(best["batch"], "final_val_loss"),
                             results.values(best["stochastic"], "final_val_loss"))
            report.conclusion(f"batch - stochastic: {fmt(p['diff'])}, p = {fmt(p['t_p'])}")

Profiles: ``quick`` must stay tiny (a few hundred samples, tens of epochs, 2-3 seeds: the whole
of every quick study well under a minute on 2 cores; the tests and the README's main command
run it); ``full`` is what the committed ``reports/`` shows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

PROFILES = ("quick", "full")
BACKENDS = ("cpu", "cuda", "numpy")
METRICS = ("full", "running")

#: Schedule names of :attr:`Setting.schedule` -> class names in :mod:`dlbasics.models.schedules`.
SCHEDULES = {
    "constant": "Constant",
    "inverse_scaling": "InverseScaling",
    "step_decay": "StepDecay",
    "cosine": "Cosine",
}


def _plain(value, where):
    """``value`` as plain JSON data (tuples -> lists, numpy scalars -> Python)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{where}: non-finite number {v} in a setting")
        return v
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, Sequence):
        return [_plain(v, where) for v in value]
    raise TypeError(f"{where}: {type(value).__name__} is not plain JSON data ({value!r})")


def canonical_json(obj):
    """Canonical JSON (sorted keys, no spaces) of plain data: the input of the config hash."""
    return json.dumps(_plain(obj, "config"), sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def config_hash(config):
    """SHA-256 hex digest of :func:`canonical_json` of ``config``."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def grid(**axes):
    """Cartesian product of named axes, as dicts in order (last axis fastest).

    ``grid(method=["batch", "sgd"], lr=[0.1, 1.0])`` gives ``{"method": "batch", "lr": 0.1}``,
    ``{"method": "batch", "lr": 1.0}``, ...
    """
    names = list(axes)
    for values in itertools.product(*(list(axes[n]) for n in names)):
        yield dict(zip(names, values, strict=True))


def _fmt(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True, eq=False)
class Setting:
    """One point of a study's grid (see the module docstring for the fields)."""

    problem: str
    model: dict
    optimizer: str = "sgd"
    hyper: dict = field(default_factory=dict)
    batch_size: int | None = None
    epochs: int = 10
    problem_args: dict = field(default_factory=dict)
    data_seed: int | None = None
    metrics: str = "full"
    schedule: dict | None = None
    label: str = ""
    factors: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("problem", "optimizer"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a name (str), got {getattr(self, name)!r}")
        for name in ("model", "hyper", "problem_args", "factors"):
            if not isinstance(getattr(self, name), Mapping):
                raise TypeError(f"{name} must be a dict, got {type(getattr(self, name)).__name__}")
            object.__setattr__(self, name, _plain(dict(getattr(self, name)), name))
        if self.schedule is not None:
            if not isinstance(self.schedule, Mapping):
                raise TypeError(f"schedule must be a dict or None, got {self.schedule!r}")
            object.__setattr__(self, "schedule", _plain(dict(self.schedule), "schedule"))
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool) or not isinstance(self.batch_size, numbers.Integral)
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be None or a positive integer, got "
                             f"{self.batch_size!r}")
        if (isinstance(self.epochs, bool) or not isinstance(self.epochs, numbers.Integral)
                or self.epochs < 0):
            raise ValueError(f"epochs must be a non-negative integer, got {self.epochs!r}")
        if not isinstance(self.metrics, str) or self.metrics not in METRICS:
            raise ValueError(f"metrics must be one of {METRICS}, got {self.metrics!r}")
        if self.data_seed is not None and (isinstance(self.data_seed, bool) or not isinstance(
                self.data_seed, numbers.Integral) or self.data_seed < 0):
            raise ValueError(f"data_seed must be None (per run seed) or an integer >= 0, got "
                             f"{self.data_seed!r}")
        if "seed" in self.model or "backend" in self.model:
            raise ValueError("model must not set 'seed' or 'backend' (the runner sets them)")
        if "sizes" not in self.model and "hidden" not in self.model:
            raise ValueError("model needs 'sizes' or 'hidden'")
        if self.schedule is not None and self.schedule.get("name") not in SCHEDULES:
            raise ValueError(f"schedule name must be one of {list(SCHEDULES)}, got "
                             f"{self.schedule.get('name')!r}")
        if not self.label:
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in self.factors.items())
            object.__setattr__(self, "label", label or f"{self.optimizer}-{self.config_hash()[:8]}")

    def config(self, backend="cpu"):
        """The hashed configuration: everything that determines the numbers, plus the backend."""
        return {
            "problem": self.problem,
            "problem_args": self.problem_args,
            "data_seed": None if self.data_seed is None else int(self.data_seed),
            "model": self.model,
            "optimizer": self.optimizer,
            "hyper": self.hyper,
            "batch_size": None if self.batch_size is None else int(self.batch_size),
            "epochs": int(self.epochs),
            "metrics": self.metrics,
            "schedule": self.schedule,
            "backend": backend,
        }

    def config_hash(self, backend="cpu"):
        return config_hash(self.config(backend))

    def data_seed_for(self, seed):
        """The seed of the data a run with ``seed`` trains on."""
        return int(seed) if self.data_seed is None else int(self.data_seed)

    def replace(self, **changes):
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Run:
    """One setting with one seed, on one backend, in one study."""

    study: str
    setting: Setting
    seed: int
    backend: str = "cpu"

    @property
    def config(self):
        return self.setting.config(self.backend)

    @property
    def config_hash(self):
        return self.setting.config_hash(self.backend)

    @property
    def key(self):
        return (self.study, self.config_hash, self.seed)

    def payload(self, profile=""):
        """Plain, picklable description of the run sent to the worker that executes it."""
        return {
            "study": self.study,
            "config": self.config,
            "config_hash": self.config_hash,
            "seed": int(self.seed),
            "label": self.setting.label,
            "factors": self.setting.factors,
            "profile": profile,
        }


@dataclass
class Study:
    """A question, a grid of settings, seeds and an analysis.

    Parameters
    ----------
    name : str
        Registry name (a directory name of the reports: letters, digits, ``_``, ``-``).
    title, question : str
        Heading and the question the report answers.
    settings : sequence of Setting
    seeds : sequence of int
    analysis : callable, optional
        ``analysis(results, report)`` (see the module docstring).
    profile : {"quick", "full"}
        Filled in by the registry.
    notes : str
        Extra Markdown for the setup section (what is held fixed and why).
    tuning : Tuning, optional
        A tuning grid (:mod:`dlbasics.studies.protocol`); ``settings`` is then left empty and
        becomes the selected settings once the tuning stage is complete; ``seeds`` are the
        report seeds.
    timing_repeats : int
        Runs of each compared setting, alone, in the timing pass (0: no timing pass).
    references : sequence of dict
        Published numbers this study reproduces: ``{"name", "source", "paper_value",
        "setting", "key"}``; the report adds ``ours`` and ``ci`` (mean and 95% interval of the
        summary ``key`` over the report seeds) of the setting named by ``setting``: a label,
        or a dict of factors (a tuned study's condition, whose label holds the tuned values).
    """

    name: str
    title: str
    question: str
    settings: Sequence[Setting]
    seeds: Sequence[int]
    analysis: Callable | None = None
    profile: str = "quick"
    notes: str = ""
    tuning: object = None
    timing_repeats: int = 0
    references: Sequence[dict] = ()
    plan: object = None

    def __post_init__(self):
        self.settings = list(self.settings)
        self.seeds = [int(s) for s in self.seeds]
        self.references = [dict(r) for r in self.references]
        if self.tuning is not None:
            overlap = set(self.tuning.tune_seeds) & set(self.seeds)
            if overlap:
                raise ValueError(f"study {self.name!r}: report seeds {sorted(overlap)} are "
                                 "also tuning seeds")
            if not self.settings:
                self.settings = self.tuning.initial_settings()
        if not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise ValueError(f"study name must be letters, digits, '_' or '-', got {self.name!r}")
        if not self.settings:
            raise ValueError(f"study {self.name!r} has no settings")
        if not self.seeds:
            raise ValueError(f"study {self.name!r} has no seeds")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"study {self.name!r}: seeds must be distinct and >= 0")
        labels = [s.label for s in self.settings]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"study {self.name!r}: duplicate setting labels {dup}")
        hashes = [s.config_hash() for s in self.settings]
        if len(set(hashes)) != len(hashes):
            raise ValueError(f"study {self.name!r}: two settings have the same configuration")

    def validate(self):
        """Check problem and optimizer names, problem arguments and optional packages.

        Raises ``ValueError``/``TypeError``, or :class:`dlbasics.studies.datasets.MissingExtra` (an
        ``ImportError``) naming the extra to install. Imports :mod:`models`.
        """
        from ..models.optimizers import OPTIMIZERS
        from . import datasets

        for s in self.settings:
            datasets.check(s.problem, s.problem_args)
            datasets.require(s.problem)
            if s.optimizer not in OPTIMIZERS:
                raise ValueError(f"study {self.name!r}, setting {s.label!r}: unknown optimizer "
                                 f"{s.optimizer!r}; known: {', '.join(OPTIMIZERS)}")

    def with_seeds(self, n):
        """A copy using ``n`` seeds: the first ``n`` of :attr:`seeds`, extended if needed."""
        if n is None:
            return self
        n = int(n)
        if n < 1:
            raise ValueError(f"--seeds must be >= 1, got {n}")
        seeds = list(self.seeds[:n])
        nxt = max(self.seeds) + 1
        while len(seeds) < n:
            seeds.append(nxt)
            nxt += 1
        return replace(self, seeds=seeds)

    def check_protocol(self):
        """The ``full`` profile of a tuned study needs >= 3 tuning and >= 10 report seeds."""
        if self.tuning is not None and self.profile == "full" and (
                len(self.tuning.tune_seeds) < 3 or len(self.seeds) < 10):
            raise ValueError(f"study {self.name!r}: the full profile needs at least 3 tuning "
                             f"seeds and 10 report seeds, got {len(self.tuning.tune_seeds)} "
                             f"and {len(self.seeds)}")

    @property
    def data_resampled(self):
        """Whether every setting draws its data per run seed."""
        return all(s.data_seed is None for s in self.settings)

    def resolved(self, plan):
        """The report stage of a tuned study: the selected settings on the report seeds."""
        return replace(self, settings=plan.selected or self.settings, plan=plan)

    def tuning_runs(self, setting, backend="cpu"):
        """The runs of one tuning-grid setting on the tuning seeds."""
        return [Run(self.name, setting, seed, backend) for seed in self.tuning.tune_seeds]

    def runs(self, backend="cpu"):
        """Every run of the study, setting by setting, seed by seed."""
        return [Run(self.name, s, seed, backend) for s in self.settings for seed in self.seeds]

    def setting(self, label):
        """The setting with this label."""
        for s in self.settings:
            if s.label == label:
                return s
        raise KeyError(f"study {self.name!r} has no setting {label!r}")
