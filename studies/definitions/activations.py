"""The activation functions of the notes: each one and its derivative, saturation, and training.

The notes list the threshold (step) neuron, the sigmoid and the other usual activations. This
study draws each activation and its derivative (from the library's own kernels,
:mod:`dlbasics.kernels.activations`), shows where the sigmoid and tanh *saturate* (their derivative
falls towards zero for large ``|z|``, so back-propagated gradients shrink), measures how the
gradient reaching each layer of a deep network at initialisation depends on the activation and
its initialisation (absolute norms and their ratio), and trains the same four-hidden-layer
network on the two spirals with each hidden activation by plain SGD, with the shared (Glorot)
and the matched (Glorot for saturating units, He for the ReLU family) initialisation, each at
its own tuned learning rate.

The function plots and the gradients at initialisation are computed inside the analysis,
deterministically (initialisation seeds are the report seeds). The trained networks are the
study's settings; the pre-activation histograms after training come from those networks trained
again inside the analysis (the store keeps no parameters).
"""

from __future__ import annotations

import numpy as np

from .. import stats
from ..analysis import Networks, layer_outputs, log_axis
from ..protocol import Axis, Tuning
from ..registry import register
from ..report import FRACTION, POSITIVE, fmt, fmt_ci
from ..spec import Setting, Study

#: Every elementwise activation of the notes, in the order of the pictures.
PLOTTED = ("identity", "step", "sign", "sigmoid", "tanh", "relu", "leaky_relu", "softplus")
#: A unit is *saturated* where its derivative is below this fraction of the derivative's maximum.
SATURATED = 0.1
#: Depth and width of the network whose gradients at initialisation are measured.
DEEP = (10, 16)
#: Initialisation matched to each activation: Glorot (2010) for the saturating ones, He (2015)
#: for the ReLU family (softplus is a smooth ReLU); the shared one is Glorot for every
#: activation (the MLP's default).
MATCHED = {"identity": "glorot", "step": "glorot", "sign": "glorot", "sigmoid": "glorot",
           "tanh": "glorot", "relu": "he", "leaky_relu": "he", "softplus": "he"}
SHARED = "glorot"
#: One colour per activation in every figure.
COLORS = {n: f"C{i}" for i, n in enumerate(PLOTTED)}
#: Equivalence margin of the paired comparisons (test accuracy: 50 of 10,000 test points).
MARGIN = 0.005


def _params(quick):
    if quick:
        return {"acts": ["sigmoid", "tanh", "relu"], "both": ["sigmoid", "tanh", "relu"],
                "lrs": [0.1, 1.0], "n": 200, "hidden": [8, 8, 8], "epochs": 20,
                "tune": [0, 1], "report": [10, 11]}
    # pilot (spirals, n = 1000, 4 x 16, SGD, 200 epochs, 2 seeds, best lr): sigmoid with Glorot
    # 0.66 test accuracy, softplus with Glorot 0.97, tanh/relu/leaky/softplus (He) 0.99-1.0;
    # best validation epochs near the end (145-198 of 200) at most rates, so 400 epochs here
    return {"acts": ["identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "softplus"],
            "both": ["sigmoid", "tanh", "relu", "leaky_relu", "softplus"],
            "lrs": [0.03, 0.1, 0.3, 1.0], "n": 1000, "hidden": [16, 16, 16, 16],
            "epochs": 400, "tune": [0, 1, 2], "report": list(range(10, 20))}


def _conditions(prm):
    out = []
    for a in prm["acts"]:
        inits = ["glorot", "he"] if a in prm["both"] else [MATCHED[a]]
        out += [{"activation": a, "init": i} for i in inits]
    return out


@register("activations")
def make(profile):
    quick = profile == "quick"
    prm = _params(quick)

    def build(f):
        return Setting(
            problem="spirals", problem_args={"n": prm["n"]},
            model={"hidden": prm["hidden"], "activation": f["activation"], "init": f["init"]},
            optimizer="sgd", hyper={"lr": f["lr"]}, batch_size=16, epochs=prm["epochs"],
            metrics="running", factors=f)

    depth = len(prm["hidden"])
    return Study(
        name="activations",
        title="Activation functions: derivatives, saturation, initialisation and training",
        question="What does each activation of the notes and its derivative look like, where "
                 "do the sigmoid and tanh saturate, how much gradient reaches the early layers "
                 "of a deep network with each (and with which initialisation), and how well "
                 f"does the same {depth}-hidden-layer network learn the two spirals with each "
                 "hidden activation under plain SGD, each at its tuned learning rate, with the "
                 "shared (Glorot) and the matched initialisation?",
        settings=(),
        seeds=prm["report"],
        tuning=Tuning(build, conditions=_conditions(prm),
                      axes={"lr": Axis(prm["lrs"], scale="log")}, tune_seeds=prm["tune"]),
        analysis=analyse,
        notes=f"**Computed in the analysis (not stored runs).** Activation values and "
              f"derivatives from `dlbasics.kernels.activations` (float32). Gradients at "
              f"initialisation: a {DEEP[0]}-layer network of width {DEEP[1]} (Glorot-uniform "
              f"or He-normal weights, zero biases, sigmoid output, binary cross-entropy) on "
              f"the first report seed's spirals training split, one network per report seed "
              f"(the seed sets the initialisation); the norm of each layer's weight gradient. "
              f"A unit counts as saturated where f'(z) < {SATURATED:g} max f'.\n\n"
              f"**Networks (the stored runs).** 2-{'-'.join(map(str, prm['hidden']))}-1 with "
              f"the named hidden activation and initialisation (Glorot uniform, the shared "
              f"default, for every activation; He normal as well for the ReLU family, softplus, "
              f"sigmoid and tanh, so that each activation is also run with its matched "
              f"initialisation: {', '.join(f'{a} {MATCHED[a]}' for a in prm['acts'])}), "
              f"sigmoid output, binary cross-entropy, plain SGD (no momentum: the size of the "
              f"gradient is all there is), mini-batches of 16, {prm['epochs']} epochs, the "
              f"learning rate tuned per activation and initialisation.",
    )


# ----------------------------------------------------------------------------------------------
# computed in the analysis
# ----------------------------------------------------------------------------------------------


def values(name, z):
    """``(f(z), f'(z))`` of activation ``name`` (float64 results of the float32 kernels)."""
    from ...kernels.activations import activate, derivative

    z32 = np.ascontiguousarray(z, dtype=np.float32)
    return (activate(name, z32).astype(np.float64), derivative(name, z32).astype(np.float64))


def saturated_region(name, frac=SATURATED, zmax=50.0):
    """Where ``f'(z) < frac * max f'`` on ``[-zmax, zmax]``, as ``(lo, hi)`` edges.

    The region is ``z < lo`` together with ``z > hi`` (``lo = -inf``: no left part; ``hi =
    inf``: no right part). An activation whose derivative is 0 everywhere gives ``(inf,
    -inf)`` (everywhere); one that never saturates ``(-inf, inf)``.
    """
    z = np.linspace(-zmax, zmax, 400001)
    _, d = values(name, z)
    dmax = float(d.max())
    if dmax <= 0:
        return float("inf"), float("-inf")
    mask = d < frac * dmax
    lo = float(z[np.flatnonzero(~mask)[0]]) if mask[0] else float("-inf")
    hi = float(z[np.flatnonzero(~mask)[-1]]) if mask[-1] else float("inf")
    return round(lo, 3) + 0.0, round(hi, 3) + 0.0  # to the grid's precision (no -0.0)


def describe_region(lo, hi):
    """Words for :func:`saturated_region`'s edges."""
    if lo == float("inf"):
        return "everywhere (f' = 0)"
    parts = []
    if np.isfinite(lo) and np.isfinite(hi) and abs(lo + hi) < 1e-3 * max(1.0, hi):
        return f"|z| > {hi:.3g}"
    if np.isfinite(lo):
        parts.append(f"z < {lo:.3g}")
    if np.isfinite(hi):
        parts.append(f"z > {hi:.3g}")
    return " or ".join(parts) or "never"


def saturated_share(name, z, frac=SATURATED):
    """Share of pre-activations ``z`` where ``f'(z) < frac * max f'``."""
    _, d = values(name, np.asarray(z).ravel())
    dmax = float(np.max(values(name, np.linspace(-50, 50, 20001))[1]))
    if dmax <= 0:
        return 1.0
    return float(np.mean(d < frac * dmax))


def layer_gradients(activation, seed, X, y, depth=DEEP[0], width=DEEP[1], init="glorot"):
    """Norm of each layer's weight gradient of a fresh deep network (first layer first)."""
    from ...models import MLP

    m = MLP([X.shape[1], *[width] * (depth - 1), 1], activation=activation, output="sigmoid",
            loss="binary_cross_entropy", seed=int(seed), init=init)
    _, g = m.gradient(X, y)
    return np.array([np.linalg.norm(g[w_off: w_off + n_in * n_out])
                     for n_in, n_out, w_off, _ in m.layout])


def pre_activations(model, X):
    """Hidden pre-activations ``z`` of every hidden layer of ``model``, pooled."""
    outs = layer_outputs(model, X)
    zs = []
    a = np.ascontiguousarray(X, dtype=model.dtype)
    for W, b, out in zip(model.weights[:-1], model.biases[:-1], outs[:-1], strict=True):
        zs.append((a @ W + b).ravel())
        a = out
    return np.concatenate(zs)


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------


def _functions_figure(report):
    z = np.linspace(-5, 5, 2001)
    ncols = 4
    nrows = int(np.ceil(len(PLOTTED) / ncols))
    with report.figure(
        "functions",
        "Each activation f(z) (solid) and its derivative f'(z) (dashed) as the kernels compute "
        "them. Step and sign have derivative 0 everywhere but at 0, where it is undefined "
        "(the kernels return 0): gradient descent gets no signal through them.",
        nrows=nrows, ncols=ncols, figsize=(3.6 * ncols, 3.2 * nrows),
    ) as (_, axes):
        for ax, name in zip(np.ravel(axes), PLOTTED, strict=False):
            f, d = values(name, z)
            ax.plot(z, f, lw=2, label="f(z)")
            ax.plot(z, d, lw=2, ls="--", label="f'(z)")
            ax.axhline(0, color="0.5", lw=0.6)
            ax.axvline(0, color="0.5", lw=0.6)
            ax.set_title(name)
            ax.set_xlabel("z")
            ax.set_ylim(-1.3, max(1.3, float(np.max(f[np.abs(z) <= 2])) + 0.3))
            ax.legend(loc="upper left")


#: Activations of the gradient-at-initialisation measurements.
PROBED = ("sigmoid", "tanh", "softplus", "relu", "leaky_relu", "identity")


def gradient_table(X, y, seeds, names=PROBED, inits=("glorot", "he")):
    """``{(activation, init): (n_seeds, depth) array}`` of layer gradient norms at init."""
    return {(n, i): np.array([layer_gradients(n, s, X, y, init=i) for s in seeds])
            for n in names for i in inits}


def geo_mean(values):
    """Geometric mean of positive values (zeros count as 1e-30)."""
    return float(np.exp(np.mean(np.log(np.maximum(np.asarray(values, dtype=float), 1e-30)))))


def _saturation_figure(report, grads, seeds):
    z = np.linspace(-10, 10, 4001)
    with report.figure(
        "saturation",
        f"Saturation. Left: |f'(z)| on a log scale; shaded where the sigmoid and tanh are "
        f"saturated, f'(z) < {SATURATED:g} max f'. Right: norm of each layer's weight "
        f"gradient in a {DEEP[0]}-layer, width-{DEEP[1]} network at initialisation, Glorot "
        f"(solid) and He (dashed) initialisation (geometric mean and 95% CI over {len(seeds)} "
        f"initialisations; the step activation is left out: its hidden-layer gradients are "
        f"exactly 0; where two curves coincide, as relu's and leaky_relu's nearly do, the one "
        f"drawn later hides the other).",
        ncols=2,
    ) as (_, (ax1, ax2)):
        names = sorted({n for n, _ in grads}, key=PROBED.index)
        for n in names:
            _, d = values(n, z)
            ax1.plot(z, np.maximum(np.abs(d), 1e-12), lw=2, color=COLORS[n], label=n)
        for n in ("sigmoid", "tanh"):
            lo, hi = saturated_region(n)
            ax1.axvspan(-10, lo, color=COLORS[n], alpha=0.12, lw=0,
                        label=f"{n} saturated ({describe_region(lo, hi)})")
            ax1.axvspan(hi, 10, color=COLORS[n], alpha=0.12, lw=0)
        ax1.set_yscale("log")
        ax1.set_ylim(1e-6, 5)
        ax1.set_xlim(-10, 10)
        ax1.set_xlabel("z")
        ax1.set_ylabel("|f'(z)| (log scale)")
        ax1.legend(loc="lower center", ncol=2)
        layers = np.arange(1, DEEP[0] + 1)
        for (n, init), g in grads.items():
            logs = np.log(np.maximum(g, 1e-30))
            mean, lo, hi, _ = stats.curve_ci(logs)
            ls = "-" if init == "glorot" else "--"
            ax2.plot(layers, np.exp(mean), marker="o", ms=3, lw=1.8, ls=ls, color=COLORS[n],
                     label=f"{n} ({init})")
            ax2.fill_between(layers, np.exp(lo), np.exp(hi), color=COLORS[n], alpha=0.05, lw=0)
        ax2.set_yscale("log")
        ax2.set_xlabel("layer (1 = next to the input)")
        ax2.set_ylabel("||dL/dW|| at initialisation (log scale)")
        ax2.set_xticks(layers)
        ax2.legend(ncol=2, fontsize=7)


def _label(c):
    return f"{c['activation']} ({c['init']})"


def _training_figure(results, report, chosen):
    """Validation loss at the selected lr: shared init (left), matched init (right)."""
    curves = {}
    with report.figure(
        "training",
        "Validation loss of the network on spirals with each hidden activation, each at its "
        "tuned learning rate (geometric mean and 95% CI over the report seeds, computed on "
        "the logarithms). Left: the shared Glorot initialisation; right: the matched one "
        "(Glorot for the saturating activations, He for the ReLU family and softplus).",
        ncols=2, sharey=True,
    ) as (_, (ax1, ax2)):
        for ax, which in ((ax1, "shared"), (ax2, "matched")):
            for a, s in chosen[which].items():
                c = results.curves(s, "val_loss")
                log_band(ax, results.epochs(s), c, f"{a} (lr {s.factors['lr']:g})", COLORS[a])
                curves[(which, a)] = c
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_title(f"{which} initialisation")
            ax.legend(ncol=2, fontsize=7.5)
        ax1.set_ylabel("validation loss (binary cross-entropy, log scale)")


def log_band(ax, x, curves, label, color):
    """Geometric mean of positive ``(n_seeds, n_points)`` curves and its 95% CI as a band."""
    logs = np.log(np.where(np.asarray(curves) > 0, curves, np.nan))
    mean, lo, hi, _ = stats.curve_ci(logs)
    ax.plot(x, np.exp(mean), color=color, lw=1.6, label=label)
    ax.fill_between(x, np.exp(lo), np.exp(hi), color=color, alpha=0.18, lw=0)


def _histogram_figure(report, zs, names):
    with report.figure(
        "preactivations",
        f"Where the hidden units of the trained networks operate: hidden pre-activations z on "
        f"the training data, at initialisation and after training (each activation at its "
        f"best learning rate, every seed pooled); shaded where f'(z) < {SATURATED:g} max f'.",
        ncols=len(names), figsize=(4.4 * len(names), 3.8),
    ) as (_, axes):
        for ax, n in zip(np.atleast_1d(axes), names, strict=True):
            z0, z1 = zs[n]
            lo, up = saturated_region(n)
            hi = float(np.percentile(np.abs(np.r_[z0, z1]), 99.5)) * 1.1 + 0.5
            edges = [abs(v) for v in (lo, up) if np.isfinite(v) and v != 0]
            hi = max([hi] + [1.3 * e for e in edges])  # show where the zone starts
            bins = np.linspace(-hi, hi, 61)
            ax.hist(z0, bins=bins, density=True, alpha=0.55, label="initialisation")
            ax.hist(z1, bins=bins, density=True, alpha=0.55, label="after training")
            if lo == float("inf"):
                ax.axvspan(-hi, hi, color="0.5", alpha=0.15, lw=0)
            else:
                if lo > -hi:
                    ax.axvspan(-hi, lo, color="0.5", alpha=0.15, lw=0)
                if up < hi:
                    ax.axvspan(up, hi, color="0.5", alpha=0.15, lw=0)
            zone = "inactive" if n == "relu" else "saturated"
            ax.set_title(f"{n}: {saturated_share(n, z1):.1%} {zone} after training")
            ax.set_xlabel("pre-activation z")
            ax.set_ylabel("density")
            ax.legend()


# ----------------------------------------------------------------------------------------------
# the analysis
# ----------------------------------------------------------------------------------------------


def _sensitivity_figure(results, report, conds):
    """Mean best validation loss over the tuning seeds against the learning rate."""
    tun = results.tuning
    if tun is None:
        return
    inits = sorted({c[1] for c in conds})
    with report.figure(
        "sensitivity",
        "Learning-rate sensitivity on the tuning seeds: mean best validation loss against "
        "the learning rate (grids extended where the best value sat at an edge; a point "
        "missing at a rate diverged on some tuning seed); circles: the selected rate.",
        ncols=len(inits), sharey=True, figsize=(6.0 * len(inits), 4.2),
    ) as (_, axes):
        for ax, init in zip(np.atleast_1d(axes), inits, strict=True):
            for (a, i), sel in conds.items():
                if i != init:
                    continue
                ss = sorted(tun.select(activation=a, init=i), key=lambda s: s.factors["lr"])
                x = [s.factors["lr"] for s in ss]
                y = [np.mean(tun.values(s, "best_val_loss")) for s in ss]
                ax.plot(x, y, marker=".", color=COLORS[a], label=a)
                ax.plot([sel.factors["lr"]], [np.mean(tun.values(sel, "best_val_loss"))],
                        "o", mfc="none", ms=9, color=COLORS[a])
            ax.set_yscale("log")
            log_axis(ax, "x")
            ax.set_xlabel("learning rate (log scale)")
            ax.set_title(f"{init} initialisation")
            ax.legend(ncol=2, fontsize=7.5)
        np.atleast_1d(axes)[0].set_ylabel("best validation loss (log scale)")


def _verdict(r, a="a", b="b"):
    return r["verdict"].replace("a better", f"{a} better").replace("b better", f"{b} better")


def analyse(results, report):
    from .. import datasets
    from ..analysis import curve_flattened

    prm = _params(results.study.profile == "quick")
    conds = {(s.factors["activation"], s.factors["init"]): s for s in results.settings}
    acts = [a for a in prm["acts"] if any(k[0] == a for k in conds)]
    chosen = {"shared": {a: conds[(a, SHARED)] for a in acts if (a, SHARED) in conds},
              "matched": {a: conds[(a, MATCHED[a])] for a in acts if (a, MATCHED[a]) in conds}}
    acc = {k: results.values(s, "es_test_accuracy") for k, s in conds.items()}
    mean_acc = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                for k, v in acc.items()}

    report.section("The functions and their derivatives")
    _functions_figure(report)
    rows = []
    for n in PLOTTED:
        _, d0 = values(n, np.array([-5.0, -2.0, 2.0, 5.0, 10.0]))
        rows.append([n, fmt(float(np.max(values(n, np.linspace(-50, 50, 20001))[1]))),
                     *[fmt(v) for v in d0], describe_region(*saturated_region(n))])
    report.table(["activation", "max f'", "f'(-5)", "f'(-2)", "f'(2)", "f'(5)", "f'(10)",
                  f"saturated: f' < {SATURATED:g} max f'"], rows,
                 caption="Derivatives from the kernels. ReLU's f' is 0 for z < 0 (an inactive "
                         "unit) rather than small, and 1 for every z > 0.")

    report.section("Saturation and the gradient that reaches each layer")
    first = results.settings[0]
    ds = datasets.load(first.problem, first.data_seed_for(results.seeds[0]), **first.problem_args)
    grads = gradient_table(ds.X_train, ds.y_train, results.seeds)
    _saturation_figure(report, grads, results.seeds)
    g1 = {k: geo_mean(g[:, 0]) for k, g in grads.items()}
    gl = {k: geo_mean(g[:, -1]) for k, g in grads.items()}
    ratio = {k: geo_mean(g[:, 0] / np.maximum(g[:, -1], 1e-30)) for k, g in grads.items()}
    report.table(["activation", "init", "||dW|| layer 1", f"||dW|| layer {DEEP[0]}",
                  "layer 1 / last"],
                 [[n, i, fmt(g1[(n, i)], 3), fmt(gl[(n, i)], 3), fmt(ratio[(n, i)], 3)]
                  for (n, i) in grads],
                 caption=f"Weight-gradient norms of the first and the last layer of the "
                         f"{DEEP[0]}-layer network at initialisation (geometric means over "
                         f"{len(results.seeds)} initialisations) and their ratio.")

    report.section("Training with each activation")
    _training_figure(results, report, chosen)
    _sensitivity_figure(results, report, conds)
    rows, still, fell = [], [], []
    for (a, i), s in conds.items():
        flat, rise = curve_flattened(results.curves(s, "val_accuracy"))
        if not flat:
            still.append(f"{a} ({i})")
        elif np.isfinite(rise) and rise <= -0.005:
            final = float(np.nanmean(results.values(s, "test_accuracy")))
            fell.append(f"{a} ({i}, lr {fmt(s.factors['lr'], 3)}: {fmt(rise, 2)}; test "
                        f"accuracy final {fmt(final, 4)}, early-stopped "
                        f"{fmt(float(np.nanmean(acc[(a, i)])), 4)})")
        rows.append([a, i, "yes" if MATCHED[a] == i else "no", fmt(s.factors["lr"], 3),
                     fmt_ci(results.values(s, "best_val_loss"), bounds=POSITIVE),
                     fmt_ci(acc[(a, i)], bounds=FRACTION),
                     fmt_ci(results.values(s, "test_accuracy"), bounds=FRACTION),
                     fmt(float(np.nanmedian(results.values(s, "best_val_epoch"))), 3),
                     fmt(rise, 2)])
    report.table(["activation", "init", "matched", "lr (tuned)", "best val loss",
                  "test acc (early-stopped)", "test acc (final)", "median best epoch",
                  "val acc rise, last quarter"], rows,
                 caption=f"Each activation and initialisation at its tuned learning rate, "
                         f"mean [95% CI] over {len(results.seeds)} report seeds (10,000 test "
                         f"points per seed). The last column: how much the mean validation "
                         f"accuracy still rose over the last quarter of the epochs.")

    # paired comparisons: every activation (matched init) against the best one on validation
    matched = chosen["matched"]
    bvl = {a: float(np.nanmean(results.values(s, "best_val_loss"))) for a, s in matched.items()}
    ref = min((a for a in bvl if np.isfinite(bvl[a])), key=bvl.get, default=None)
    comps_act = stats.compare(
        [(f"{a} - {ref}", results.values(s, "es_test_accuracy"),
          results.values(matched[ref], "es_test_accuracy"))
         for a, s in matched.items() if ref is not None and a != ref],
        margin=MARGIN, lower_is_better=False)
    comps_init = stats.compare(
        [(f"{a}: he - glorot", acc[(a, "he")], acc[(a, "glorot")])
         for a in acts if (a, "he") in acc and (a, "glorot") in acc],
        margin=MARGIN, lower_is_better=False)

    def comp_rows(rows_, a_name, b_name):
        return [[r["name"], r["n"], f"{fmt(r['diff'])} [{fmt(r['lo'])}, {fmt(r['hi'])}]",
                 f"{r['b_better']}/{r['a_better']}", fmt(r["p_holm"], 3),
                 fmt(r["tost_p_holm"], 3), _verdict(r, a_name, b_name)] for r in rows_]

    heads = ["comparison (a - b)", "pairs", "mean diff [95% CI]", "a / b better (seeds)",
             "Holm p", f"TOST Holm p (+-{MARGIN:g})", "verdict"]
    if comps_act:
        report.table(heads, comp_rows(comps_act, "a", ref),
                     caption=f"Each activation at its matched initialisation against {ref} "
                             f"(the lowest mean best validation loss): early-stopped test "
                             f"accuracy, paired over the report seeds (the same data per "
                             f"seed), Holm over this table; equivalence only by a TOST with "
                             f"margin {MARGIN:g} (50 of 10,000 test points).")
    if comps_init:
        report.table(heads, comp_rows(comps_init, "he", "glorot"),
                     caption="He against Glorot initialisation for each activation run with "
                             "both: early-stopped test accuracy, paired, Holm over this table, "
                             f"TOST margin {MARGIN:g}.")

    # pre-activations of the trained networks (trained again: the store keeps no parameters)
    from ...models import MLP

    nets = Networks(results)
    hist_names = [n for n in ("sigmoid", "tanh", "relu") if n in matched]
    zs, shares = {}, {}
    for n in hist_names:
        models, dss = nets(matched[n])
        # the same network at initialisation: its constructor arguments include the seed
        z0 = np.concatenate([pre_activations(MLP(**m.config()), d.X_train)
                             for m, d in zip(models, dss, strict=True)])
        z1 = np.concatenate([pre_activations(m, d.X_train)
                             for m, d in zip(models, dss, strict=True)])
        zs[n] = (z0, z1)
        shares[n] = (saturated_share(n, z0), saturated_share(n, z1))
    if hist_names:
        _histogram_figure(report, zs, hist_names)
        report.text(f"The networks of the last figure were trained again inside the analysis "
                    f"(same data, seeds and visiting order as the stored runs); their final "
                    f"validation losses differ from the stored ones by at most "
                    f"{fmt(nets.max_difference(), 3)}.")

    # -- conclusions ------------------------------------------------------------------------
    es, et = saturated_region("sigmoid")[1], saturated_region("tanh")[1]
    _, dd = values("sigmoid", np.array([0.0, 5.0, 10.0]))
    report.conclusion(
        f"**Derivatives.** The sigmoid's derivative is at most {fmt(dd[0], 3)} (at z = 0) and "
        f"falls below {SATURATED:g} of that for |z| > {es:.3g} ({fmt(dd[1], 3)} at z = 5, "
        f"{fmt(dd[2], 3)} at z = 10); tanh's is at most 1 and saturates for |z| > {et:.3g}. "
        f"ReLU and leaky ReLU keep a derivative of 1 for every z > 0; step and sign have none.")
    glo = {n: ratio[(n, "glorot")] for n, i in grads if i == "glorot"}
    order = sorted(glo, key=glo.get)
    text = (f"**Gradient through depth.** At initialisation with Glorot weights, the first "
            f"layer's weight-gradient norm over the last layer's, in the {DEEP[0]}-layer "
            f"network (geometric mean over {len(results.seeds)} initialisations): "
            + ", ".join(f"{n} {fmt(glo[n], 3)} ({fmt(g1[(n, 'glorot')], 3)} / "
                        f"{fmt(gl[(n, 'glorot')], 3)})" for n in order)
            + f"; the smallest with {order[0]}, the largest with {order[-1]}.")
    if order[0] == "sigmoid":
        text += (" With the sigmoid, whose derivative is at most 1/4, the gradient shrinks "
                 "layer by layer, as the notes' chain of derivatives implies.")
    he = [n for n in ("relu", "leaky_relu", "sigmoid") if (n, "he") in g1]
    if he:
        text += " With He instead of Glorot weights, the first layer's gradient norm is " + \
            ", ".join(f"{n} {fmt(g1[(n, 'he')], 3)} (ratio to the last layer "
                      f"{fmt(ratio[(n, 'he')], 3)}, Glorot {fmt(glo[n], 3)})" for n in he) + "."
        if ("relu", "he") in g1 and g1[("relu", "glorot")] > 0:
            f = g1[("relu", "he")] / g1[("relu", "glorot")]
            if f > 1:
                text += (f" The ratio alone hides the scale: with Glorot weights the ReLU "
                         f"network's first-layer gradient norm is {fmt(f, 3)} times smaller "
                         f"than with He weights (Glorot's variance 2 / (n_in + n_out) halves "
                         f"the signal's second moment at every ReLU layer of equal widths, "
                         f"He's 2 / n_in keeps it), whatever the ratio between the layers.")
            else:
                text += (f" With Glorot weights the ReLU network's first-layer gradient norm "
                         f"is {fmt(1 / f, 3)} times that with He weights.")
    report.conclusion(text)

    rank = sorted((a for a in matched if np.isfinite(mean_acc[(a, MATCHED[a])])),
                  key=lambda a: -mean_acc[(a, MATCHED[a])])
    if rank:
        text = ("**Training.** Early-stopped test accuracy at the matched initialisation and "
                "tuned learning rate, best first: " + ", ".join(
                    f"{a} {fmt_ci(acc[(a, MATCHED[a])], bounds=FRACTION)}" for a in rank) + ".")
        sig = [r for r in comps_act if r["verdict"] != "inconclusive"]
        worse = [r for r in comps_act if r["verdict"] == "b better"]
        eq = [r for r in comps_act if r["verdict"].startswith("equivalent")]
        text += (f" Against {ref} (chosen on validation loss), {len(worse)} of "
                 f"{len(comps_act)} activations are worse (Holm-corrected), {len(eq)} are "
                 f"equivalent within +-{MARGIN:g}, "
                 f"{len(comps_act) - len(sig)} inconclusive, "
                 f"{len([r for r in comps_act if r['verdict'] == 'a better'])} better.")
        n_test = ds.sizes()[2]
        if worse:
            text += " Worse: " + "; ".join(
                f"{r['name'].split(' - ')[0]} by {fmt(-r['diff'], 3)} "
                f"[{fmt(-r['hi'], 3)}, {fmt(-r['lo'], 3)}] (about {-r['diff'] * n_test:.0f} "
                f"of {n_test} test points)" for r in worse) + "."
            small = [r for r in worse if np.isfinite(r["tost_p_holm"])
                     and r["tost_p_holm"] < 0.05]
            if small:
                text += (" " + ", ".join(r["name"].split(" - ")[0] for r in small)
                         + (" is" if len(small) == 1 else " are")
                         + f" worse by less than the +-{MARGIN:g} margin as well (TOST Holm p "
                         + ", ".join(fmt(r["tost_p_holm"], 3) for r in small)
                         + "): a real difference, but a small one.")
        close = [a for a in rank if a != ref and any(
            r["name"] == f"{a} - {ref}" and r["verdict"] != "b better" for r in comps_act)]
        if close:
            vals = [mean_acc[(a, MATCHED[a])] for a in [ref, *close]]
            span = max(vals) - min(vals)
            text += (f" Among {ref} and the activations not shown worse than it ("
                     f"{', '.join(close)}), the mean early-stopped accuracies span "
                     f"{fmt(span, 3)}, about {span * n_test:.0f} of {n_test} test points: on "
                     f"this task they are not told apart.")
        labels = {s.label: (a, MATCHED[a]) for a, s in matched.items()}
        div = {}
        for lab, seed, ep in results.diverged():
            if lab in labels:
                div.setdefault(labels[lab], []).append((seed, ep))
        for (a, i), runs in div.items():
            s = matched[a]
            text += (f" {a} ({i}, lr {fmt(s.factors['lr'], 3)}) diverged on {len(runs)} of "
                     f"{len(results.seeds)} report seeds (seeds "
                     f"{', '.join(str(sd) for sd, _ in runs)}; epoch "
                     f"{', '.join(sorted({str(e) for _, e in runs}))}) though not on the "
                     f"tuning seeds: "
                     f"the rate sits at the edge of stability; its accuracy and comparison are "
                     f"over the other {len(results.seeds) - len(runs)} seeds, which flatters "
                     f"it.")
        report.conclusion(text)
    if comps_init:
        text = ("**Initialisation.** He minus Glorot, early-stopped test accuracy (mean [95% "
                "CI], Holm-corrected): " + "; ".join(
                    f"{r['name'].split(':')[0]} {fmt(r['diff'], 3)} [{fmt(r['lo'], 3)}, "
                    f"{fmt(r['hi'], 3)}] ({_verdict(r, 'he', 'glorot')})" for r in comps_init)
                + ".")
        tiny = [r for r in comps_init if r["verdict"] in ("a better", "b better")
                and np.isfinite(r["tost_p_holm"]) and r["tost_p_holm"] < 0.05]
        if tiny:
            text += (" " + ", ".join(r["name"].split(":")[0] for r in tiny)
                     + f": a difference that is real and also inside the +-{MARGIN:g} margin "
                       "(TOST Holm p " + ", ".join(fmt(r["tost_p_holm"], 3) for r in tiny)
                     + "), i.e. small.")
        sig = next((r for r in comps_init if r["name"].startswith("sigmoid:")), None)
        if sig is not None and sig["verdict"] == "a better":
            text += (" For the sigmoid, the 'matched' Glorot weights lose to He's larger ones. "
                     "Glorot and Bengio (2010) derived their variance for symmetric units of "
                     "slope 1 at 0 (tanh, softsign); they found deep sigmoid networks hard to "
                     "train (with the older initialisation: the mean output 0.5 drove the top "
                     "hidden layer into saturation). With slope 1/4 at 0, the back-propagated "
                     "gradient shrinks by about 4 per layer under Glorot's variance unless the "
                     "weights are larger (a common recommendation, e.g. in the Theano "
                     "deep-learning tutorials, is 4 times Glorot's bound). So 'matched' for "
                     "the sigmoid here means the textbook default, not an initialisation "
                     "derived for it.")
        report.conclusion(text)
    edges = results.plan.edges_remaining if results.plan is not None else []
    if edges:
        report.conclusion(
            "**Grid edges.** The selected learning rate remains at the edge of its extended "
            "grid for " + ", ".join(
                f"{e['condition']['activation']} ({e['condition']['init']}) at "
                f"{fmt(e['value'], 3)}, {e['side']} side" for e in edges)
            + ": these conditions may do better beyond it.")
    if still:
        report.conclusion(f"**Convergence.** Mean validation accuracy still rose by 0.005 or "
                          f"more over the last quarter of the epochs for {', '.join(still)}: "
                          f"their accuracies may understate what longer training reaches.")
    else:
        report.conclusion("**Convergence.** Every condition's mean validation accuracy rose by "
                          "less than 0.005 over the last quarter of the epochs.")
    if fell:
        report.conclusion("**Unstable at the tuned rate.** Mean validation accuracy fell by 0.005 "
                          "or more over the last quarter for " + "; ".join(fell)
                          + ": some seeds lose accuracy late, so the final network is worse "
                            "than the early-stopped one the comparisons use.")
    if shares:
        text = ("**Saturation after training.** Share of hidden pre-activations in the "
                f"saturated zone (f' < {SATURATED:g} max f') at initialisation -> after "
                "training (matched initialisation): " + "; ".join(
                    f"{n} {a:.1%} -> {b:.1%}" for n, (a, b) in shares.items())
                + " (for ReLU the zone is the inactive half-line z < 0).")
        smooth = {n: v for n, v in shares.items() if n in ("sigmoid", "tanh")}
        if smooth:
            worst = max(smooth, key=lambda n: smooth[n][1])
            sw = matched[worst]
            text += (f" After training, {smooth[worst][1]:.0%} of the {worst} units' inputs "
                     f"sit in the saturated tails, where they pass back little gradient (these "
                     f"are the {MATCHED[worst]}-initialised networks at lr "
                     f"{fmt(sw.factors['lr'], 3)}, early-stopped test accuracy "
                     f"{fmt(mean_acc[(worst, MATCHED[worst])], 3)}).")
        report.conclusion(text)

    # the headline claim
    nonlin = [a for a in rank if a not in ("identity", "step")]
    if len(nonlin) >= 2:
        best_a, worst_a = nonlin[0], nonlin[-1]
        d = stats.compare([("gap", acc[(best_a, MATCHED[best_a])],
                            acc[(worst_a, MATCHED[worst_a])])], lower_is_better=False)[0]
        left = [a for a in rank if a in ("identity", "step")]
        row = next((r for r in comps_act if r["name"] == f"{worst_a} - {best_a}"), None)
        claim = (f"On the two spirals ({first.problem_args.get('n')} points, "
                 f"{len(prm['hidden'])} hidden layers of {prm['hidden'][0]}, plain SGD, each "
                 f"activation at its tuned learning rate and matched initialisation), "
                 f"early-stopped test accuracy among the nonlinear activations with a "
                 f"gradient is highest with {best_a} "
                 f"({fmt(mean_acc[(best_a, MATCHED[best_a])], 3)}) and lowest with {worst_a} "
                 f"({fmt(mean_acc[(worst_a, MATCHED[worst_a])], 3)}): a gap of "
                 f"{fmt(d['diff'], 3)} [{fmt(d['lo'], 3)}, {fmt(d['hi'], 3)}] "
                 f"({d['n']} paired seeds, paired t p = {fmt(d['p'], 3)}"
                 + (f", Holm over the table's {len(comps_act)} comparisons "
                    f"{fmt(row['p_holm'], 3)}" if row is not None else "")
                 + f"), about {d['diff'] * ds.sizes()[2]:.0f} of each seed's "
                 f"{ds.sizes()[2]} test points.")
        if left:
            claim += (" Left out, as a linear model and a gradient-free unit: " + ", ".join(
                f"{a} {fmt(mean_acc[(a, MATCHED[a])], 3)}" for a in left) + ".")
        rest = [a for a in nonlin if a != worst_a]
        if len(rest) >= 2:
            span = (mean_acc[(rest[0], MATCHED[rest[0]])]
                    - mean_acc[(rest[-1], MATCHED[rest[-1]])])
            claim += (f" The others ({', '.join(rest)}) lie within {fmt(span, 2)} of each "
                      f"other (about {span * ds.sizes()[2]:.0f} test points).")
        other = "he" if MATCHED[worst_a] == "glorot" else "glorot"
        if (worst_a, other) in mean_acc and np.isfinite(mean_acc[(worst_a, other)]):
            claim += (f" With {other} initialisation {worst_a} reaches "
                      f"{fmt(mean_acc[(worst_a, other)], 3)}.")
        if comps_init:
            big = max(comps_init, key=lambda r: abs(r["diff"]) if np.isfinite(r["diff"]) else -1)
            claim += (f" The initialisation matters most for {big['name'].split(':')[0]}: He "
                      f"minus Glorot {fmt(big['diff'], 3)} [{fmt(big['lo'], 3)}, "
                      f"{fmt(big['hi'], 3)}] ({_verdict(big, 'he', 'glorot')}, Holm p = "
                      f"{fmt(big['p_holm'], 3)}).")
        report.claim(claim)
