r"""Regression with sigmoid units: the notes' two-sigmoid construction and trained networks.

The notes build a 1-D regression network with two sigmoid hidden units and a linear output,

.. math::

    \hat y = w^{(2)}_{11}\,\sigma(w^{(1)}_{11} x + w^{(1)}_{21})
           + w^{(2)}_{21}\,\sigma(w^{(1)}_{12} x + w^{(1)}_{22}) + w^{(2)}_{31},

and choose :math:`w^{(1)}_{11} = k_1,\ w^{(1)}_{21} = -k_1 m_1,\ w^{(1)}_{12} = k_2,\
w^{(1)}_{22} = -k_2 m_2` and :math:`w^{(2)}_{11} = a - b,\ w^{(2)}_{21} = c - b,\ w^{(2)}_{31} =
b`, so that :math:`\hat y = (a - b)\,\sigma(k_1 (x - m_1)) + (c - b)\,\sigma(k_2 (x - m_2)) + b`.
As :math:`k_1 = k_2 = k \to \infty` each sigmoid becomes a unit step, and :math:`\hat y` tends to
the piecewise-constant target :math:`\bar y` equal to ``b`` for ``x < m1``, ``a`` between ``m1``
and ``m2`` and ``a + c - b`` beyond ``m2``: a *step* (``c = b``) or a *bump* (``c = 2b - a``).

Part 1 (computed in the analysis, deterministic): the construction's error against ``k``. The
integrated absolute error of one sigmoid against a unit step over the whole line is
:math:`\int |\sigma(kx) - H(x)|\,dx = 2 \int_0^\infty \sigma(-kx)\,dx = 2 \ln 2 / k`, so
the *mean* absolute error over ``[-1, 1]`` (length 2) is :math:`\ln 2 / k` per unit jump, for
steps far enough from the ends (``k |m \pm 1| \gg 1``). Part 2 (the study's tuned settings):
1-hidden-layer sigmoid networks of increasing width trained on noisy 1-D targets; their error
against the noise-free target, on a dense grid, against the width.
"""

from __future__ import annotations

import math

import numpy as np

from .. import datasets, stats
from ..analysis import check_retrained, retrain
from ..protocol import Axis, Tuning
from ..registry import register
from ..report import POSITIVE, fmt, fmt_ci
from ..spec import Setting, Study

TARGETS = ("sine", "step", "bump")
#: Noise of each target in :mod:`dlbasics.studies.datasets` (its default); the test loss cannot go
#below : half its square.
NOISE = {"sine": 0.1, "step": 0.05, "bump": 0.05}
#: The notes' construction for the step ``1[x > 0]`` and the bump ``1[|x| < 0.5]`` of the data
#: sets: ``(m1, m2, a, b, c)``.
CONSTRUCTIONS = {"step": (0.0, 0.5, 1.0, 0.0, 0.0), "bump": (-0.5, 0.5, 1.0, 0.0, -1.0)}
#: Steepness values of the construction.
KS = np.geomspace(1.0, 1000.0, 31)
#: Distance from the steps outside which the construction's largest error is measured.
DELTA = 0.05
#: Points of the grid on [-1, 1] the construction is measured on (spacing 1e-5).
N_GRID = 200001


#: Fraction of the epoch budget beyond which a mean best validation epoch counts as "late" (the
#: budget may be binding).
LATE = 0.9

#: Equivalence margin of the width comparisons: two widths are "equivalent" when the ratio of
#: their errors is shown to lie within (1 / ratio, ratio) (a TOST on the log errors).
MARGIN_RATIO = 1.25


def _sizes(quick):
    """Widths, training points (+ a third as many validation points), epochs, lr grid."""
    if quick:
        return {"widths": [1, 2, 8], "n": 400, "epochs": 60, "lrs": [0.01, 0.03]}
    return {"widths": [1, 2, 4, 8, 16, 32], "n": 2667, "epochs": 200,
            "lrs": [0.01, 0.03, 0.1, 0.3]}


def _build(quick):
    z = _sizes(quick)

    def build(f):
        return Setting(
            problem=f["target"], problem_args={"n": z["n"], "clean_test": True},
            model={"hidden": [f["width"]], "activation": "sigmoid"},
            optimizer="adam", hyper={"lr": f["lr"]}, batch_size=16,
            epochs=z["epochs"], metrics="running", factors=f,
        )
    return build


@register("regression")
def make(profile):
    quick = profile == "quick"
    z = _sizes(quick)
    conditions = [{"target": t, "width": w} for t in TARGETS for w in z["widths"]]
    n_train = int(round(0.75 * z["n"]))
    return Study(
        name="regression",
        title="Regression with sigmoids: the two-sigmoid construction and trained widths",
        question="Does the notes' two-sigmoid network (w11 = k1, w21 = -k1 m1, w12 = k2, "
                 "w22 = -k2 m2; second layer a - b, c - b, b) reproduce a step and a bump as "
                 "the steepness k grows, and how fast? How does the error of trained "
                 "one-hidden-layer sigmoid networks against the noise-free 1-D target fall "
                 "with their width?",
        settings=(),
        seeds=range(10, 12) if quick else range(10, 20),
        tuning=Tuning(_build(quick), conditions,
                      {"lr": Axis(z["lrs"], scale="log", low=1e-4, high=10.0)},
                      tune_seeds=[0, 1] if quick else [0, 1, 2]),
        analysis=analyse,
        notes=f"**Construction (computed in the analysis, no randomness).** The notes' weights "
              f"are loaded into the library's `MLP([1, 2, 1], activation='sigmoid')` and also "
              f"evaluated in closed form (float64) on {N_GRID} points of [-1, 1], for k1 = k2 = "
              f"k from 1 to 1000; step: m1 = 0, a = 1, b = c = 0; bump: m1 = -0.5, m2 = 0.5, "
              f"a = 1, b = 0, c = -1 (c = 2b - a brings the output back to b).\n\n"
              f"**Networks (the stored runs).** 1-w-1 networks, sigmoid hidden units, linear "
              f"output, squared loss 1/2 (y - y*)^2, Adam with the learning rate tuned per "
              f"target and width, mini-batches of 16, {z['epochs']} epochs, on {n_train} noisy "
              f"training samples (and {z['n'] - n_train} validation samples) of sin(pi x), "
              f"1[x > 0] and 1[|x| < 0.5] with x ~ U[-1, 1] (noise std {NOISE['sine']}, "
              f"{NOISE['step']}, {NOISE['bump']}; inputs standardised), drawn afresh for every "
              f"seed. The test split is not noisy: it is a dense grid of "
              f"{datasets.N_TEST} evenly spaced points of [-1, 1] with the noise-free target, "
              f"so the test loss 1/2 mean (f(x) - yhat(x))^2 is the error against the function "
              f"itself. Claims use the early-stopped network (the epoch of lowest validation "
              f"loss, `es_test_loss`) unless they say final.",
    )


# ----------------------------------------------------------------------------------------------
# the construction
# ----------------------------------------------------------------------------------------------


def _sigmoid(z):
    from scipy.special import expit

    return expit(z)


def two_sigmoid(x, k1, m1, k2, m2, a, b, c):
    """The notes' network: ``(a - b) s(k1 (x - m1)) + (c - b) s(k2 (x - m2)) + b`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return (a - b) * _sigmoid(k1 * x - k1 * m1) + (c - b) * _sigmoid(k2 * x - k2 * m2) + b


def target(x, m1, m2, a, b, c):
    """The limit: ``b`` for ``x <= m1``, ``a`` for ``m1 < x <= m2``, ``a + c - b`` beyond."""
    x = np.asarray(x, dtype=np.float64)
    return b + (a - b) * (x > m1) + (c - b) * (x > m2)


def construction_mlp(k1, m1, k2, m2, a, b, c):
    """A :class:`dlbasics.models.MLP` ``[1, 2, 1]`` with sigmoid hidden units holding the notes'
    weights."""
    from ...models import MLP

    net = MLP([1, 2, 1], activation="sigmoid", output="identity", loss="squared")
    net.weights[0][...] = [[k1, k2]]
    net.biases[0][...] = [-k1 * m1, -k2 * m2]
    net.weights[1][...] = [[a - b], [c - b]]
    net.biases[1][...] = [b]
    return net


def construction_errors(k, m1, m2, a, b, c, delta=DELTA, n=N_GRID):
    """Errors of the construction with ``k1 = k2 = k`` against its target on ``[-1, 1]``.

    Returns
    -------
    dict
        ``mean_abs`` (mean absolute error over the grid), ``max_away`` (largest error at
        distance >= ``delta`` from the steps), ``max_all`` (largest error anywhere, reached at
        a step), ``mean_abs_theory`` (the closed form ``sum |jump| * ln 2 / k``: the integrated
        error ``2 ln 2 / k`` per unit jump over the whole line, divided by the interval's
        length 2).
    """
    x = np.linspace(-1.0, 1.0, n)
    err = np.abs(two_sigmoid(x, k, m1, k, m2, a, b, c) - target(x, m1, m2, a, b, c))
    steps = [m for m, jump in ((m1, a - b), (m2, c - b)) if jump != 0]
    away = np.ones_like(x, dtype=bool)
    for m in steps:
        away &= np.abs(x - m) >= delta
    jumps = abs(a - b) + abs(c - b)
    return {"mean_abs": float(err.mean()), "max_away": float(err[away].max()),
            "max_all": float(err.max()), "mean_abs_theory": jumps * 2 * math.log(2) / k / 2}


# ----------------------------------------------------------------------------------------------
# trained networks
# ----------------------------------------------------------------------------------------------


def log_ci(values):
    """Geometric mean of positive ``values`` and its 95% CI (t-interval of the logarithms)."""
    v = np.asarray(values, dtype=np.float64)
    ci = stats.mean_ci(np.log(v[np.isfinite(v) & (v > 0)]))
    return math.exp(ci.mean), math.exp(ci.lo), math.exp(ci.hi)


def _standardise(ds, x):
    mu, sd = ds.info["mean"][0], ds.info["std"][0]
    return ((np.asarray(x, dtype=np.float64) - mu) / sd).reshape(-1, 1)


def effective_steps(model, ds):
    """Each hidden unit as ``s(k (x - m))`` in raw ``x``: ``(k, m, output weight)`` per unit.

    A unit with ``k < 0`` is written ``1 - s(|k| (x - m))``: ``k`` is reported as ``|k|`` and its
    output weight with the sign it then has.
    """
    mu, sd = ds.info["mean"][0], ds.info["std"][0]
    w = model.weights[0][0].astype(np.float64)
    b = model.biases[0].astype(np.float64)
    v = model.weights[1][:, 0].astype(np.float64)
    k = w / sd
    with np.errstate(divide="ignore", invalid="ignore"):
        m = mu - b * sd / w
    return [(abs(kj), mj, vj if kj >= 0 else -vj) for kj, mj, vj in zip(k, m, v, strict=True)]


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------


def _construction_figures(report):
    shown = (2.0, 5.0, 20.0, 100.0)
    x = np.linspace(-1.0, 1.0, 2001)
    with report.figure(
        "construction",
        "The notes' two-sigmoid network for a step (left) and a bump (right), k1 = k2 = k, "
        "against its target (black): as k grows the output approaches the target everywhere "
        "but at the steps themselves, where it stays halfway.",
        ncols=2, sharey=True,
    ) as (_, axes):
        for ax, name in zip(axes, ("step", "bump"), strict=True):
            m1, m2, a, b, c = CONSTRUCTIONS[name]
            ax.plot(x, target(x, m1, m2, a, b, c), color="k", lw=2.5, label="target")
            for i, k in enumerate(shown):
                ax.plot(x, two_sigmoid(x, k, m1, k, m2, a, b, c), lw=1.6, color=f"C{i}",
                        label=f"k = {k:g}")
            ax.set_title(f"{name}: m1 = {m1:g}" + (f", m2 = {m2:g}" if c != b else "")
                         + f", a = {a:g}, b = {b:g}, c = {c:g}")
            ax.set_xlabel("x")
            ax.legend(loc="upper left")
        axes[0].set_ylabel("network output")
    errs = {n: [construction_errors(k, *CONSTRUCTIONS[n]) for k in KS] for n in ("step", "bump")}
    with report.figure(
        "construction_error",
        f"Error of the construction against k (log-log): mean absolute error over [-1, 1] "
        f"(dots: computed on {N_GRID} points; line: the closed form ln 2 x (sum of |jumps|) / "
        f"k), largest error at distance >= {DELTA:g} from the steps, and largest error "
        f"anywhere.",
        ncols=2, sharey=True,
    ) as (_, axes):
        for ax, name in zip(axes, ("step", "bump"), strict=True):
            e = errs[name]
            ax.plot(KS, [r["mean_abs"] for r in e], "o", ms=4, color="C0",
                    label="mean |error| (computed)")
            ax.plot(KS, [r["mean_abs_theory"] for r in e], "-", color="C0", lw=1.2,
                    label="mean |error| (closed form)")
            ax.plot(KS, np.maximum([r["max_away"] for r in e], 1e-300), "s-", ms=3,
                    color="C1", label=f"max |error|, |x - m| >= {DELTA:g}")
            ax.plot(KS, [r["max_all"] for r in e], "^-", ms=3, color="C3",
                    label="max |error| anywhere")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylim(1e-12, 2)
            ax.set_xlabel("steepness k (log scale)")
            ax.set_title(name)
            ax.legend(loc="lower left")
        axes[0].set_ylabel("error (log scale)")
    return errs


def _width_figure(results, report):
    with report.figure(
        "width",
        f"Error of trained 1-w-1 sigmoid networks against the noise-free target (1/2 mean "
        f"squared error on {datasets.N_TEST} evenly spaced points of [-1, 1]) against the width "
        f"w, each width at its tuned learning rate: geometric mean and 95% CI over "
        f"{len(results.seeds)} seeds (each its own data), computed on the logarithms; circles: "
        f"the early-stopped network (lowest validation loss), squares: the final one.",
        ncols=len(TARGETS), figsize=(4.6 * len(TARGETS), 4.0),
    ) as (fig, axes):
        for ax, name in zip(np.atleast_1d(axes), TARGETS, strict=True):
            ss = sorted(results.select(target=name), key=lambda s: s.factors["width"])
            w = [s.factors["width"] for s in ss]
            for label, marker, key in (("early-stopped", "o", "es_test_loss"),
                                       ("final", "s", "test_loss")):
                gm, lo, hi = np.array([log_ci(results.values(s, key)) for s in ss]).T
                ax.errorbar(w, gm, yerr=np.nan_to_num([gm - lo, hi - gm]), marker=marker,
                            capsize=3, label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(w)
            ax.set_xticklabels([str(v) for v in w])
            ax.set_xlabel("hidden units w (log scale)")
            ax.set_ylabel("error vs noise-free target (log scale)")
            ax.set_title(name)
        handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=len(labels),
                   bbox_to_anchor=(0.5, 0.0), fontsize=9.5)


def _fits_figure(results, report, fits):
    from ..datasets import TARGETS as FUNCS

    x = np.linspace(-1.0, 1.0, 801)
    with report.figure(
        "fits",
        "Trained 1-w-1 sigmoid networks (final; of each width the seed with the lowest final "
        "validation loss) against the noise-free target (black) and a sample of that seed's "
        "training data (grey dots).",
        ncols=len(TARGETS), figsize=(4.6 * len(TARGETS), 4.0),
    ) as (fig, axes):
        for ax, name in zip(np.atleast_1d(axes), TARGETS, strict=True):
            ss = [s for s in results.select(target=name) if s.label in fits]
            ss.sort(key=lambda s: s.factors["width"])
            for i, s in enumerate(ss):
                model, ds = fits[s.label]
                if i == 0:
                    xr = ds.X_train[:300, 0] * ds.info["std"][0] + ds.info["mean"][0]
                    ax.scatter(xr, ds.y_train[:300, 0], s=6, color="0.6",
                               label="training data (300 shown)")
                    ax.plot(x, FUNCS[name](x), color="k", lw=2.2, label="target")
                y = model.forward(_standardise(ds, x).astype(np.float32))[:, 0]
                ax.plot(x, y, lw=1.6, color=f"C{i}", label=f"w = {s.factors['width']}")
            ax.set_xlabel("x")
            ax.set_ylabel("y")
            ax.set_title(name)
        handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=len(labels),
                   bbox_to_anchor=(0.5, 0.0), fontsize=9.5)


def _shown_widths(widths):
    return sorted({widths[0], widths[min(1, len(widths) - 1)], widths[len(widths) // 2],
                   widths[-1]})


def width_comparisons(results, key="es_test_loss", ratio=MARGIN_RATIO):
    """Per target, every width against the width of lowest mean log error, on the log errors.

    Returns ``{target: (best_width, rows)}`` with the rows of :func:`stats.compare` (pairs
    ``"w=a / w=best"``, effect = mean log ratio; Holm over all pairs of all targets; margin
    ``ln(ratio)``).
    """
    pairs, owner, best = [], [], {}
    for name in TARGETS:
        ss = {s.factors["width"]: s for s in results.select(target=name)}
        logs = {w: np.log(results.values(s, key)) for w, s in ss.items()}
        means = {w: float(np.nanmean(v)) for w, v in logs.items() if np.isfinite(v).any()}
        if not means:
            continue
        b = min(means, key=means.get)
        best[name] = b
        for w in sorted(means):
            if w != b:
                pairs.append((f"w={w} / w={b}", logs[w], logs[b]))
                owner.append((name, w))
    rows = stats.compare(pairs, margin=math.log(ratio)) if pairs else []
    out = {name: (b, []) for name, b in best.items()}
    for (name, w), r in zip(owner, rows, strict=True):
        r["width"] = w
        out[name][1].append(r)
    return out


def _verdict(r, best):
    """The verdict of a width comparison in words (``a`` is the width, ``b`` the best one)."""
    v = r["verdict"]
    if v == "a better":
        return f"w={r['width']} lower"
    if v == "b better":
        return f"w={best} lower"
    if v.startswith("equivalent"):
        return f"equivalent within x{MARGIN_RATIO:g}"
    return v


def _ratio_ci(r):
    return (f"{fmt(math.exp(r['diff']), 3)} [{fmt(math.exp(r['lo']), 3)}, "
            f"{fmt(math.exp(r['hi']), 3)}]")


def analyse(results, report):
    report.section("The notes' two-sigmoid construction")
    errs = _construction_figures(report)
    # the same weights in the library's MLP (float32)
    x = np.linspace(-1.0, 1.0, 2001)
    mlp_dev = 0.0
    for m1, m2, a, b, c in CONSTRUCTIONS.values():
        for k in (1.0, 10.0, 100.0):
            net = construction_mlp(k, m1, k, m2, a, b, c)
            out = net.forward(x.reshape(-1, 1).astype(np.float32))[:, 0]
            mlp_dev = max(mlp_dev, float(np.max(np.abs(out - two_sigmoid(x, k, m1, k, m2,
                                                                            a, b, c)))))
    rows = []
    for name in ("step", "bump"):
        for k in (1.0, 10.0, 100.0, 1000.0):
            e = construction_errors(k, *CONSTRUCTIONS[name])
            rows.append([name, fmt(k), fmt(e["mean_abs"]), fmt(e["mean_abs_theory"]),
                         fmt(e["max_away"]), fmt(e["max_all"])])
    report.table(["target", "k", "mean |error| on [-1, 1]", "closed form (ln 2 / k per unit "
                  "jump)", f"max |error|, |x - m| >= {DELTA:g}", "max |error| anywhere"], rows,
                 caption="Errors of the construction on [-1, 1]. The closed form is the "
                         "integrated error over the whole line, 2 ln 2 / k per unit jump, "
                         "divided by the length 2 of the interval; it is exact for large k.")
    report.text(f"The same weights loaded into the library's `MLP([1, 2, 1])` (float32) give "
                f"the closed-form output to within {fmt(mlp_dev, 3)} (k = 1, 10, 100).")

    report.section("Trained networks of increasing width")
    _width_figure(results, report)
    widths = results.factor_values("width")
    shown = _shown_widths(widths)
    fits, checks = {}, []
    for s in results.settings:
        if s.factors["width"] in shown:
            v = results.values(s, "final_val_loss")
            if not np.isfinite(v).any():
                continue
            seed = results.seeds[int(np.nanargmin(v))]
            (m,), hists, (d,) = retrain(s, [seed])
            checks.append(check_retrained(results, s, [seed], hists))
            fits[s.label] = (m, d)
    _fits_figure(results, report, fits)
    rows = []
    for s in sorted(results.settings, key=lambda s: (TARGETS.index(s.factors["target"]),
                                                     s.factors["width"])):
        rows.append([s.factors["target"], s.factors["width"], fmt(s.factors["lr"]),
                     fmt_ci(results.values(s, "es_test_loss"), bounds=POSITIVE),
                     fmt_ci(results.values(s, "test_loss"), bounds=POSITIVE),
                     fmt_ci(results.values(s, "best_val_epoch"), bounds=POSITIVE),
                     fmt(0.5 * NOISE[s.factors["target"]] ** 2)])
    report.table(["target", "width", "tuned lr", "error vs noise-free target (early-stopped)",
                  "error vs noise-free target (final)", "best validation epoch",
                  "noise floor of the validation loss"],
                 rows, caption=f"Mean [95% CI] over {len(results.seeds)} seeds (1/2 mean "
                               f"squared error against the noise-free target on "
                               f"{datasets.N_TEST} evenly spaced points of [-1, 1]).")
    comps = width_comparisons(results)
    crow = []
    for name, (b, rs) in comps.items():
        for r in rs:
            crow.append([name, f"{r['width']} / {b}", r["n"], _ratio_ci(r), fmt(r["p_holm"], 3),
                         fmt(r["tost_p_holm"], 3), _verdict(r, b)])
    if crow:
        report.table(["target", "width / best width", "pairs", "error ratio [95% CI]",
                      "Holm p (difference)", f"Holm p (TOST, ratio within {MARGIN_RATIO:g})",
                      "verdict"], crow,
                     caption="Early-stopped error against the noise-free target, each width "
                             "against the width of lowest mean log error of the same target: "
                             "ratio = geometric mean of the per-seed ratios (paired t-test on "
                             "the logarithms, same seeds and data); equivalence only through "
                             "the TOST with the stated margin.")

    bump2 = results.select(target="bump", width=2)
    steps_rows = []
    if bump2:
        models, hists, dss = retrain(bump2[0], results.seeds)
        checks.append(check_retrained(results, bump2[0], results.seeds, hists))
        for seed, m, ds, fe in zip(results.seeds, models, dss,
                                   results.values(bump2[0], "test_loss"), strict=True):
            units = sorted(effective_steps(m, ds), key=lambda u: u[1])
            steps_rows.append((seed, units, fe))
        report.table(
            ["seed", "unit 1: k, m, out weight", "unit 2: k, m, out weight",
             "error vs noise-free bump (final)"],
            [[seed, *(f"{fmt(k, 3)}, {fmt(mm, 3)}, {fmt(v, 3)}" for k, mm, v in units), fmt(fe)]
             for seed, units, fe in steps_rows],
            caption="What the trained 2-unit networks on the bump found (final networks), "
                    "each hidden unit written as s(k (x - m)) in raw x (the notes' "
                    "construction: m = -0.5 and 0.5, output weights +1 and -1, k as large as "
                    "possible).")
    diff = max((c for c in checks if np.isfinite(c)), default=float("nan"))
    report.text(f"The networks of the two figures above were trained again inside the analysis "
                f"(same data, seeds and visiting order as the stored runs); their final "
                f"validation losses differ from the stored ones by at most {fmt(diff, 3)}.")

    # -- conclusions ------------------------------------------------------------------------
    report.conclusion(_construction_conclusion(errs))
    parts, plateau = [], []
    for name in TARGETS:
        if name not in comps:
            continue
        b, rs = comps[name]
        ss = {s.factors["width"]: s for s in results.select(target=name)}
        gm = {w: log_ci(results.values(s, "es_test_loss"))[0] for w, s in ss.items()}
        ws = sorted(gm)
        worse = [r["width"] for r in rs if r["verdict"] == "b better"]
        equiv = [r["width"] for r in rs if r["verdict"].startswith("equivalent")]
        unclear = [r["width"] for r in rs if r["verdict"] == "inconclusive"]
        text = (f"{name}: geometric mean error {fmt(gm[ws[0]], 3)} at width {ws[0]}, lowest "
                f"{fmt(gm[b], 3)} at width {b}")
        if worse:
            text += f"; significantly higher at width{'s' if len(worse) > 1 else ''} " \
                    f"{', '.join(map(str, worse))}"
        if equiv:
            text += (f"; equivalent within a factor {MARGIN_RATIO:g} at width"
                     f"{'s' if len(equiv) > 1 else ''} {', '.join(map(str, equiv))}")
        if unclear:
            text += f"; neither shown at {', '.join(map(str, unclear))}"
        parts.append(text)
        ok = {b, *equiv}
        from_w = next((w for w in ws if all(v in ok for v in ws if v >= w)), None)
        if from_w is not None and from_w < ws[-1]:
            plateau.append((name, from_w, b))
    text = ("**Width.** Early-stopped error of the trained networks against the noise-free "
            "target (paired over seeds, Holm-corrected): " + "; ".join(parts) + ".")
    fr = []
    for s in results.settings:
        es, fi = results.values(s, "es_test_loss"), results.values(s, "test_loss")
        ok = np.isfinite(es) & np.isfinite(fi) & (es > 0) & (fi > 0)
        if ok.any():
            fr.append((float(np.exp(np.mean(np.log(fi[ok] / es[ok])))),
                       f"{s.factors['target']} w={s.factors['width']}"))
    if fr:
        lo_r, hi_r = min(fr), max(fr)
        text += (f" The final networks' error is {fmt(lo_r[0], 3)} ({lo_r[1]}) to "
                 f"{fmt(hi_r[0], 3)} ({hi_r[1]}) times the early-stopped one (geometric mean "
                 f"of the per-seed ratios); the learning rates were selected on the best "
                 f"validation loss, not on the final one.")
    late = []
    for s in sorted(results.settings, key=lambda s: (TARGETS.index(s.factors["target"]),
                                                     s.factors["width"])):
        be = results.values(s, "best_val_epoch")
        if np.isfinite(be).any() and np.nanmean(be) >= LATE * s.epochs:
            late.append(f"{s.factors['target']} w={s.factors['width']} "
                        f"({fmt(float(np.nanmean(be)), 3)})")
    if late:
        ep = results.settings[0].epochs
        text += (f" Budget: the mean best validation epoch is at or beyond {LATE:.0%} of the "
                 f"{ep} epochs for " + ", ".join(late) + ": their validation loss was still "
                 f"reaching new lows near the end, so their errors are those of a {ep}-epoch "
                 f"budget, not of converged training, and may fall further.")
    ks = [k for _, u, _ in steps_rows for k, _, _ in u]
    if plateau:
        text += (" Widening beyond a few units buys nothing measurable here (" + ", ".join(
            f"{n}: every width from {w} on is the best ({b}) or within a factor "
            f"{MARGIN_RATIO:g} of it" for n, w, b in plateau) + ").")
    if ks:
        text += (f" One sigmoid per jump suffices in principle (the construction above); the "
                 f"trained 2-unit bump networks have steepness k = {fmt(min(ks), 3)} to "
                 f"{fmt(max(ks), 3)}, where the construction's mean |error| on [-1, 1] is "
                 f"{fmt(2 * math.log(2) / max(ks), 3)} to {fmt(2 * math.log(2) / min(ks), 3)} "
                 f"(2 ln 2 / k for the two unit jumps).")
        # the construction's error in the metric of the trained networks: 1/2 mean squared
        # error on [-1, 1], (ln 2 - 1/2) / (2 k) per unit jump (integral of s(-k|x|)^2 = 2 (ln 2
        # - 1/2) / k over the line, over the length 2, halved)
        c_lo = (math.log(2) - 0.5) / max(ks)
        c_hi = (math.log(2) - 0.5) / min(ks)
        fe = [v for _, _, v in steps_rows if np.isfinite(v)]
        if fe:
            text += (f" In the trained networks' metric (1/2 mean squared error on [-1, 1]) the "
                     f"construction at those k has {fmt(c_lo, 3)} to {fmt(c_hi, 3)} "
                     f"((ln 2 - 1/2) / k for two unit jumps); the trained 2-unit networks "
                     f"(final) have {fmt(min(fe), 3)} to {fmt(max(fe), 3)}")
            if min(fe) > c_hi:
                text += (": all above it, so their levels and step positions (table above), "
                         "not only their finite steepness, cost error.")
            else:
                text += "."
    report.conclusion(text)
    e = errs["bump"]
    slope = float(np.polyfit(np.log(KS[KS >= 10]),
                             np.log([r["mean_abs"] for r, k in zip(e, KS, strict=True)
                                     if k >= 10]), 1)[0])
    head = (f"The notes' two-sigmoid network approaches the bump with a mean absolute error "
            f"on [-1, 1] ~ k^{fmt(slope, 3)} ({fmt(e[-1]['mean_abs'], 3)} at k = "
            f"{fmt(KS[-1])}, closed form 2 x ln 2 / k = {fmt(e[-1]['mean_abs_theory'], 3)} for "
            f"its two unit jumps) but its largest error never falls below "
            f"{fmt(min(r['max_all'] for r in e), 3)} (halfway, at the steps) at any k")
    n_tr = int(round(0.75 * results.settings[0].problem_args["n"])) if results.settings else 0
    if plateau:
        n0, w0, b0 = plateau[0]
        head += (f"; trained one-hidden-layer sigmoid networks ({n_tr} training points) stop "
                 f"improving with the width: on the {n0}, every width from {w0} on is within a "
                 f"factor {MARGIN_RATIO:g} of the best ({b0}; early-stopped error against the "
                 f"noise-free target, TOST, Holm-corrected)")
    elif comps:
        n0 = "bump" if "bump" in comps else next(iter(comps))
        b0, rs = comps[n0]
        ss = {s.factors["width"]: s for s in results.select(target=n0)}
        w_lo = min(ss)
        r0 = next((r for r in rs if r["width"] == w_lo), None)
        worse0 = [r["width"] for r in rs if r["verdict"] == "b better"]
        head += (f"; for trained one-hidden-layer sigmoid networks ({n_tr} training points) on "
                 f"the {n0} the lowest geometric-mean early-stopped error against the "
                 f"noise-free target is at width {b0}")
        if r0 is not None:
            head += (f" (width {w_lo} / width {b0}: error ratio {_ratio_ci(r0)}, "
                     f"{_verdict(r0, b0)})")
        head += (f", significantly below width{'s' if len(worse0) != 1 else ''} "
                 f"{', '.join(map(str, worse0)) or 'none'} only, and no width is shown "
                 f"equivalent to it (TOST, error ratio within a factor {MARGIN_RATIO:g})")
    report.claim(head + ".")
    if steps_rows:
        found = sum(1 for _, u, _ in steps_rows if len(u) == 2
                    and abs(u[0][1] + 0.5) < 0.1 and abs(u[1][1] - 0.5) < 0.1)
        dev = max((max(abs(u[0][1] + 0.5), abs(u[1][1] - 0.5)) for _, u, _ in steps_rows
                   if len(u) == 2), default=float("nan"))
        report.conclusion(
            f"**What two trained units find.** On the bump, {found}/{len(steps_rows)} trained "
            f"2-unit networks placed their two steps within 0.1 of the notes' m = -0.5 and "
            f"0.5 (largest deviation {fmt(dev, 3)}), with steepness k between {fmt(min(ks), 3)} "
            f"and {fmt(max(ks), 3)}: Adam "
            + ("rediscovers the construction, with a finite k." if found ==
               len(steps_rows) else "does not always find the construction."))


def _construction_conclusion(errs):
    """The construction's conclusion, from the errors against k."""
    parts, slopes, flat = [], [], []
    i10 = int(np.argmin(np.abs(KS - 10)))
    for name, e in errs.items():
        big = KS >= 10
        slope = float(np.polyfit(np.log(KS[big]),
                                 np.log([r["mean_abs"] for r in np.array(e)[big]]), 1)[0])
        slopes.append(slope)
        flat.append(min(r["max_all"] for r in e))
        parts.append(f"{name}: mean |error| {fmt(e[i10]['mean_abs'], 3)} at k = "
                     f"{fmt(KS[i10], 3)} and {fmt(e[-1]['mean_abs'], 3)} at k = {fmt(KS[-1])} "
                     f"(~ k^{fmt(slope, 3)}; closed form {fmt(e[-1]['mean_abs_theory'], 3)}); "
                     f"largest error at distance >= {DELTA:g} from the steps "
                     f"{fmt(e[i10]['max_away'], 3)} -> {fmt(e[-1]['max_away'], 3)}; largest "
                     f"error anywhere never below {fmt(flat[-1], 3)}")
    text = ("**Construction.** With k1 = k2 = k the notes' weights approach the target as k "
            "grows: " + "; ".join(parts) + ".")
    if all(abs(s + 1) < 0.05 for s in slopes):
        text += (" The mean error falls as 1/k, as the closed form says: the integrated error "
                 "over the line is 2 ln 2 / k per unit jump, so its mean over [-1, 1] is "
                 "ln 2 / k per unit jump,")
    else:
        text += (f" The mean error falls as k^{fmt(min(slopes), 3)} to k^{fmt(max(slopes), 3)}, "
                 f"not as the closed form's 1/k,")
    text += " and the error away from the steps falls exponentially."
    if min(flat) >= 0.45:
        text += (" But at the steps themselves the output stays halfway for every k, so the "
                 "largest error never falls: the construction converges pointwise away from "
                 "the steps and in mean, not uniformly. It reproduces the step and the bump "
                 "exactly only in the limit k -> infinity, not at any finite k.")
    return text
