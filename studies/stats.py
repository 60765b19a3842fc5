"""Statistics over seeds (scipy): confidence intervals, paired tests, selection, time to target.

Conventions: NaN marks a missing value (a missing, failed or diverged run) and is left out;
intervals are two-sided Student-t intervals of the mean (``confidence=0.95``); paired tests pair
the same seeds of two settings.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


def _scipy_stats():
    # Imported on first use: scipy.stats takes a second or more to import, and the CLI imports
    # this module (through the studies) even for commands that compute nothing.
    from scipy import stats

    return stats


class CI(NamedTuple):
    """Mean and confidence interval of a sample (``lo = hi = nan`` with fewer than 2 values)."""

    mean: float
    lo: float
    hi: float
    n: int

    def fmt(self, digits=3):
        """``"0.123 [0.101, 0.145]"`` (``"-"`` with no value)."""
        if self.n == 0:
            return "-"
        m = f"{self.mean:.{digits}g}"
        if not math.isfinite(self.lo):
            return m
        return f"{m} [{self.lo:.{digits}g}, {self.hi:.{digits}g}]"


def _confidence(confidence):
    from ..kernels import _checks

    return _checks.real("confidence", confidence, low=0.0, high=1.0, low_open=True,
                        high_open=True)


def _real_array(name, values):
    """``values`` as a float64 array; complex or non-numeric data is a TypeError."""
    a = np.asarray(values)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a.astype(np.float64)


def mean_ci(values, confidence=0.95, bounds=None):
    """Mean and Student-t confidence interval of ``values`` (NaN left out).

    Infinite values (e.g. a diverged loss) make the mean infinite and the interval NaN.
    ``bounds=(low, high)`` clips the interval to the range the quantity can take (an accuracy
    to ``(0, 1)``, a loss or a time to ``(0, inf)``): the t-interval itself is unbounded.
    """
    _confidence(confidence)
    x = _real_array("values", values).ravel()
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return CI(math.nan, math.nan, math.nan, 0)
    m = float(x.mean())
    if n < 2 or not np.isfinite(x).all():
        return CI(m, math.nan, math.nan, n)
    sem = float(x.std(ddof=1) / math.sqrt(n))
    h = float(_scipy_stats().t.ppf(0.5 + confidence / 2, n - 1) * sem)
    lo, hi = m - h, m + h
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return CI(m, lo, hi, n)


def curve_ci(curves, confidence=0.95, bounds=None):
    """Point-wise mean and t-interval of ``(n_seeds, n_points)`` curves (NaN left out).

    ``bounds=(low, high)`` clips the interval as in :func:`mean_ci`.

    Returns
    -------
    mean, lo, hi : ndarray of shape (n_points,)
        NaN where no seed has a value (``lo``/``hi`` NaN where fewer than two have).
    n : ndarray of int, shape (n_points,)
    """
    Y = np.asarray(curves, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[None, :]
    Y = np.where(np.isfinite(Y), Y, np.nan)
    n = (~np.isnan(Y)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(Y, axis=0) / np.maximum(n, 1), np.nan)
        dev = np.where(np.isnan(Y), 0.0, Y - mean)
        var = (dev**2).sum(axis=0) / np.maximum(n - 1, 1)
        sem = np.sqrt(var / np.maximum(n, 1))
        tq = np.where(n > 1, _scipy_stats().t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)),
                      np.nan)
        h = tq * sem
    lo, hi = mean - h, mean + h
    if bounds is not None:
        lo, hi = np.maximum(lo, bounds[0]), np.minimum(hi, bounds[1])
    return mean, lo, hi, n


def paired(a, b, confidence=0.95):
    """Paired comparison of two settings on the same seeds: ``a - b``.

    Parameters
    ----------
    a, b : array-like of shape (n_seeds,)
        Per-seed values in the same seed order (NaN where missing; such pairs are dropped).

    Returns
    -------
    dict
        ``n`` pairs, ``diff`` (mean of ``a - b``) with ``lo``/``hi`` (t-interval),
        ``t_p`` (paired t-test p-value), ``wilcoxon_p`` (signed-rank p-value, NaN when all
        differences are zero or fewer than 2 pairs), ``a_better`` (pairs with ``a < b``),
        ``b_better``.
    """
    a = _real_array("a", a)
    b = _real_array("b", b)
    if a.shape != b.shape:
        raise ValueError(f"paired needs arrays of one shape, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = a - b
    ci = mean_ci(d, confidence)
    out = {"n": int(d.size), "diff": ci.mean, "lo": ci.lo, "hi": ci.hi, "t_p": math.nan,
           "wilcoxon_p": math.nan, "a_better": int((d < 0).sum()), "b_better": int((d > 0).sum())}
    if d.size >= 2:
        _st = _scipy_stats()
        if np.all(d == d[0]):
            out["t_p"] = 1.0 if d[0] == 0 else 0.0
        else:
            out["t_p"] = float(_st.ttest_rel(a, b).pvalue)
        if np.any(d != 0):
            out["wilcoxon_p"] = float(_st.wilcoxon(a, b).pvalue)
    return out


def best_of_grid(results, settings=None, key="final_val_loss", mode="min"):
    """The setting with the best mean validation metric over seeds (never a test metric).

    A diverged run scores ``+inf`` (``-inf`` for ``mode="max"``), so a setting that diverged
    for any seed loses to every setting that never did; failed or missing runs are left out.

    Parameters
    ----------
    results : Results
    settings : sequence of Setting, optional
        Candidates (default: all settings of the study).
    key : str
        A summary key, e.g. ``"final_val_loss"``, ``"best_val_loss"``, ``"final_val_accuracy"``.
    mode : {"min", "max"}

    Returns
    -------
    best : Setting or None
        ``None`` when no candidate has a value.
    scores : list of (Setting, CI)
        Candidates ranked best first.
    """
    if key.startswith("test_"):
        raise ValueError("best_of_grid selects on validation or training metrics, never on test")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    cands = list(results.settings if settings is None else settings)
    bad = math.inf if mode == "min" else -math.inf
    scored = []
    for s in cands:
        v = results.values(s, key)
        div = results.values(s, "epochs", statuses=("diverged",))
        v = np.where(np.isfinite(div), bad, v)
        scored.append((s, mean_ci(v)))

    def order(item):
        m = item[1].mean
        if math.isnan(m):
            return (2, 0.0)
        return (1 if math.isinf(m) else 0, m if mode == "min" else -m)

    scored.sort(key=order)
    best = scored[0][0] if scored and not math.isnan(scored[0][1].mean) else None
    return best, scored


def time_to_target(history, target, metric="val_loss", mode="below"):
    """First epoch at which ``history[metric]`` reaches ``target``, and its cost.

    Parameters
    ----------
    history : dict
        A stored history (:meth:`dlbasics.models.History.to_dict`).
    target : float
    metric : str
        An evaluation metric (epochs 0..E: ``val_loss``, ``full_loss``, ``val_accuracy``, ...)
        or ``train_loss`` (epochs 1..E).
    mode : {"below", "above"}
        ``"below"``: reach ``<= target`` (a loss); ``"above"``: ``>= target`` (an accuracy).

    Returns
    -------
    dict
        ``epochs``, ``updates``, ``grad_evals`` (per-sample gradient evaluations) and
        ``seconds`` (training time) spent when the target was first reached; all NaN if never.
    """
    if mode not in ("below", "above"):
        raise ValueError(f"mode must be 'below' or 'above', got {mode!r}")
    vals = history.get(metric) or []
    first = 0 if metric in ("full_loss", "full_accuracy", "val_loss", "val_accuracy") else 1
    for i, v in enumerate(vals):
        if v is None or not math.isfinite(v):
            continue
        if (v <= target) if mode == "below" else (v >= target):
            e = i + first
            if e == 0:
                return {"epochs": 0, "updates": 0, "grad_evals": 0, "seconds": 0.0}
            return {"epochs": e, "updates": history["updates"][e - 1],
                    "grad_evals": history["grad_evals"][e - 1],
                    "seconds": float(history["time"][e - 1])}
    return {"epochs": math.nan, "updates": math.nan, "grad_evals": math.nan,
            "seconds": math.nan}


def times_to_target(results, setting, target, metric="val_loss", mode="below"):
    """Per-seed :func:`time_to_target` of a setting as ``{cost: array}`` (NaN: never/missing).

    Also returns ``"reached"``: the number of seeds that reached the target.
    """
    keys = ("epochs", "updates", "grad_evals", "seconds")
    out = {k: np.full(len(results.seeds), np.nan) for k in keys}
    hists = results.histories(setting)
    for i, seed in enumerate(results.seeds):
        if seed in hists:
            t = time_to_target(hists[seed], target, metric, mode)
            for k in keys:
                out[k][i] = t[k]
    out["reached"] = int(np.isfinite(out["epochs"]).sum())
    return out


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and are not counted)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


#: Family-wise error rate of the Holm-corrected tests and of the equivalence tests.
ALPHA = 0.05


def tost(a, b, margin, alpha=ALPHA):
    """Paired two one-sided tests (TOST) of equivalence: is ``|mean(a - b)| < margin``?

    Parameters
    ----------
    a, b : array-like of shape (n_seeds,)
        Per-seed values in the same seed order (NaN pairs dropped).
    margin : float > 0
        The equivalence margin, in the units of ``a`` and ``b`` (stated in every claim).
    alpha : float
        Level of each one-sided test.

    Returns
    -------
    dict
        ``n``, ``diff``, ``lo``/``hi`` (the ``1 - 2 alpha`` t-interval of the mean difference:
        equivalence at level ``alpha`` is that interval inside ``(-margin, margin)``), ``p``
        (the larger one-sided p-value; NaN with fewer than 2 pairs) and ``equivalent``.
    """
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a positive number, got {margin!r}")
    a, b = _real_array("a", a), _real_array("b", b)
    if a.shape != b.shape:
        raise ValueError(f"tost needs arrays of one shape, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = int(d.size)
    out = {"n": n, "margin": float(margin), "diff": float(d.mean()) if n else math.nan,
           "lo": math.nan, "hi": math.nan, "p": math.nan, "equivalent": False}
    if n < 2:
        return out
    st = _scipy_stats()
    sem = float(d.std(ddof=1) / math.sqrt(n))
    if sem == 0.0:
        out["lo"] = out["hi"] = out["diff"]
        out["p"] = 0.0 if abs(out["diff"]) < margin else 1.0
    else:
        t_lo = (out["diff"] + margin) / sem    # H0: diff <= -margin
        t_hi = (out["diff"] - margin) / sem    # H0: diff >= +margin
        out["p"] = float(max(st.t.sf(t_lo, n - 1), st.t.cdf(t_hi, n - 1)))
        h = float(st.t.ppf(1 - alpha, n - 1) * sem)
        out["lo"], out["hi"] = out["diff"] - h, out["diff"] + h
    out["equivalent"] = bool(out["p"] < alpha)
    return out


def compare(pairs, margin=None, alpha=ALPHA, lower_is_better=True):
    """Paired comparisons with effect sizes, Holm-corrected tests and explicit verdicts.

    Parameters
    ----------
    pairs : sequence of (name, a, b)
        Per-seed values of two settings on the same seeds (the effect is ``a - b``).
    margin : float, optional
        Equivalence margin: a pair whose difference is not significant is called equivalent
        only when a TOST with this margin (Holm-corrected over the pairs too) says so.
    alpha : float
    lower_is_better : bool
        Direction of the metric (a loss: True; an accuracy: False), for the verdict's wording.

    Returns
    -------
    list of dict
        Per pair: ``name``, ``n``, ``diff``, ``lo``, ``hi`` (95% t-interval of the mean
        difference), ``p`` (paired t), ``p_holm``, ``wilcoxon_p``, ``a_better``/``b_better``
        (seeds), ``tost_p_holm`` and ``verdict``: ``"a better"``, ``"b better"``,
        ``"equivalent within +-m"`` or ``"inconclusive"`` (neither a difference nor
        equivalence is shown: never read it as "equal").
    """
    rows = []
    for name, a, b in pairs:
        p = paired(a, b)
        p["name"] = name
        p["tost"] = tost(a, b, margin, alpha) if margin is not None else None
        rows.append(p)
    adj = holm([r["t_p"] for r in rows])
    tadj = holm([r["tost"]["p"] if r["tost"] else math.nan for r in rows])
    for r, pa, ta in zip(rows, adj, tadj, strict=True):
        r["p"], r["p_holm"], r["tost_p_holm"] = r.pop("t_p"), float(pa), float(ta)
        if math.isfinite(pa) and pa < alpha:
            a_lower = r["diff"] < 0
            r["verdict"] = "a better" if a_lower == lower_is_better else "b better"
        elif math.isfinite(ta) and ta < alpha:
            r["verdict"] = f"equivalent within +-{margin:g}"
        else:
            r["verdict"] = "inconclusive"
    return rows


def seconds_per_epoch(timing, setting):
    """Measured training seconds per epoch of ``setting`` in the timing pass.

    Parameters
    ----------
    timing : Results
        ``results.timing`` of a study (each setting trained alone, several repeats).
    setting : Setting or str

    Returns
    -------
    dict
        ``median``, ``min``, ``max`` over the repeats (NaN without one), ``n`` repeats, and
        ``load`` (the largest 1-minute load average seen at a repeat's start or end).
    """
    per, load = [], []
    for rec in timing.records_of(setting):
        h, s = rec.history or {}, rec.summary or {}
        if rec.status == "ok" and h.get("time"):
            per.append(float(h["time"][-1]) / len(h["time"]))
            load += [s.get("load_before", math.nan), s.get("load_after", math.nan)]
    if not per:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0, "load": math.nan}
    finite = [v for v in load if v is not None and math.isfinite(v)]
    return {"median": float(np.median(per)), "min": float(min(per)), "max": float(max(per)),
            "n": len(per), "load": max(finite) if finite else math.nan}


def measured_seconds_to_target(results, setting, target, metric="val_loss", mode="below"):
    """Per-seed seconds to reach ``target``: each report seed's epochs to the target times the
    setting's median measured seconds per epoch (:func:`seconds_per_epoch`); NaN if never."""
    epochs = times_to_target(results, setting, target, metric, mode)["epochs"]
    return epochs * seconds_per_epoch(results.timing, setting)["median"]
