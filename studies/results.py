"""A study's stored runs joined to its settings: what an analysis works with."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: History lists recorded at epochs 0..E (the others are at epochs 1..E).
EVAL_METRICS = ("full_loss", "full_accuracy", "val_loss", "val_accuracy")
STEP_METRICS = ("train_loss", "updates", "grad_evals", "time", "lr")


@dataclass
class Record:
    """One stored run of a setting."""

    setting: object
    seed: int
    status: str
    history: dict | None
    summary: dict | None
    error: str | None
    wall_s: float | None
    row: dict

    @property
    def ok(self):
        return self.status == "ok"


class Results:
    """The runs of one study (its planned settings x seeds) found in the store.

    Parameters
    ----------
    study : Study
    rows : list of dict
        Store rows (:meth:`dlbasics.studies.store.Store.rows`).
    backend : str

    Attributes
    ----------
    records : dict
        ``{setting label: {seed: Record}}`` (missing runs are absent).
    """

    def __init__(self, study, rows, backend="cpu"):
        self.study = study
        self.backend = backend
        by_key = {(r["config_hash"], r["seed"]): r for r in rows}
        self.records = {}
        for s in study.settings:
            h = s.config_hash(backend)
            recs = {}
            for seed in study.seeds:
                r = by_key.get((h, seed))
                if r is not None:
                    recs[seed] = Record(s, seed, r["status"], r["history"], r["summary"],
                                        r["error"], r["wall_s"], r)
            self.records[s.label] = recs

    #: The tuning stage's runs (a Results over the tuning grid and seeds), or None.
    tuning = None
    #: The timing pass's runs (a Results over the same settings and the timing seeds), or None.
    timing = None

    @property
    def plan(self):
        """The selection of a tuned study (:class:`dlbasics.studies.protocol.Plan`), or None."""
        return self.study.plan

    @classmethod
    def load(cls, study, store, backend="cpu"):
        """The study's runs in ``store``; for a tuned study, its report stage (the selected
        settings on the report seeds), with :attr:`tuning` and :attr:`timing` filled in."""
        from dataclasses import replace

        from .protocol import stored_plan, timing_study_name

        tuning = None
        if study.tuning is not None:
            plan = study.plan or stored_plan(study, store, backend)
            study = study.resolved(plan)
            grid = replace(study, settings=plan.tuning_settings, seeds=study.tuning.tune_seeds,
                           tuning=None, plan=None)
            tuning = cls(grid, store.rows(study.name, keys=[r.key for r in grid.runs(backend)]),
                         backend)
        keys = [r.key for r in study.runs(backend)]
        out = cls(study, store.rows(study.name, keys=keys), backend)
        out.tuning = tuning
        if study.timing_repeats:
            tstudy = replace(study, name=timing_study_name(study),
                             seeds=study.seeds[: study.timing_repeats], tuning=None, plan=None)
            out.timing = cls(tstudy, store.rows(tstudy.name, keys=[r.key for r in
                                                                    tstudy.runs(backend)]),
                             backend)
        return out

    # -- bookkeeping ---------------------------------------------------------------------------
    @property
    def settings(self):
        return list(self.study.settings)

    @property
    def seeds(self):
        return list(self.study.seeds)

    def rows(self):
        """All store rows of the study's planned runs."""
        return [rec.row for recs in self.records.values() for rec in recs.values()]

    def counts(self, setting=None):
        """``{"ok", "diverged", "failed", "missing"}`` counts (of one setting or all)."""
        labels = [self._label(setting)] if setting is not None else list(self.records)
        c = {"ok": 0, "diverged": 0, "failed": 0, "missing": 0}
        for lab in labels:
            recs = self.records[lab]
            for seed in self.seeds:
                c[recs[seed].status if seed in recs else "missing"] += 1
        return c

    def diverged(self):
        """``[(label, seed, epoch)]`` of the diverged runs (epoch 1-based, None if unknown)."""
        out = []
        for lab, recs in self.records.items():
            for seed in self.seeds:
                rec = recs.get(seed)
                if rec is not None and rec.status == "diverged":
                    out.append((lab, seed, (rec.history or {}).get("diverged_epoch")))
        return out

    def errors(self):
        """``[(label, seed, error)]`` of the failed runs."""
        return [(lab, seed, rec.error) for lab, recs in self.records.items()
                for seed, rec in recs.items() if rec.status == "failed"]

    def machines(self):
        """Distinct machine dicts of the runs."""
        out = []
        for row in self.rows():
            if row["machine"] and row["machine"] not in out:
                out.append(row["machine"])
        return out

    def versions(self):
        """Distinct version dicts of the runs."""
        out = []
        for row in self.rows():
            if row["versions"] and row["versions"] not in out:
                out.append(row["versions"])
        return out

    # -- selection -----------------------------------------------------------------------------
    def _label(self, setting):
        return setting if isinstance(setting, str) else setting.label

    def select(self, **factors):
        """Settings whose factors include all of ``factors`` (in study order)."""
        return [s for s in self.study.settings
                if all(s.factors.get(k) == v for k, v in factors.items())]

    def factor_values(self, name):
        """Distinct values of factor ``name`` in study order."""
        out = []
        for s in self.study.settings:
            if name in s.factors and s.factors[name] not in out:
                out.append(s.factors[name])
        return out

    def by_factor(self, name):
        """``{value: [settings]}`` grouped by one factor, in study order."""
        return {v: self.select(**{name: v}) for v in self.factor_values(name)}

    def records_of(self, setting):
        """The setting's records in seed order (missing seeds skipped)."""
        recs = self.records[self._label(setting)]
        return [recs[s] for s in self.seeds if s in recs]

    # -- numbers -------------------------------------------------------------------------------
    def values(self, setting, key, statuses=("ok",)):
        """Per-seed ``summary[key]`` in seed order; NaN for missing runs or other statuses.

        The array has one entry per study seed, so two settings' arrays pair seed by seed.
        """
        recs = self.records[self._label(setting)]
        out = np.full(len(self.seeds), np.nan)
        for i, seed in enumerate(self.seeds):
            rec = recs.get(seed)
            if rec is not None and rec.status in statuses and rec.summary is not None:
                v = rec.summary.get(key)
                out[i] = np.nan if v is None else float(v)
        return out

    def curves(self, setting, metric, statuses=("ok",)):
        """``(n_seeds, n_points)`` array of a history list, NaN-padded (missing, diverged).

        Evaluation metrics (``val_loss``, ...) have points at epochs 0..E, the others
        (``train_loss``, ``grad_evals``, ``time``, ...) at epochs 1..E.
        """
        s = self.setting(setting)
        n = s.epochs + (1 if metric in EVAL_METRICS else 0)
        recs = self.records[s.label]
        out = np.full((len(self.seeds), n), np.nan)
        for i, seed in enumerate(self.seeds):
            rec = recs.get(seed)
            if rec is None or rec.status not in statuses or rec.history is None:
                continue
            vals = [math.nan if v is None else v for v in rec.history.get(metric, [])][:n]
            out[i, : len(vals)] = vals
        return out

    def epochs(self, setting, metric="val_loss"):
        """Epoch numbers of :meth:`curves` points."""
        s = self.setting(setting)
        return np.arange(0 if metric in EVAL_METRICS else 1, s.epochs + 1)

    def setting(self, setting):
        return self.study.setting(self._label(setting))

    def histories(self, setting, statuses=("ok",)):
        """``{seed: history dict}`` of the setting's runs with these statuses."""
        return {rec.seed: rec.history for rec in self.records_of(setting)
                if rec.status in statuses and rec.history is not None}
