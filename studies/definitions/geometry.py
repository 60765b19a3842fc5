"""What each layer of a small network computes on 2-D problems: the notes' geometry pictures.

The notes draw a first-layer unit as a half-plane (one line ``w . x + b = 0``), a second-layer
unit as a combination of those half-planes into a convex region, and show that one hidden layer
or two are needed depending on the problem. This study trains networks with one and with two
hidden layers (tanh units, sigmoid output) on XOR, circles and spirals, and draws what every
unit of the trained networks computes.

The results store keeps histories, not parameters, so the networks drawn (and those whose
decision regions are measured) are trained again here, exactly as the runner trained them
(:func:`retrain`: same data, seeds, optimizer and visiting order); the report checks that the
retrained networks reproduce the stored validation losses.

Convexity of a region is measured on a grid: the region's grid points are counted against the
grid points inside their convex hull (:func:`convexity`). Every grid point inside the hull of
points of a convex set lies in the set, so a convex region scores exactly 1.

:func:`retrain` and :func:`layer_outputs` are shared with the other concept studies.
"""

from __future__ import annotations

import numpy as np

from .. import stats
from ..analysis import (
    Networks,
    best_seed,
    layer_outputs,
)
from ..registry import register
from ..report import FRACTION, fmt, fmt_ci
from ..spec import Setting, Study

PROBLEMS = ("xor", "circles", "spirals")
#: Convexity ratio from which a region counts as convex (grid points of the hull in the region).
CONVEX = 0.99
#: Grid points per axis of the decision-region pictures and convexity measurements.
GRID = 201


def _archs(quick):
    if quick:
        return [[4], [16], [4, 4]]
    return [[2], [4], [8], [16], [32], [2, 2], [4, 4], [8, 8]]


def arch_name(hidden):
    """``[4, 4] -> "4-4"``: the ``hidden`` factor of a setting."""
    return "-".join(str(h) for h in hidden)


def n_params(sizes):
    """Weights and biases of an MLP with these layer widths."""
    return int(sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=False)))


def _figures(quick):
    """Networks drawn: (problem, arch) of the first- and second-layer pictures, region columns."""
    if quick:
        return ("xor", "4"), ("circles", "4-4"), ["4", "4-4", "16"]
    return ("xor", "4"), ("circles", "4-4"), ["8", "4-4", "32", "8-8"]


@register("geometry")
def make(profile):
    quick = profile == "quick"
    n = 200 if quick else 600
    epochs = 60 if quick else 300
    settings = [
        Setting(
            problem=p, problem_args={"n": n},
            model={"hidden": h, "activation": "tanh"},
            optimizer="adam", hyper={"lr": 0.01}, batch_size=16, epochs=epochs,
            metrics="running",
            factors={"problem": p, "hidden": arch_name(h), "layers": len(h)},
        )
        for p in PROBLEMS for h in _archs(quick)
    ]
    return Study(
        name="geometry",
        title="What each layer computes: half-planes, convex regions, one vs two hidden layers",
        question="On 2-D problems, do trained first-layer units act as half-planes and "
                 "second-layer units as convex regions built from them, as the notes draw "
                 "them, and which of XOR, circles and spirals need two hidden layers rather "
                 "than one (test accuracy against the number of parameters)?",
        settings=settings,
        seeds=range(2 if quick else 5),
        analysis=analyse,
        notes="Hidden units are tanh, the output a sigmoid with binary cross-entropy; Adam "
              "(lr 0.01), mini-batches of 16. One-hidden-layer widths and two-hidden-layer "
              "widths are compared at their number of parameters. The store keeps no "
              "parameters: the networks drawn and measured below are trained again inside the "
              "analysis with the same data, seed, optimizer and visiting order as their stored "
              "runs (deterministic), and the report checks they match the stored runs.",
    )


# ----------------------------------------------------------------------------------------------
# helpers shared by the concept studies
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------------------


def plane_grid(ds, n=GRID, pad=0.3):
    """A square grid over the data (all splits) plus ``pad``: ``(xs, ys, points)``."""
    X = np.vstack([ds.X_train, ds.X_val, ds.X_test])
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    xs = np.linspace(lo[0], hi[0], n)
    ys = np.linspace(lo[1], hi[1], n)
    XX, YY = np.meshgrid(xs, ys)
    return xs, ys, np.c_[XX.ravel(), YY.ravel()]


def convexity(mask, points):
    """Grid points of a region over the grid points inside the region's convex hull.

    Parameters
    ----------
    mask : ndarray of bool, shape (n_points,)
        Which grid points are in the region.
    points : ndarray of shape (n_points, 2)

    Returns
    -------
    float in (0, 1]
        1 for a convex region (and for empty, single-point or collinear regions); lower the
        more the region departs from its convex hull (holes, dents, several pieces).
    """
    from scipy.spatial import ConvexHull, QhullError

    inside = points[mask]
    if inside.shape[0] < 3:
        return 1.0
    try:
        hull = ConvexHull(inside)
    except QhullError:
        return 1.0  # collinear: a segment is convex
    eq = hull.equations
    scale = float(np.abs(points).max()) + 1.0
    in_hull = np.all(points @ eq[:, :2].T + eq[:, 2] <= 1e-9 * scale, axis=1)
    return float(mask.sum() / max(int(in_hull.sum()), 1))


#: Colour bands of the region pictures (a banded map draws and compresses fast, and reads like
#: contour lines).
BANDS = 12


def _region_axes(ax, xs, ys, values, vmin, vmax):
    from ..report import pyplot

    cmap = pyplot().get_cmap("RdBu_r", BANDS)
    return ax.imshow(values.reshape(len(ys), len(xs)), origin="lower", cmap=cmap, vmin=vmin,
                     vmax=vmax, extent=(xs[0], xs[-1], ys[0], ys[-1]), aspect="auto",
                     interpolation="nearest")


def _line(ax, w, b, xs, ys, **kw):
    """Draw ``w . x + b = 0`` clipped to the box, with a tick towards the positive side."""
    x0, x1, y0, y1 = xs[0], xs[-1], ys[0], ys[-1]
    w = np.asarray(w, dtype=np.float64)
    if abs(w[1]) > abs(w[0]):
        px = np.array([x0, x1])
        py = -(w[0] * px + b) / w[1]
    else:
        py = np.array([y0, y1])
        px = -(w[1] * py + b) / w[0] if w[0] != 0 else np.array([x0, x0])
    (ln,) = ax.plot(px, py, **kw)
    # arrow from the middle of the visible segment along the normal (the positive side)
    t = np.linspace(0, 1, 201)
    cx, cy = px[0] + t * (px[1] - px[0]), py[0] + t * (py[1] - py[0])
    vis = (cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1)
    if vis.any():
        i = np.flatnonzero(vis)[len(np.flatnonzero(vis)) // 2]
        nrm = w / (np.linalg.norm(w) + 1e-12) * 0.12 * (x1 - x0)
        ax.annotate("", xy=(cx[i] + nrm[0], cy[i] + nrm[1]), xytext=(cx[i], cy[i]),
                    arrowprops={"arrowstyle": "->", "color": ln.get_color(), "lw": 1.5})
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    return ln


def _scatter(ax, ds, split="train", s=12, contrast=False):
    """Data points: blue circles class 0, red triangles class 1 (``contrast``: white circles
    and black triangles, to stand out on a red/blue region picture)."""
    X = getattr(ds, f"X_{split}")
    y = getattr(ds, f"y_{split}")
    c0, c1, e0, e1 = ("white", "black", "black", "white") if contrast else \
        ("#4393c3", "#d6604d", "k", "k")
    ax.scatter(X[y == 0, 0], X[y == 0, 1], s=s, c=c0, marker="o", edgecolors=e0,
               linewidths=0.6, label="class 0")
    ax.scatter(X[y == 1, 0], X[y == 1, 1], s=s, c=c1, marker="^", edgecolors=e1,
               linewidths=0.6, label="class 1")


def _labels(ax):
    ax.set_xlabel("$x_1$ (standardised)")
    ax.set_ylabel("$x_2$ (standardised)")


def _accuracy(model, ds):
    p = model.forward(ds.X_test)[:, 0]
    return float(np.mean((p > 0.5) == (ds.y_test > 0.5)))


# ----------------------------------------------------------------------------------------------
# the analysis
# ----------------------------------------------------------------------------------------------


def _setting(results, problem, arch):
    ss = results.select(problem=problem, hidden=arch)
    return ss[0] if ss else None


def _first_layer_figure(results, report, problem, arch, nets):
    s = _setting(results, problem, arch)
    seed, model, ds = nets.best(s)
    xs, ys, pts = plane_grid(ds)
    outs = layer_outputs(model, pts)
    h1, out = outs[0], outs[-1][:, 0]
    W, b = model.weights[0], model.biases[0]
    k = W.shape[1]
    ncols = 3
    nrows = int(np.ceil((k + 2) / ncols))
    colors = [f"C{j}" for j in range(k)]
    with report.figure(
        "first_layer",
        f"First layer: each unit of a trained 2-{arch}-1 network on {problem} (seed {seed}) is "
        f"a half-plane. Panels 1-{k}: the unit's output tanh(w.x + b) (red +1, blue -1) and its "
        "line w.x + b = 0, the arrow pointing to the positive side; then all lines with the "
        "training data; last, the network output (probability of class 1) they combine into.",
        nrows=nrows, ncols=ncols, figsize=(4.6 * ncols, 4.0 * nrows),
    ) as (fig, axes):
        axes = np.atleast_1d(axes).ravel()
        for j in range(k):
            ax = axes[j]
            im = _region_axes(ax, xs, ys, h1[:, j], -1, 1)
            _line(ax, W[:, j], b[j], xs, ys, color="k", lw=2)
            ax.set_title(f"unit {j + 1}: w = ({W[0, j]:.2f}, {W[1, j]:.2f}), b = {b[j]:.2f}",
                         fontsize=10)
            _labels(ax)
        ax = axes[k]
        _scatter(ax, ds)
        for j in range(k):
            _line(ax, W[:, j], b[j], xs, ys, color=colors[j], lw=2, label=f"unit {j + 1}")
        ax.set_title("all first-layer lines and the training data")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8, frameon=True)
        _labels(ax)
        ax = axes[k + 1]
        im = _region_axes(ax, xs, ys, out, 0, 1)
        ax.contour(xs, ys, out.reshape(len(ys), len(xs)), levels=[0.5], colors="k",
                   linewidths=2)
        for j in range(k):
            _line(ax, W[:, j], b[j], xs, ys, color=colors[j], lw=1, ls="--")
        ax.set_title(f"network output (test accuracy {_accuracy(model, ds):.3f})")
        fig.colorbar(im, ax=ax, label="P(class 1)")
        _labels(ax)
        for ax in axes[k + 2:]:
            ax.set_visible(False)
    return seed


def _second_layer_figure(results, report, problem, arch, nets):
    s = _setting(results, problem, arch)
    models, dss = nets(s)
    xs, ys, pts = plane_grid(dss[0])  # every seed's data covers the same square
    # convexity of every second-layer unit's region {unit > 0}, over every seed; a unit whose
    # output has one sign over the whole plane draws no boundary and is counted apart
    ratios, flat = [], 0
    for m in models:
        h2 = layer_outputs(m, pts)[1]
        for j in range(h2.shape[1]):
            pos = h2[:, j] > 0
            if pos.all() or not pos.any():
                flat += 1
            else:
                ratios.append(convexity(pos, pts))
    seed, model, ds = nets.best(s)
    outs = layer_outputs(model, pts)
    h2, out = outs[1], outs[-1][:, 0]
    W1, b1 = model.weights[0], model.biases[0]
    k = h2.shape[1]
    ncols = 3
    nrows = int(np.ceil((k + 2) / ncols))
    with report.figure(
        "second_layer",
        f"Second layer: each unit of the second hidden layer of a trained 2-{arch}-1 network "
        f"on {problem} (seed {seed}) combines the first layer's half-planes (dashed lines) "
        "into a region. First panel: the first-layer lines and the data; then each "
        "second-layer unit's output (red > 0, blue < 0, black line: its region's edge) with "
        "the convexity of its region (1 = convex); last, the network output.",
        nrows=nrows, ncols=ncols, figsize=(4.6 * ncols, 4.0 * nrows),
    ) as (fig, axes):
        axes = np.atleast_1d(axes).ravel()
        ax = axes[0]
        _scatter(ax, ds)
        for j in range(W1.shape[1]):
            _line(ax, W1[:, j], b1[j], xs, ys, color=f"C{j}", lw=2, label=f"unit {j + 1}")
        ax.set_title("first-layer lines and the training data")
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8, frameon=True)
        _labels(ax)
        for j in range(k):
            ax = axes[j + 1]
            im = _region_axes(ax, xs, ys, h2[:, j], -1, 1)
            ax.contour(xs, ys, h2[:, j].reshape(len(ys), len(xs)), levels=[0.0], colors="k",
                       linewidths=2)
            for i in range(W1.shape[1]):
                _line(ax, W1[:, i], b1[i], xs, ys, color="0.25", lw=0.9, ls="--")
            pos = h2[:, j] > 0
            what = (f"convexity {convexity(pos, pts):.3f}" if pos.any() and not pos.all()
                    else "one sign everywhere")
            ax.set_title(f"second-layer unit {j + 1}: {what}")
            _labels(ax)
        ax = axes[k + 1]
        im = _region_axes(ax, xs, ys, out, 0, 1)
        ax.contour(xs, ys, out.reshape(len(ys), len(xs)), levels=[0.5], colors="k",
                   linewidths=2)
        ax.set_title(f"network output (test accuracy {_accuracy(model, ds):.3f})")
        fig.colorbar(im, ax=ax, label="P(class 1)")
        _labels(ax)
        for ax in axes[k + 2:]:
            ax.set_visible(False)
    return seed, np.array(ratios), flat


def _regions(results, report, archs, nets):
    """Decision regions (figure) and their convexity over every seed (returned)."""
    conv = {}
    drawn = {}
    for p in PROBLEMS:
        for a in archs:
            s = _setting(results, p, a)
            models, dss = nets(s)
            xs, ys, pts = plane_grid(dss[0])
            rows = []
            for m in models:
                out = layer_outputs(m, pts)[-1][:, 0]
                rows.append((convexity(out > 0.5, pts), convexity(out <= 0.5, pts)))
            conv[(p, a)] = np.array(rows)
            seed = best_seed(results, s)
            m, ds = models[results.seeds.index(seed)], dss[results.seeds.index(seed)]
            drawn[(p, a)] = (ds, xs, ys, layer_outputs(m, pts)[-1][:, 0], seed, _accuracy(m, ds),
                             n_params(m.sizes))
    nr, nc = len(PROBLEMS), len(archs)
    with report.figure(
        "regions",
        "Decision regions of trained networks with one hidden layer (e.g. '8': 8 tanh units) "
        "and two ('4-4'), columns ordered by number of parameters; colour: P(class 1), black "
        "line: the decision boundary; test data as white circles (class 0) and black "
        "triangles (class 1). Each panel is the seed with the best "
        "validation accuracy; 'convex': convexity of the class-1 region / class-0 region.",
        nrows=nr, ncols=nc, figsize=(4.0 * nc, 3.7 * nr),
    ) as (fig, axes):
        axes = np.asarray(axes).reshape(nr, nc)
        for i, p in enumerate(PROBLEMS):
            for j, a in enumerate(archs):
                ds, xs, ys, out, seed, acc, npar = drawn[(p, a)]
                ax = axes[i, j]
                _region_axes(ax, xs, ys, out, 0, 1)
                ax.contour(xs, ys, out.reshape(len(ys), len(xs)), levels=[0.5], colors="k",
                           linewidths=1.8)
                _scatter(ax, ds, "test", s=16, contrast=True)
                m = results.seeds.index(seed)
                cp, cn = conv[(p, a)][m]
                layers = "one hidden layer" if "-" not in a else "two hidden layers"
                ax.set_title(f"{p}, {layers} [{a}], {npar} params\ntest acc {acc:.3f}, "
                             f"convex {cp:.2f} / {cn:.2f}", fontsize=9.5)
                ax.set_xticks([])
                ax.set_yticks([])
    return conv


def _accuracy_figure(results, report):
    with report.figure(
        "accuracy_params",
        "Test accuracy against the number of parameters, one hidden layer (widths 2..32) and "
        "two hidden layers (equal widths); mean and 95% CI over seeds.",
        ncols=len(PROBLEMS), figsize=(4.6 * len(PROBLEMS), 4.0),
    ) as (_, axes):
        for ax, p in zip(np.atleast_1d(axes), PROBLEMS, strict=True):
            for layers, marker in ((1, "o"), (2, "s")):
                ss = results.select(problem=p, layers=layers)
                if not ss:
                    continue
                x, m, err = [], [], []
                for s in ss:
                    ci = stats.mean_ci(results.values(s, "test_accuracy"), bounds=FRACTION)
                    x.append(n_params([2, *s.model["hidden"], 1]))
                    m.append(ci.mean)
                    err.append([ci.mean - ci.lo, ci.hi - ci.mean])
                err = np.nan_to_num(np.array(err).T)
                ax.errorbar(x, m, yerr=err, marker=marker, capsize=3,
                            label=f"{layers} hidden layer{'s' if layers > 1 else ''}")
            ax.set_xscale("log")
            ax.set_xlabel("parameters (log scale)")
            ax.set_ylabel("test accuracy")
            ax.set_title(p)
            ax.legend(loc="lower right")


def _smallest_reaching(results, problem, layers, target=0.95):
    """Smallest network (parameters) of a family whose mean validation accuracy >= target."""
    best = None
    for s in results.select(problem=problem, layers=layers):
        v = stats.mean_ci(results.values(s, "final_val_accuracy")).mean
        if np.isfinite(v) and v >= target:
            npar = n_params([2, *s.model["hidden"], 1])
            if best is None or npar < best[0]:
                best = (npar, s)
    return best


def analyse(results, report):
    quick = results.study.profile == "quick"
    first, second, archs = _figures(quick)
    nets = Networks(results)

    report.section("First layer: half-planes")
    seed1 = _first_layer_figure(results, report, *first, nets)

    report.section("Second layer: combining half-planes")
    seed2, ratios, flat = _second_layer_figure(results, report, *second, nets)
    n_conv = int((ratios >= CONVEX).sum())

    report.section("One against two hidden layers")
    conv = _regions(results, report, archs, nets)
    _accuracy_figure(results, report)

    rows = []
    for p in PROBLEMS:
        for a in archs:
            s = _setting(results, p, a)
            c = conv[(p, a)]
            either = np.maximum(c[:, 0], c[:, 1]) >= CONVEX
            rows.append([p, a, n_params([2, *s.model["hidden"], 1]),
                         fmt_ci(results.values(s, "test_accuracy"), bounds=FRACTION),
                         fmt_ci(c[:, 0], bounds=FRACTION), fmt_ci(c[:, 1], bounds=FRACTION),
                         f"{int(either.sum())}/{len(either)}"])
    report.table(["problem", "hidden", "params", "test acc", "convexity class 1",
                  "convexity class 0", "a class region convex"], rows,
                 caption=f"Decision regions of every seed (networks trained again here). "
                         f"Convexity: grid points of the region over grid points inside its "
                         f"convex hull ({GRID}x{GRID} grid over the data; 1 = convex); a "
                         f"region counts as convex from {CONVEX}. Mean [95% CI] over seeds.")

    rows, small = [], {}
    for p in PROBLEMS:
        row = [p]
        for layers in (1, 2):
            b = _smallest_reaching(results, p, layers)
            small[(p, layers)] = b
            if b is None:
                row += ["none", "-"]
            else:
                row += [f"[{b[1].factors['hidden']}] ({b[0]} params)",
                        fmt_ci(results.values(b[1], "test_accuracy"), bounds=FRACTION)]
        rows.append(row)
    report.table(["problem", "smallest 1-layer net with val acc >= 0.95", "its test acc",
                  "smallest 2-layer net with val acc >= 0.95", "its test acc"], rows,
                 caption="The smallest network of each family (by parameters) whose mean "
                         "final validation accuracy reached 0.95 (chosen on validation; test "
                         "accuracy reported).")
    worst = nets.max_difference()
    report.text(f"The networks drawn and measured were trained again inside the analysis "
                f"(the store keeps no parameters); their final validation losses differ from "
                f"the stored runs by at most {fmt(worst, 3)}.")

    # -- conclusions ------------------------------------------------------------------------
    report.conclusion(
        f"**First layer.** Every first-layer unit is a soft half-plane: tanh(w.x + b) is "
        f"constant along lines parallel to w.x + b = 0 (drawn for the [{first[1]}] network on "
        f"{first[0]}, seed {seed1}); the output combines these lines into its decision region.")
    frac = n_conv / max(len(ratios), 1)
    text = (f"**Second layer.** Of the {len(ratios)} second-layer units with a boundary in the "
            f"plane of the [{second[1]}] networks on {second[0]} (all {len(results.seeds)} "
            f"seeds; {flat} more had one sign everywhere), {n_conv} ({frac:.0%}) have a convex "
            f"region (unit output > 0; convexity >= {CONVEX})")
    if len(ratios):
        text += (f"; median convexity {fmt(float(np.median(ratios)), 3)}, lowest "
                 f"{fmt(float(ratios.min()), 3)}")
    text += "."
    if n_conv < len(ratios):
        text += (" So trained second-layer units are not all the AND-of-half-planes convex "
                 "cells of the notes' picture: a unit thresholds a weighted sum of half-planes, "
                 "which can also be an OR (a non-convex union) of them, and training does not "
                 "prefer the convex kind.")
    else:
        text += " This matches the notes' picture of convex cells built from half-planes."
    report.conclusion(text)
    parts = []
    for p in PROBLEMS:
        one, two = small[(p, 1)], small[(p, 2)]
        f1 = f"{one[0]} params ([{one[1].factors['hidden']}])" if one else "none of the widths"
        f2 = f"{two[0]} params ([{two[1].factors['hidden']}])" if two else "none of the widths"
        parts.append(f"{p}: one hidden layer {f1}, two hidden layers {f2}")
    text = ("**One vs two hidden layers.** Smallest network reaching 0.95 mean validation "
            "accuracy: " + "; ".join(parts) + ".")
    need = [p for p in PROBLEMS if small[(p, 1)] is None and small[(p, 2)] is not None]
    one = [p for p in PROBLEMS if small[(p, 1)] is not None and (
        small[(p, 2)] is None or small[(p, 1)][0] <= small[(p, 2)][0])]
    widest = max(n_params([2, *s.model["hidden"], 1]) for s in results.select(layers=1))
    if one:
        text += (f" One hidden layer suffices, and with fewer parameters, for "
                 f"{', '.join(one)}.")
    if need:
        text += (f" Only two hidden layers reached the target on {', '.join(need)}: no "
                 f"one-hidden-layer network up to {widest} parameters did in "
                 f"{results.settings[0].epochs} epochs, though a wide enough one can in "
                 f"principle (one hidden layer is a universal approximator); two layers are "
                 f"the cheaper way there.")
    report.conclusion(text)
    head = "**In short.** "
    if one:
        head += f"One hidden layer suffices, with the fewest parameters, for {', '.join(one)}"
    if need:
        head += ("; " if one else "") + f"only two hidden layers reached 0.95 validation " \
            f"accuracy on {', '.join(need)}"
    head += (f"{'; ' if one or need else ''}{n_conv}/{len(ratios)} trained second-layer units "
             f"had convex regions.")
    report.conclusions.insert(0, head)
    one_layer = [(p, a) for p in PROBLEMS for a in archs if "-" not in a]
    nonconvex = []
    for p, a in one_layer:
        c = conv[(p, a)]
        k = int((np.maximum(c[:, 0], c[:, 1]) < CONVEX).sum())
        if k:
            nonconvex.append(f"{p} [{a}] {k}/{len(c)}")
    if nonconvex:
        report.conclusion(
            "**Convexity of one-hidden-layer regions.** The classic reading of the notes' "
            "pictures (one hidden layer: convex regions; two: any region) describes threshold "
            "units joined by an AND; the trained one-hidden-layer networks here had neither "
            "class region convex in " + ", ".join(nonconvex) + " seeds, so one hidden "
            "layer of trained units is not limited to convex regions.")
    else:
        report.conclusion(
            "**Convexity of one-hidden-layer regions.** Every one-hidden-layer network "
            "measured had at least one convex class region, as the notes' picture suggests.")
