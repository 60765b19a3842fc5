"""Helpers shared by the study definitions: seed splits, paired comparisons and their tables,
log axes and interval plots, and re-training a setting's networks for figures that need them.

Studies import these from here (the framework), never from one another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np

from . import stats
from .report import fmt
from .results import Results
from .stats import holm  # noqa: F401 (re-exported: the studies' significance tables use it)

#: Seeds used to choose hyper-parameters; the others are the held-out final seeds.
TUNE_SEEDS = 2


#: Family-wise error rate of the Holm-corrected paired tests.
ALPHA = 0.05


def split_seeds(seeds, n_tune=TUNE_SEEDS):
    """``(tune, final)`` seeds: the first ``n_tune`` choose, the others report.

    With fewer than ``n_tune + 2`` seeds one seed tunes; with a single seed it does both (the
    report then says the final numbers are not held out).
    """
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2:
        return seeds, seeds
    k = n_tune if len(seeds) >= n_tune + 2 else 1
    return seeds[:k], seeds[k:]


def seed_subset(results, seeds):
    """The same results restricted to ``seeds`` (a :class:`Results` of the study's settings)."""
    study = dataclasses.replace(results.study, seeds=list(seeds))
    return Results(study, results.rows(), results.backend)


def select(tune, settings, key="final_val_loss"):
    """Best of ``settings`` on the tuning seeds' validation metric (:func:`stats.best_of_grid`).

    Returns ``(best, scores)``; a setting that diverged on any tuning seed loses.
    """
    return stats.best_of_grid(tune, settings, key=key)


def protocol_text(tune_seeds, final_seeds, what="learning rate"):
    """One Markdown paragraph stating the selection protocol with the actual seeds."""
    if list(tune_seeds) == list(final_seeds):
        return (f"Only one seed ({tune_seeds[0]}): the {what} is chosen and reported on the "
                f"same seed, so the reported numbers are *not* held out.")
    return (f"**Protocol (DeepOBS, two stages in one study).** Every grid point ran with every "
            f"seed (a study declares one list of seeds for all its settings, so the final stage "
            f"cannot be limited to the chosen settings). The {what} is chosen on the mean "
            f"final validation loss of the tuning seeds "
            f"{', '.join(map(str, tune_seeds))} only; everything reported about the chosen "
            f"setting (curves, tables, paired tests) comes from the {len(final_seeds)} held-out "
            f"final seeds {', '.join(map(str, final_seeds))}, like a rerun with fresh seeds. "
            f"The test split is never used to choose.")


def value_at_time(results, setting, metric, budget):
    """Per-seed ``metric`` (an eval metric, epochs 0..E) at the last epoch ended by ``budget``
    seconds of training time (epoch 0 if even the first epoch took longer); NaN if missing."""
    vals = results.curves(setting, metric)
    times = results.curves(setting, "time")
    out = np.full(vals.shape[0], np.nan)
    for i in range(vals.shape[0]):
        if not np.isfinite(vals[i, 0]):
            continue
        done = np.flatnonzero(times[i] <= budget)
        out[i] = vals[i, done[-1] + 1 if done.size else 0]
    return out


def paired(a, b):
    """:func:`stats.paired` without scipy's precision warnings on (nearly) identical pairs."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.paired(a, b)


def untested_note(final_seeds):
    """A sentence for the conclusion when the final seeds cannot support paired tests."""
    if len(final_seeds) >= 2:
        return None
    return ("Only one final seed: no paired test is possible, so 'not significant' below means "
            "'not tested'.")


def sig_phrase(padj, what="Holm p"):
    """``"significant, Holm p = 0.01"``, ``"not significant, ..."`` or ``"not tested"``."""
    if not math.isfinite(padj):
        return "not tested"
    return f"{'' if padj < ALPHA else 'not '}significant, {what} = {fmt(padj, 3)}"


def significance_rows(pairs, digits=3):
    """Table rows of paired comparisons with Holm-adjusted p-values.

    ``pairs``: list of ``(name, paired_dict)``. Returns ``(rows, adjusted)``.
    """
    adjusted = holm([p["t_p"] for _, p in pairs])
    rows = []
    for (name, p), padj in zip(pairs, adjusted, strict=True):
        verdict = "-" if not math.isfinite(padj) else ("**yes**" if padj < ALPHA else "no")
        rows.append([name, p["n"], f"{fmt(p['diff'])} [{fmt(p['lo'])}, {fmt(p['hi'])}]",
                     f"{p['a_better']}/{p['b_better']}", fmt(p["t_p"], digits),
                     fmt(padj, digits), fmt(p["wilcoxon_p"], digits), verdict])
    return rows, adjusted


SIGNIFICANCE_HEADERS = ["comparison (a - b)", "pairs", "mean diff [95% CI]", "a better / b better",
                        "paired t p", "Holm p", "Wilcoxon p", f"significant (Holm, {ALPHA:.0%})"]


def log_grid(low, n, step=0.5):
    """``n`` learning rates ``10**(low + k * step)`` rounded to 3 significant digits."""
    return [float(f"{10 ** (low + k * step):.3g}") for k in range(n)]


def _plain_number(v, _pos=None):
    return f"{v:g}"


def log_axis(ax, axis="x"):
    """Log scale with plain tick labels (``0.01``, ``1e-05``): mathtext labels are slow to draw
    and minor labels clutter. Ticks at 1, 2, 5 x 10^k; at powers of ten only when the axis spans
    more than three decades, at every 1..9 x 10^k when it spans less than 20x. Call it after
    plotting (and after setting limits)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{axis}scale")("log")
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    ratio = hi / lo if lo > 0 else math.inf
    subs = (1.0,) if ratio > 1e3 else (1.0, 2.0, 5.0) if ratio > 20 else tuple(range(1, 10))
    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    a.set_major_formatter(FuncFormatter(_plain_number))
    a.set_minor_formatter(NullFormatter())


def loss_ylim(ax, means, below=3.0, above=1.5):
    """Y limits of a log-scale loss panel from its mean curves: confidence bands clipped at 0
    would otherwise stretch the axis down to nothing."""
    vals = np.concatenate([np.ravel(m) for m in means]) if means else np.array([])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size:
        ax.set_ylim(vals.min() / below, vals.max() * above)


def errorbar_ci(ax, x, cis, **kw):
    """Plot means with their (clipped) 95% intervals as error bars."""
    mean = np.array([c.mean for c in cis], dtype=np.float64)
    lo = np.array([c.lo for c in cis], dtype=np.float64)
    hi = np.array([c.hi for c in cis], dtype=np.float64)
    err = np.vstack([np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)])
    return ax.errorbar(x, mean, yerr=err, capsize=3, **kw)


def median_cost(values):
    """Median of per-seed costs to a target, a NaN (never reached, or a missing run) counting
    as +inf: a method that failed on most seeds has an infinite median."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.median(np.where(np.isnan(v), np.inf, v))) if v.size else math.nan


# ----------------------------------------------------------------------------------------------
# networks of stored settings, trained again
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def one_thread():
    """Run Numba code on one thread inside the block (restored afterwards)."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def retrain(setting, seeds):
    """Train a setting's networks again for ``seeds``, exactly as the runner trained them.

    Each seed trains on its own data (unless the setting fixes ``data_seed``), as a population
    of one on the per-network kernel, as in a runner worker.

    Returns
    -------
    models : list of MLP
        One per seed, with its final parameters.
    histories : list of History
    datasets : list of dlbasics.studies.datasets.Dataset
        The data each network trained on (standardised with its own training split).
    """
    from ..models import MLP
    from ..models.optimizers import make_optimizer
    from ..models.population import train_population
    from .runner import _data

    cfg = setting.config("cpu")
    models, hists, dss = [], [], []
    for s in (int(s) for s in seeds):
        data = _data(cfg, s)
        ds = data["ds"]
        template = MLP(**data["kw"], seed=s, backend="cpu")
        opt = make_optimizer(cfg["optimizer"], **cfg["hyper"])
        with one_thread():  # as in a runner worker; the parallel kernel stalls on a busy machine
            (hist,), P = train_population(template, ds.X_train, data["y_train"], [opt], [s],
                                          batch_size=cfg["batch_size"], epochs=cfg["epochs"],
                                          shuffle=True, shuffle_seeds=[s], X_val=ds.X_val,
                                          y_val=data["y_val"], metrics=cfg["metrics"],
                                          lanes=False)
        m = MLP(**data["kw"], seed=s, backend="cpu")
        m.set_params_vector(P[0])
        models.append(m)
        hists.append(hist)
        dss.append(ds)
    return models, hists, dss


def check_retrained(results, setting, seeds, hists):
    """Largest ``|retrained - stored|`` final validation loss over ``seeds`` (NaN: none)."""
    stored = results.values(setting, "final_val_loss")
    idx = {s: i for i, s in enumerate(results.seeds)}
    diffs = [abs(h.val_loss[-1] - stored[idx[s]]) for s, h in zip(seeds, hists, strict=True)
             if np.isfinite(stored[idx[s]])]
    return max(diffs) if diffs else float("nan")


def layer_outputs(model, X):
    """Outputs of every layer of ``model`` for inputs ``X``: a list, the last the output."""
    from ..kernels.activations import activate

    L = len(model.sizes) - 1
    names = [model.activation] * (L - 1) if isinstance(model.activation, str) \
        else list(model.activation)
    names.append(model.output)
    a = np.ascontiguousarray(X, dtype=model.dtype)
    outs = []
    for W, b, name in zip(model.weights, model.biases, names, strict=True):
        a = activate(name, np.ascontiguousarray(a @ W + b))
        outs.append(a)
    return outs


def best_seed(results, setting, key="final_val_accuracy"):
    """The study seed with the highest validation value of ``key`` (first on ties)."""
    v = results.values(setting, key)
    if not np.isfinite(v).any():
        return results.seeds[0]
    return results.seeds[int(np.nanargmax(v))]


class Networks:
    """The trained networks of a study's settings, trained again once on first use.

    ``nets(setting)`` -> ``(models, datasets)`` for every study seed (in seed order: each
    network with the data it trained on); :attr:`checks` collects :func:`check_retrained` of
    each setting.
    """

    def __init__(self, results):
        self.results = results
        self.cache = {}
        self.checks = []

    def __call__(self, setting):
        if setting.label not in self.cache:
            seeds = self.results.seeds
            models, hists, dss = retrain(setting, seeds)
            self.checks.append(check_retrained(self.results, setting, seeds, hists))
            self.cache[setting.label] = (models, dss)
        return self.cache[setting.label]

    def best(self, setting):
        """``(seed, model, ds)`` of the seed with the best validation accuracy."""
        models, dss = self(setting)
        seed = best_seed(self.results, setting)
        i = self.results.seeds.index(seed)
        return seed, models[i], dss[i]

    def max_difference(self):
        return max((c for c in self.checks if np.isfinite(c)), default=float("nan"))


def curve_flattened(curves, frac=0.75, tol=0.005):
    """Whether mean curves have flattened by the end of the budget.

    Parameters
    ----------
    curves : array-like of shape (n_seeds, n_points)
        Per-seed curves of a metric that rises as training goes (e.g. validation accuracy);
        NaN entries are left out of the mean.
    frac : float
        Where the last stretch starts, as a fraction of the points (0.75: the last quarter).
    tol : float
        Largest rise of the mean over the last stretch that still counts as flat.

    Returns
    -------
    (bool, float)
        ``rise < tol`` and ``rise``, the mean at the last point minus the mean at ``frac``.
    """
    c = np.asarray(curves, dtype=np.float64)
    ok = np.isfinite(c).any(axis=0)
    if c.ndim != 2 or not ok[-1]:
        return False, math.nan
    mean = np.array([np.nanmean(c[:, j]) if ok[j] else np.nan for j in range(c.shape[1])])
    i = int(round(frac * (len(mean) - 1)))
    rise = float(mean[-1] - mean[i])
    return bool(rise < tol), rise


def load_note(loads, cores):
    """A sentence when the timing pass of some methods ran under a load above the machine's
    ``cores`` (their seconds are inflated) or under loads differing by more than a factor 2
    (the per-second comparisons mix conditions); ``""`` otherwise."""
    if not loads:
        return ""
    hi = {m: v for m, v in loads.items() if v > cores}
    lo, top = min(loads.values()), max(loads.values())
    if not hi and top <= 2 * max(lo, 0.5):
        return ""
    return ("The timing repeats ran under a load of " + ", ".join(
        f"{m} {v:.2f}" for m, v in loads.items()) + f" (1-minute load average, {cores} cores)"
        + (": above the number of cores for " + ", ".join(hi) if hi else "")
        + ". Other processes slowed those repeats, so their seconds per epoch are inflated by "
          "an unknown factor and the per-second comparisons mix conditions; they rank "
          "what was measured, not what each method costs on a quiet machine.")
