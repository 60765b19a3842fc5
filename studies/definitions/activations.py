"""The activation functions of the notes: each one and its derivative, saturation, and training.

The notes list the threshold (step) neuron, the sigmoid and the other usual activations. This
study draws each activation and its derivative (from the library's own kernels,
:mod:`dlbasics.kernels.activations`), shows where the sigmoid and tanh *saturate* (their derivative
falls towards zero for large ``|z|``, so back-propagated gradients shrink), measures how the
gradient reaching each layer of a deep network at initialisation depends on the activation, and
trains the same 2-16-16-1 network on moons with each hidden activation by plain SGD.

The function plots and the gradients at initialisation are computed inside the analysis,
deterministically (initialisation seeds are the study seeds). The trained networks are the
study's settings; the pre-activation histograms after training come from those networks trained
again inside the analysis (the store keeps no parameters).
"""

from __future__ import annotations

import numpy as np

from .. import stats
from ..analysis import Networks, layer_outputs
from ..registry import register
from ..report import FRACTION, POSITIVE, fmt, fmt_ci
from ..spec import Setting, Study, grid

#: Every elementwise activation of the notes, in the order of the pictures.
PLOTTED = ("identity", "step", "sign", "sigmoid", "tanh", "relu", "leaky_relu", "softplus")
#: A unit is *saturated* where its derivative is below this fraction of the derivative's maximum.
SATURATED = 0.1
#: Depth and width of the network whose gradients at initialisation are measured.
DEEP = (10, 16)
#: The learning rate at which every activation is compared (besides each one's best).
COMMON_LR = 0.1


def _grid(quick):
    if quick:
        return ["sigmoid", "tanh", "relu"], [0.1, 1.0]
    return ["identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "softplus"], \
        [0.03, 0.1, 0.3, 1.0, 3.0]


@register("activations")
def make(profile):
    quick = profile == "quick"
    acts, lrs = _grid(quick)
    settings = [
        Setting(
            problem="moons", problem_args={"n": 200 if quick else 600},
            model={"hidden": [16, 16], "activation": f["activation"]},
            optimizer="sgd", hyper={"lr": f["lr"]}, batch_size=16,
            epochs=20 if quick else 100, metrics="running", factors=f,
        )
        for f in grid(activation=acts, lr=lrs)
    ]
    return Study(
        name="activations",
        title="Activation functions: derivatives, saturation and training speed",
        question="What does each activation of the notes and its derivative look like, where "
                 "do the sigmoid and tanh saturate, how much gradient reaches the early layers "
                 "of a deep network with each, and how fast does the same network learn a "
                 "nonlinear problem with each hidden activation under plain SGD?",
        settings=settings,
        seeds=range(2 if quick else 5),
        analysis=analyse,
        notes=f"**Computed in the analysis (not stored runs).** Activation values and "
              f"derivatives from `dlbasics.kernels.activations` (float32). Gradients at "
              f"initialisation: a {DEEP[0]}-layer network of width {DEEP[1]} (Glorot-uniform "
              f"weights, zero biases, sigmoid output, binary cross-entropy) on the moons "
              f"training split, one network per study seed (the seed sets the initialisation); "
              f"the norm of each layer's weight gradient. A unit counts as saturated where "
              f"f'(z) < {SATURATED:g} max f'.\n\n"
              f"**Networks (the stored runs).** 2-16-16-1 with the named hidden activation, "
              f"sigmoid output, binary cross-entropy, plain SGD (no momentum: the size of the "
              f"gradient is all there is), mini-batches of 16, each learning rate of the grid.",
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


def layer_gradients(activation, seed, X, y, depth=DEEP[0], width=DEEP[1]):
    """Norm of each layer's weight gradient of a fresh deep network (first layer first)."""
    from ...models import MLP

    m = MLP([X.shape[1], *[width] * (depth - 1), 1], activation=activation, output="sigmoid",
            loss="binary_cross_entropy", seed=int(seed))
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


def _saturation_figure(report, X, y, seeds):
    names = ("sigmoid", "tanh", "softplus", "relu", "leaky_relu", "identity")
    z = np.linspace(-10, 10, 4001)
    grads = {n: np.array([layer_gradients(n, s, X, y) for s in seeds]) for n in names}
    with report.figure(
        "saturation",
        f"Saturation. Left: |f'(z)| on a log scale; shaded where the sigmoid and tanh are "
        f"saturated, f'(z) < {SATURATED:g} max f'. Right: norm of each layer's "
        f"weight gradient in a {DEEP[0]}-layer, width-{DEEP[1]} network at initialisation "
        f"(geometric mean and 95% CI over {len(seeds)} initialisations; the step activation "
        f"is left out: its hidden-layer gradients are exactly 0).",
        ncols=2,
    ) as (_, (ax1, ax2)):
        for i, n in enumerate(names):
            _, d = values(n, z)
            ax1.plot(z, np.maximum(np.abs(d), 1e-12), lw=2, color=f"C{i}", label=n)
        for i, n in ((0, "sigmoid"), (1, "tanh")):
            lo, hi = saturated_region(n)
            ax1.axvspan(-10, lo, color=f"C{i}", alpha=0.12, lw=0,
                        label=f"{n} saturated ({describe_region(lo, hi)})")
            ax1.axvspan(hi, 10, color=f"C{i}", alpha=0.12, lw=0)
        ax1.set_yscale("log")
        ax1.set_ylim(1e-6, 5)
        ax1.set_xlim(-10, 10)
        ax1.set_xlabel("z")
        ax1.set_ylabel("|f'(z)| (log scale)")
        ax1.legend(loc="lower center", ncol=2)
        layers = np.arange(1, DEEP[0] + 1)
        for i, n in enumerate(names):
            logs = np.log(np.maximum(grads[n], 1e-30))
            mean, lo, hi, _ = stats.curve_ci(logs)
            ax2.plot(layers, np.exp(mean), marker="o", ms=3, lw=2, color=f"C{i}", label=n)
            ax2.fill_between(layers, np.exp(lo), np.exp(hi), color=f"C{i}", alpha=0.12, lw=0)
        ax2.set_yscale("log")
        ax2.set_xlabel("layer (1 = next to the input)")
        ax2.set_ylabel("||dL/dW|| at initialisation (log scale)")
        ax2.set_xticks(layers)
        ax2.legend(ncol=2)
    return grads


def _training_figure(results, report, acts, best):
    with report.figure(
        "training",
        f"Validation loss of the 2-16-16-1 network on moons with each hidden activation "
        f"(geometric mean and 95% CI over seeds, computed on the logarithms). Left: all at "
        f"learning rate {COMMON_LR:g}; right: each at its own best learning rate (lowest mean "
        f"final validation loss).",
        ncols=2, sharey=True,
    ) as (_, (ax1, ax2)):
        for i, a in enumerate(acts):
            common = results.select(activation=a, lr=COMMON_LR)
            if common:
                log_band(ax1, results.epochs(common[0]), results.curves(common[0], "val_loss"),
                         a, f"C{i}")
            s = best.get(a)
            if s is not None:
                log_band(ax2, results.epochs(s), results.curves(s, "val_loss"),
                         f"{a} (lr {s.factors['lr']:g})", f"C{i}")
        for ax, title in ((ax1, f"lr = {COMMON_LR:g}"), (ax2, "best lr of each")):
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.legend(ncol=2)
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


def analyse(results, report):
    from .. import datasets

    acts = results.factor_values("activation")
    best = {}
    for a in acts:
        b, _ = stats.best_of_grid(results, results.select(activation=a), key="final_val_loss")
        if b is not None:
            best[a] = b

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
    grads = _saturation_figure(report, ds.X_train, ds.y_train, results.seeds)
    ratio = {n: np.exp(np.mean(np.log(np.maximum(g[:, 0], 1e-30) / g[:, -1])))
             for n, g in grads.items()}
    report.table(["activation", "||dW|| layer 1 / ||dW|| last layer (geometric mean)"],
                 [[n, fmt(r)] for n, r in ratio.items()],
                 caption=f"How much of the gradient reaches the first layer of the "
                         f"{DEEP[0]}-layer network at initialisation.")

    report.section("Training with each activation")
    _training_figure(results, report, acts, best)
    rows = []
    for a in acts:
        common = results.select(activation=a, lr=COMMON_LR)
        c = common[0] if common else None
        s = best.get(a)
        rows.append([a,
                     fmt_ci(results.values(c, "final_val_loss"), bounds=POSITIVE) if c else "-",
                     fmt_ci(results.values(c, "test_accuracy"), bounds=FRACTION) if c else "-",
                     fmt(s.factors["lr"]) if s else "-",
                     fmt_ci(results.values(s, "final_val_loss"), bounds=POSITIVE) if s else "-",
                     fmt_ci(results.values(s, "test_accuracy"), bounds=FRACTION) if s else "-"])
    report.table(["activation", f"val loss (lr {COMMON_LR:g})", f"test acc (lr {COMMON_LR:g})",
                  "best lr (val)", "val loss (best lr)", "test acc (best lr)"], rows,
                 caption="Final validation loss and test accuracy, mean [95% CI] over seeds; "
                         "the best learning rate is chosen on validation loss.")

    # pre-activations of the trained networks (trained again: the store keeps no parameters)
    from ...models import MLP

    nets = Networks(results)
    hist_names = [n for n in ("sigmoid", "tanh", "relu") if n in best]
    zs, shares = {}, {}
    for n in hist_names:
        models, dss = nets(best[n])
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
    order = sorted(ratio, key=ratio.get)
    report.conclusion(
        f"**Gradient through depth.** At initialisation, the norm of the first layer's weight "
        f"gradient over the last layer's, in the {DEEP[0]}-layer network (geometric mean over "
        f"{len(results.seeds)} initialisations): " + ", ".join(
            f"{n} {fmt(ratio[n], 3)}" for n in order)
        + f"; the smallest with {order[0]}, the largest with {order[-1]}."
        + (" With the sigmoid, whose derivative is at most 1/4, the gradient shrinks layer by "
           "layer, as the notes' chain of derivatives implies."
           if order[0] == "sigmoid" else
           f" Not the sigmoid but {order[0]} passes the least gradient to the first layer here, "
           "against the usual expectation that the sigmoid is worst."))
    vl = {a: stats.mean_ci(results.values(s, "final_val_loss")).mean for a, s in best.items()}
    common = {a: stats.mean_ci(results.values(results.select(activation=a, lr=COMMON_LR)[0],
                                              "final_val_loss")).mean
              for a in acts if results.select(activation=a, lr=COMMON_LR)}
    if common:
        rank = sorted((a for a in common if np.isfinite(common[a])), key=common.get)
        text = (f"**Training.** At lr {COMMON_LR:g} the final validation loss ranks "
                + " < ".join(f"{a} ({fmt(common[a], 3)})" for a in rank) + ".")
        if vl:
            rb = sorted((a for a in vl if np.isfinite(vl[a])), key=vl.get)
            text += (" At each one's best learning rate: "
                     + " < ".join(f"{a} ({fmt(vl[a], 3)}, lr {best[a].factors['lr']:g})"
                                  for a in rb) + ".")
            top = max(results.factor_values("lr"))
            edge = [a for a in rb if best[a].factors["lr"] == top]
            if edge:
                its, pl, it = ("its", "", "it") if len(edge) == 1 else ("their", "es", "they")
                text += (f" For {', '.join(edge)} the best learning rate is the largest tried "
                         f"({top:g}): a larger one might do better still, so {its} best-lr "
                         f"loss{pl} may overstate what {it} can reach.")
        if "sigmoid" in common and rank and rank.index("sigmoid") >= len(rank) // 2:
            text += (" At the common learning rate the sigmoid network is among the slowest, "
                     "as its small derivative predicts.")
        elif "sigmoid" in common:
            text += (" At the common learning rate the sigmoid network is not among the "
                     "slowest, against the usual expectation.")
        if "sigmoid" in vl and "tanh" in vl and np.isfinite(vl["sigmoid"]) \
                and vl["sigmoid"] <= 2 * vl["tanh"]:
            text += (f" At its own, larger learning rate ({best['sigmoid'].factors['lr']:g}) "
                     f"it comes within a factor {fmt(vl['sigmoid'] / vl['tanh'], 2)} of tanh "
                     f"at its best: much of the sigmoid's handicap is the scale of its "
                     f"derivative (at most 1/4), which a larger learning rate makes up.")
        report.conclusion(text)
    head = []
    if "sigmoid" in ratio and "relu" in ratio:
        head.append(f"at initialisation the first layer of a {DEEP[0]}-layer sigmoid network "
                    f"gets {fmt(ratio['sigmoid'], 3)} of the last layer's gradient norm (ReLU: "
                    f"{fmt(ratio['relu'], 3)})")
    if "sigmoid" in common:
        part = f"at lr {COMMON_LR:g} the sigmoid network's validation loss is " \
               f"{fmt(common['sigmoid'], 3)}"
        others = [a for a in ("identity", "relu") if a in common]
        if others:
            part += " (" + ", ".join(f"{a} {fmt(common[a], 3)}" for a in others) + ")"
        if "sigmoid" in vl:
            part += (f", {fmt(vl['sigmoid'], 3)} at its best learning rate "
                     f"({best['sigmoid'].factors['lr']:g})")
        head.append(part)
    if head:
        report.conclusions.insert(0, "**In short.** " + "; ".join(head)[0].upper()
                                  + "; ".join(head)[1:] + ".")
    if shares:
        text = ("**Saturation after training.** Share of hidden pre-activations in the "
                f"saturated zone (f' < {SATURATED:g} max f') at initialisation -> after "
                "training: " + "; ".join(f"{n} {a:.1%} -> {b:.1%}" for n, (a, b) in
                                         shares.items())
                + " (for ReLU the zone is the inactive half-line z < 0).")
        smooth = {n: v for n, v in shares.items() if n in ("sigmoid", "tanh")}
        if smooth and max(b for _, b in smooth.values()) < 0.05:
            text += (" The sigmoid and tanh units of this shallow network hardly ever reach "
                     "their flat tails, even after training: what slows the sigmoid network is "
                     "its small derivative (at most 1/4) multiplied layer by layer, not units "
                     "stuck in saturation.")
        elif smooth:
            worst = max(smooth, key=lambda n: smooth[n][1])
            text += (f" Training pushed {smooth[worst][1]:.0%} of the {worst} units' inputs "
                     f"into the saturated tails, where they pass back little gradient.")
        report.conclusion(text)
