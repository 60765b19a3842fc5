"""The two-stage protocol: tune on tuning seeds, extend grids at their edges, report on fresh seeds.

A study with a :class:`Tuning` is run in three stages (DeepOBS and AlgoPerf, made stricter):

1. **Tuning.** Every point of the tuning grid (each *condition* crossed with the grid of its
   tuned *axes*) runs on the tuning seeds (at least 3 in the ``full`` profile). For each
   condition the point with the best mean of the selection metric over the tuning seeds is
   selected (default: the lowest ``best_val_loss``, the validation loss at its best epoch; a
   point that diverged on any tuning seed loses to every point that did not). A run that
   failed (an error, not a divergence: a bug or a fault of the machine) says nothing about its
   point, so its condition is not selected while it stands: each ``dlbasics run`` first runs
   the failed tuning runs again (each at most once a call), and the report names the runs
   that still fail.
2. **Grid edges.** When a selected value sits at the edge of its axis, the axis is extended by
   one step beyond that edge (a geometric step on a ``log`` axis, an arithmetic one on a
   ``linear`` axis, a geometric step of ``1 - x`` on a ``log1m`` axis such as a momentum), the
   new points run on the tuning seeds, and the selection is made again; at most
   :attr:`Tuning.max_extensions` times per edge. An edge that remains (the bound of the axis, or
   the extension limit) is recorded and flagged in the report and in ``summary.json``.
3. **Report.** The selected point of every condition runs on the study's report seeds (at
   least 10, disjoint from the tuning seeds; with data resampled per seed, these are fresh
   data too). Everything the report claims comes from these runs. Then a **timing pass** runs
   each selected setting alone (not in a population), :attr:`Study.timing_repeats` times, in
   the driver process on one thread, and records its per-epoch training times and the
   machine's load: time-to-target and per-second comparisons use those measured times.

Everything is planned from what the results store holds (:func:`plan`), so a study stopped at
any point resumes where it stopped, and ``dlbasics report`` rebuilds the same selection.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Scales of an :class:`Axis` (how a step beyond an edge is taken).
SCALES = ("log", "linear", "log1m")

#: Suffix of the store's study name for the timing pass's rows (a valid study name).
TIMING = "--timing"


def _round(x):
    """Three significant digits: extended grid values stay readable and hash the same."""
    return float(f"{x:.3g}")


@dataclass(frozen=True)
class Axis:
    """A tuned hyper-parameter: its grid and how to step beyond an edge.

    Parameters
    ----------
    values : sequence of float
        The grid (at least one value; sorted on construction).
    scale : {"log", "linear", "log1m"}
        ``log``: the next value beyond ``b`` (neighbour ``a``) is ``b * b / a``; ``linear``:
        ``b + (b - a)``; ``log1m``: ``1 - (1 - b)^2 / (1 - a)`` (0.9, 0.99 -> 0.999).
    low, high : float, optional
        Bounds an extension may not cross (inclusive): a step that would cross one lands on it
        instead (once); a ``log1m`` axis is bounded below by 0 (a momentum of 0 is none).
    """

    values: tuple
    scale: str = "log"
    low: float | None = None
    high: float | None = None

    def __post_init__(self):
        vals = tuple(sorted(float(v) for v in self.values))
        if not vals or not all(math.isfinite(v) for v in vals):
            raise ValueError(f"an axis needs finite values, got {self.values!r}")
        if len(set(vals)) != len(vals):
            raise ValueError(f"axis values must be distinct, got {self.values!r}")
        if self.scale not in SCALES:
            raise ValueError(f"axis scale must be one of {SCALES}, got {self.scale!r}")
        if self.scale == "log" and vals[0] <= 0:
            raise ValueError(f"a log axis needs positive values, got {vals}")
        if self.scale == "log1m" and vals[-1] >= 1:
            raise ValueError(f"a log1m axis needs values below 1, got {vals}")
        object.__setattr__(self, "values", vals)

    def step(self, values, side):
        """The value one step beyond the ``"low"`` or ``"high"`` end of ``values`` (the bound
        itself when the step would cross it), or ``None`` when the axis has a single value or
        its end already is the bound."""
        vals = sorted(values)
        if len(vals) < 2:
            return None
        b, a = (vals[-1], vals[-2]) if side == "high" else (vals[0], vals[1])
        if self.scale == "log":
            new = b * (b / a)
        elif self.scale == "linear":
            new = b + (b - a)
        else:  # three significant digits of 1 - x, where the scale lives
            new = 1.0 - _round((1.0 - b) ** 2 / (1.0 - a))
        new = _round(new)
        low = 0.0 if self.scale == "log1m" and self.low is None else self.low
        if low is not None and new < low:
            new = float(low)
        if self.high is not None and new > self.high:
            new = float(self.high)
        if (self.scale == "log" and new <= 0) or (self.scale == "log1m" and new >= 1):
            return None
        if new in vals or (side == "low" and new >= b) or (side == "high" and new <= b):
            return None
        return new


@dataclass
class Tuning:
    """The tuning stage of a study (see the module docstring).

    Parameters
    ----------
    build : callable
        ``build(factors) -> Setting``: the setting of one grid point; ``factors`` holds the
        condition's factors and one value of every tuned axis. The setting's ``factors``
        should be these (its label, and the analysis's grouping, come from them).
    conditions : sequence of dict
        What is compared (e.g. ``{"optimizer": "adam"}``): one selected setting each.
    axes : dict or callable
        ``{name: Axis}`` of the tuned hyper-parameters, or ``axes(condition) -> {name: Axis}``
        when the grid depends on the condition. A condition without axes is not tuned.
    tune_seeds : sequence of int
        Seeds of the tuning stage (disjoint from the study's report seeds).
    metric : str
        Summary key that selects (default ``"best_val_loss"``).
    maximize : bool
        Select the largest value of ``metric`` (e.g. an accuracy) instead of the smallest.
    max_extensions : int
        Most steps beyond each edge of each axis, per condition.
    """

    build: Callable
    conditions: Sequence[Mapping]
    axes: Mapping | Callable
    tune_seeds: Sequence[int]
    metric: str = "best_val_loss"
    maximize: bool = False
    max_extensions: int = 3

    def __post_init__(self):
        self.conditions = [dict(c) for c in self.conditions]
        self.tune_seeds = [int(s) for s in self.tune_seeds]
        if not self.conditions:
            raise ValueError("a tuning needs at least one condition")
        if not self.tune_seeds or len(set(self.tune_seeds)) != len(self.tune_seeds):
            raise ValueError("tune_seeds must be distinct and not empty")
        if self.metric.startswith("test_") or "_test_" in self.metric:
            raise ValueError(f"selection on a test metric ({self.metric!r}) is not allowed")
        keys = [tuple(sorted(c.items())) for c in self.conditions]
        if len(set(keys)) != len(keys):
            raise ValueError("conditions must be distinct")

    def axes_of(self, condition):
        axes = self.axes(condition) if callable(self.axes) else self.axes
        for name, ax in axes.items():
            if not isinstance(ax, Axis):
                raise TypeError(f"axis {name!r} must be an Axis, got {type(ax).__name__}")
            if name in condition:
                raise ValueError(f"axis {name!r} is also a condition factor")
        return dict(axes)

    def settings(self, condition, grids):
        """Settings of ``condition`` over ``grids`` (``{axis: values}``), last axis fastest."""
        names = list(grids)
        out = []
        for point in itertools.product(*(grids[n] for n in names)):
            out.append(self.build({**condition, **dict(zip(names, point, strict=True))}))
        return out

    def initial_settings(self):
        """The tuning grid before any extension, condition by condition."""
        out = []
        for c in self.conditions:
            axes = self.axes_of(c)
            out += self.settings(c, {n: list(a.values) for n, a in axes.items()})
        return out


@dataclass
class Choice:
    """The selection for one condition."""

    condition: dict
    setting: object                 # the selected Setting (None while tuning is incomplete)
    point: dict                     # the selected value of each axis
    scores: dict                    # setting label -> mean of the metric over tuning seeds
    grids: dict                     # axis -> values run (after extensions)
    extended: dict                  # axis -> values added beyond the initial grid
    edges: list = field(default_factory=list)  # remaining edges of this condition
    failed: list = field(default_factory=list)  # tuning Runs stored as failed that block it


@dataclass
class Plan:
    """What the store says about a tuned study: tuning runs, selections, remaining edges."""

    tuning_settings: list
    pending: list                   # tuning Runs not in the store yet
    choices: list                   # one Choice per condition

    @property
    def complete(self):
        """Every condition selected (no tuning run missing or failed)."""
        return not self.pending and all(c.setting is not None for c in self.choices)

    @property
    def selected(self):
        return [c.setting for c in self.choices if c.setting is not None]

    @property
    def failed(self):
        """The tuning Runs stored as failed that leave their conditions unselected:
        :func:`dlbasics.studies.runner.run_study` runs them again before each selection, each
        at most once a call (a run that failed for a reason of the moment, a full disk say,
        then completes its condition's selection; one that fails again leaves the condition
        unselected until the next call)."""
        return [r for c in self.choices for r in c.failed]

    @property
    def edges_remaining(self):
        return [e for c in self.choices for e in c.edges]


def _score(rows, setting, seeds, metric, maximize, backend):
    """Mean of ``metric`` over ``seeds`` (lower is better after the sign flip), ``inf`` when a
    run diverged, ``None`` when a run is missing or failed (unknown, not a loss)."""
    h = setting.config_hash(backend)
    vals = []
    for s in seeds:
        r = rows.get((h, s))
        if r is None or r["status"] == "failed":
            return None
        if r["status"] != "ok" or not r.get("summary"):
            return math.inf
        v = r["summary"].get(metric)
        if v is None or not math.isfinite(float(v)):
            return math.inf
        vals.append(-float(v) if maximize else float(v))
    return float(np.mean(vals))


def plan(study, rows, backend="cpu"):
    """The tuning stage of ``study`` given the stored ``rows`` (``{(config_hash, seed): row}``).

    Grids are extended at their edges as far as the stored runs allow; the runs an extension
    needs, or any tuning run not yet stored, are returned in :attr:`Plan.pending`. A condition
    with a failed tuning run is not selected (its :class:`Choice` has no setting) and its
    failed runs are not pending but in :attr:`Choice.failed` (:attr:`Plan.failed`).
    """
    from .spec import Run

    tun = study.tuning
    seeds = tun.tune_seeds
    all_settings, pending, choices = [], [], []
    for cond in tun.conditions:
        axes = tun.axes_of(cond)
        grids = {n: list(a.values) for n, a in axes.items()}
        steps = {(n, side): 0 for n in axes for side in ("low", "high")}
        best, point, edges, failed = None, {}, [], []
        while True:
            settings = tun.settings(cond, grids)
            scores = {s.label: _score(rows, s, seeds, tun.metric, tun.maximize, backend)
                      for s in settings} if axes else {}
            missing = [s for s in settings if axes and scores[s.label] is None]
            if missing:
                pending += [Run(study.name, s, seed, backend) for s in missing for seed in seeds
                            if (s.config_hash(backend), seed) not in rows]
                failed = [Run(study.name, s, seed, backend) for s in missing for seed in seeds
                          if rows.get((s.config_hash(backend), seed), {}).get("status")
                          == "failed"]
                break
            best = min(settings, key=lambda s: scores.get(s.label, 0.0))
            point = {n: best.factors.get(n) for n in axes}
            grew, edges = False, []
            for n, ax in axes.items():
                vals = sorted(grids[n])
                if len(vals) < 2:
                    continue
                for side, end in (("low", vals[0]), ("high", vals[-1])):
                    if point[n] != end:
                        continue
                    new = ax.step(vals, side)
                    if new is not None and steps[(n, side)] < tun.max_extensions:
                        grids[n] = sorted(vals + [new])
                        steps[(n, side)] += 1
                        grew = True
                    else:
                        reason = "bound of the axis" if new is None else \
                            f"{tun.max_extensions} extensions"
                        edges.append({"condition": cond, "axis": n, "value": end,
                                      "side": side, "reason": reason})
            if not grew:
                break
        all_settings += settings
        initial = {n: list(a.values) for n, a in axes.items()}
        extended = {n: [v for v in grids[n] if v not in initial[n]] for n in axes}
        done = not missing
        choices.append(Choice(cond, best if done else None, point if done else {}, scores,
                              grids, extended, edges if done else [], failed))
    return Plan(all_settings, pending, choices)


def store_rows(store, study, settings, seeds, backend="cpu"):
    """``{(config_hash, seed): row}`` of the stored runs of ``settings`` x ``seeds``."""
    keys = [(study.name, s.config_hash(backend), int(seed)) for s in settings for seed in seeds]
    return {(r["config_hash"], r["seed"]): r for r in store.rows(study.name, keys=keys)}


def stored_plan(study, store, backend="cpu"):
    """:func:`plan` from the store (it reads only the rows the plan can need)."""
    rows = {}
    while True:
        p = plan(study, rows, backend)
        wanted = [s for s in p.tuning_settings
                  if any((s.config_hash(backend), seed) not in rows
                         for seed in study.tuning.tune_seeds)]
        new = {k: v for k, v in store_rows(store, study, wanted, study.tuning.tune_seeds,
                                             backend).items() if k not in rows}
        if not new:  # a partly stored setting returns only rows already read: the plan is made
            return p
        rows.update(new)


def timing_study_name(study):
    return study.name + TIMING
