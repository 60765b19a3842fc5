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
from ..analysis import Networks, best_seed, curve_flattened, layer_outputs, log_axis
from ..protocol import Axis, Tuning
from ..registry import register
from ..report import FRACTION, fmt, fmt_ci
from ..spec import Setting, Study

PROBLEMS = ("xor", "circles", "spirals")
#: Convexity ratio from which a region counts as convex (grid points of the hull in the region).
CONVEX = 0.99
#: Grid points per axis of the decision-region pictures and convexity measurements.
GRID = 201
#: Equivalence margin of the one- vs two-layer comparisons (test accuracy: 50 of 10,000 points).
MARGIN = 0.005
#: A curve has flattened when the mean validation accuracy rose by less than this over the last
#: quarter of the budget.
FLAT = 0.005


def pairs(hidden):
    """One-hidden-layer width with exactly the parameters of the two-layer ``[h, h]`` net.

    A 2-k-1 network has ``4k + 1`` parameters, a 2-h-h-1 network ``h^2 + 5h + 1``: equal for
    ``k = h (h + 5) / 4`` (``h = 3, 4, 8, 16`` -> ``k = 6, 9, 26, 84``).
    """
    k, r = divmod(hidden * (hidden + 5), 4)
    if r:
        raise ValueError(f"no one-layer width matches [{hidden}, {hidden}] exactly")
    return k


def _params(quick):
    """Budgets: ``{problem: (n, epochs, two-layer widths h)}``, lr grid, seeds."""
    if quick:
        return {"problems": {p: (200, 40, [3]) for p in PROBLEMS},
                "lrs": [0.03, 0.1], "tune": [0, 1], "report": [10, 11],
                "first": ("xor", "6"), "second": ("circles", "3-3"), "regions": [3]}
    # pilot (3 seeds, lr 0.003-0.03): xor and circles reach test accuracy 1 well within 200
    # epochs at every width; on spirals the best validation epochs were 330-490 of 500, so 800
    return {"problems": {"xor": (600, 200, [3, 4, 8]), "circles": (600, 200, [3, 4, 8]),
                         "spirals": (1000, 800, [3, 4, 8, 16])},
            "lrs": [0.003, 0.01, 0.03], "tune": [0, 1, 2], "report": list(range(10, 20)),
            "first": ("xor", "6"), "second": ("circles", "4-4"), "regions": [4, 8]}


def arch_name(hidden):
    """``[4, 4] -> "4-4"``: the ``hidden`` factor of a setting."""
    return "-".join(str(h) for h in hidden)


def n_params(sizes):
    """Weights and biases of an MLP with these layer widths."""
    return int(sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=False)))


def _conditions(prm):
    out = []
    for p, (_, _, hs) in prm["problems"].items():
        for h in hs:
            for hidden in ([pairs(h)], [h, h]):
                out.append({"problem": p, "hidden": arch_name(hidden), "layers": len(hidden)})
    return out


@register("geometry")
def make(profile):
    quick = profile == "quick"
    prm = _params(quick)

    def build(f):
        n, epochs, _ = prm["problems"][f["problem"]]
        hidden = [int(v) for v in f["hidden"].split("-")]
        return Setting(problem=f["problem"], problem_args={"n": n},
                       model={"hidden": hidden, "activation": "tanh"},
                       optimizer="adam", hyper={"lr": f["lr"]}, batch_size=16, epochs=epochs,
                       metrics="running", factors=f)

    sizes = "; ".join(f"{p}: n = {n} ({int(n * 0.75)} train / {n - int(n * 0.75)} val), "
                      f"{e} epochs" for p, (n, e, _) in prm["problems"].items())
    return Study(
        name="geometry",
        title="What each layer computes: half-planes, convex regions, one vs two hidden layers",
        question="On 2-D problems, do trained first-layer units act as half-planes and "
                 "second-layer units as convex regions built from them, as the notes draw "
                 "them, and at an equal number of parameters, does a network with two hidden "
                 "layers classify XOR, circles and spirals better than one with a single "
                 "hidden layer?",
        settings=(),
        seeds=prm["report"],
        tuning=Tuning(build, conditions=_conditions(prm),
                      axes={"lr": Axis(prm["lrs"], scale="log")},
                      tune_seeds=prm["tune"]),
        analysis=analyse,
        notes=f"Hidden units are tanh, the output a sigmoid with binary cross-entropy; Adam, "
              f"mini-batches of 16, the learning rate tuned per problem and architecture "
              f"(grid {', '.join(f'{v:g}' for v in prm['lrs'])}, extended at its edges). "
              f"{sizes}. Each one-hidden-layer width k is paired with the two-layer "
              f"[h, h] network of exactly the same number of parameters (4k + 1 = h^2 + 5h + "
              f"1). The store keeps no parameters: the networks drawn and measured below are "
              f"trained again inside the analysis with the same data, seed, optimizer and "
              f"visiting order as their stored runs (deterministic), and the report checks "
              f"they match the stored runs.",
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


def _unselected(problem, arch):
    return (f"Not drawn: the [{arch}] network on {problem} has no selected setting (a tuning "
            "run of its condition failed or is missing; see the protocol above).")


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


def unit_sides(values, points):
    """Convexity of both sides of a unit over the plane: ``(convexity {h > 0}, convexity
    {h < 0})``, or ``None`` when the unit has one sign everywhere (no boundary).

    The sign of a tanh unit is arbitrary (flipping its incoming and outgoing weights changes
    nothing), so a unit's region is convex when *either* side is convex.
    """
    pos, neg = values > 0, values < 0
    if not pos.any() or not neg.any():
        return None
    return convexity(pos, points), convexity(neg, points)


def _second_layer_figure(results, report, problem, arch, nets):
    s = _setting(results, problem, arch)
    models, dss = nets(s)
    # convexity of both sides of every second-layer unit, each seed on a grid over its own data;
    # a unit whose output has one sign over the whole plane draws no boundary and is counted
    # apart
    sides, flat = [], 0
    for m, d in zip(models, dss, strict=True):
        _, _, pts = plane_grid(d)
        h2 = layer_outputs(m, pts)[1]
        for j in range(h2.shape[1]):
            c = unit_sides(h2[:, j], pts)
            if c is None:
                flat += 1
            else:
                sides.append(c)
    seed, model, ds = nets.best(s)
    xs, ys, pts = plane_grid(ds)
    outs = layer_outputs(model, pts)
    h2, out = outs[1], outs[-1][:, 0]
    W1, b1 = model.weights[0], model.biases[0]
    k = h2.shape[1]
    ncols = 3
    nrows = int(np.ceil((k + 2) / ncols))
    with report.figure(
        "second_layer",
        f"Second layer: each unit of the second hidden layer of a trained 2-{arch}-1 network "
        f"on {problem} (seed {seed}, its own data) combines the first layer's half-planes "
        "(dashed lines) into a region. First panel: the first-layer lines and the data; then "
        "each second-layer unit's output (red > 0, blue < 0, black line: the edge between its "
        "two sides) with the convexity of its positive / negative side (1 = convex; the sign "
        "of a tanh unit is arbitrary, so either side may be the unit's region); last, the "
        "network output.",
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
            c = unit_sides(h2[:, j], pts)
            if c is not None:
                ax.contour(xs, ys, h2[:, j].reshape(len(ys), len(xs)), levels=[0.0],
                           colors="k", linewidths=2)
            for i in range(W1.shape[1]):
                _line(ax, W1[:, i], b1[i], xs, ys, color="0.25", lw=0.9, ls="--")
            what = (f"convexity + {c[0]:.2f} / - {c[1]:.2f}" if c is not None
                    else "one sign everywhere")
            ax.set_title(f"second-layer unit {j + 1}: {what}", fontsize=10)
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
    return seed, np.array(sides).reshape(-1, 2), flat


def _region_archs(prm):
    """The matched pairs drawn and measured: ``[one-layer name, two-layer name, ...]``."""
    out = []
    for h in prm["regions"]:
        out += [str(pairs(h)), arch_name([h, h])]
    return out


def _regions(results, report, archs, nets):
    """Decision regions (figure) and their convexity over every seed (returned)."""
    conv = {}
    drawn = {}
    for p in PROBLEMS:
        for a in archs:
            s = _setting(results, p, a)
            if s is None:
                continue
            models, dss = nets(s)
            rows = []
            for m, d in zip(models, dss, strict=True):
                _, _, pts = plane_grid(d)
                out = layer_outputs(m, pts)[-1][:, 0]
                rows.append((convexity(out > 0.5, pts), convexity(out <= 0.5, pts)))
            conv[(p, a)] = np.array(rows)
            seed = best_seed(results, s)
            i = results.seeds.index(seed)
            m, ds = models[i], dss[i]
            xs, ys, pts = plane_grid(ds)
            drawn[(p, a)] = (ds, xs, ys, layer_outputs(m, pts)[-1][:, 0], seed, _accuracy(m, ds),
                             n_params(m.sizes))
    probs = [p for p in PROBLEMS if any((p, a) in drawn for a in archs)]
    nr, nc = len(probs), len(archs)
    with report.figure(
        "regions",
        "Decision regions of trained networks with one hidden layer (e.g. '9': 9 tanh units) "
        "and two ('4-4') of the same number of parameters; colour: P(class 1), black line: "
        "the decision boundary; test data as white circles (class 0) and white-edged black "
        "triangles (class 1), the first 400 shown. Each panel is the seed with the best validation "
        "accuracy, drawn over its own data; 'convex': convexity of the class-1 region / "
        "class-0 region.",
        nrows=nr, ncols=nc, figsize=(4.0 * nc, 3.7 * nr),
    ) as (fig, axes):
        axes = np.asarray(axes).reshape(nr, nc)
        for i, p in enumerate(probs):
            for j, a in enumerate(archs):
                ax = axes[i, j]
                if (p, a) not in drawn:
                    ax.set_visible(False)
                    continue
                ds, xs, ys, out, seed, acc, npar = drawn[(p, a)]
                _region_axes(ax, xs, ys, out, 0, 1)
                ax.contour(xs, ys, out.reshape(len(ys), len(xs)), levels=[0.5], colors="k",
                           linewidths=1.8)
                _scatter(ax, _Subset(ds, 400), "test", s=14, contrast=True)
                cp, cn = conv[(p, a)][results.seeds.index(seed)]
                layers = "one hidden layer" if "-" not in a else "two hidden layers"
                ax.set_title(f"{p}, {layers} [{a}], {npar} params\ntest acc {acc:.3f}, "
                             f"convex {cp:.2f} / {cn:.2f}", fontsize=9.5)
                ax.set_xticks([])
                ax.set_yticks([])
    return conv


class _Subset:
    """The first ``k`` test points of a data set (a 10,000-point scatter hides the regions)."""

    def __init__(self, ds, k):
        self.X_test, self.y_test = ds.X_test[:k], ds.y_test[:k]


#: Colour and marker of each family, the same in every figure.
FAMILY = {1: ("C0", "o", "one hidden layer"), 2: ("C3", "s", "two hidden layers")}


def _accuracy_figure(results, report):
    probs = [p for p in PROBLEMS if results.select(problem=p)]
    with report.figure(
        "accuracy_params",
        "Early-stopped test accuracy (network of the best validation epoch; 10,000 test points "
        "per seed) against the number of parameters, one hidden layer and two hidden layers "
        "of the same parameter counts (drawn 3% apart), each at its tuned learning rate; mean "
        "and 95% CI over the report seeds.",
        ncols=len(probs), figsize=(4.6 * len(probs), 4.0),
    ) as (_, axes):
        for ax, p in zip(np.atleast_1d(axes), probs, strict=True):
            for layers, (color, marker, label) in FAMILY.items():
                ss = results.select(problem=p, layers=layers)
                if not ss:
                    continue
                ss = sorted(ss, key=lambda s: n_params([2, *s.model["hidden"], 1]))
                x, m, err = [], [], []
                for s in ss:
                    ci = stats.mean_ci(results.values(s, "es_test_accuracy"), bounds=FRACTION)
                    # the families have equal counts: drawn 3% apart so both bars show
                    x.append(n_params([2, *s.model["hidden"], 1]) * (0.97 if layers == 1
                                                                      else 1.03))
                    m.append(ci.mean)
                    err.append([ci.mean - ci.lo, ci.hi - ci.mean])
                err = np.nan_to_num(np.array(err).T)
                ax.errorbar(x, m, yerr=err, marker=marker, color=color, capsize=3, label=label)
            log_axis(ax, "x")
            ax.set_xlabel("parameters (log scale)")
            ax.set_ylabel("test accuracy (early-stopped)")
            ax.set_title(p)
            ax.legend(loc="lower right")


def _comparisons(results, prm):
    """Paired one- vs two-layer differences of early-stopped test accuracy at equal params."""
    pairs_, meta = [], []
    for p, (_, _, hs) in prm["problems"].items():
        for h in hs:
            one = _setting(results, p, str(pairs(h)))
            two = _setting(results, p, arch_name([h, h]))
            if one is None or two is None:
                continue
            pairs_.append((f"{p}: [{h}-{h}] - [{pairs(h)}] ({n_params([2, h, h, 1])} params)",
                           results.values(two, "es_test_accuracy"),
                           results.values(one, "es_test_accuracy")))
            meta.append({"problem": p, "pair": f"[{h}-{h}] vs [{pairs(h)}]",
                         "params": n_params([2, h, h, 1])})
    rows = stats.compare(pairs_, margin=MARGIN, lower_is_better=False)
    for r, m in zip(rows, meta, strict=True):
        r.update(m)
    return rows


def _verdict(r):
    """A comparison's verdict in the words of this study."""
    return r["verdict"].replace("a better", "two layers better").replace(
        "b better", "one layer better")


def analyse(results, report):
    prm = _params(results.study.profile == "quick")
    first, second = prm["first"], prm["second"]
    archs = _region_archs(prm)
    nets = Networks(results)

    report.section("First layer: half-planes")
    seed1 = None
    if _setting(results, *first) is None:
        report.text(_unselected(*first))
    else:
        seed1 = _first_layer_figure(results, report, *first, nets)

    report.section("Second layer: combining half-planes")
    seed2, sides, flat = None, np.zeros((0, 2)), 0
    if _setting(results, *second) is None:
        report.text(_unselected(*second))
    else:
        seed2, sides, flat = _second_layer_figure(results, report, *second, nets)
    best_side = sides.max(axis=1)  # sides: (units, 2), (0, 2) without units
    n_pos = int((sides[:, 0] >= CONVEX).sum())
    n_either = int((best_side >= CONVEX).sum())
    if seed2 is not None:
        report.table(
            ["side", f"units convex (>= {CONVEX:g})", "median convexity", "lowest"],
            [[name, f"{int((v >= CONVEX).sum())}/{len(v)}", fmt(float(np.median(v)), 3),
              fmt(float(v.min()), 3)]
             for name, v in (("positive {h > 0}", sides[:, 0]), ("negative {h < 0}", sides[:, 1]),
                             ("either (the larger)", best_side)) if len(v)],
            caption=f"Convexity of the second-layer units of the [{second[1]}] networks on "
                    f"{second[0]}, every report seed ({flat} units with one sign everywhere left "
                    f"out).")

    report.section("One against two hidden layers at equal parameters")
    conv = _regions(results, report, archs, nets)
    _accuracy_figure(results, report)
    comps = _comparisons(results, prm)
    report.table(
        ["comparison (two - one layer)", "pairs", "mean diff [95% CI]", "two / one better",
         "Holm p", f"TOST Holm p (+-{MARGIN:g})", "verdict"],
        [[r["name"], r["n"], f"{fmt(r['diff'])} [{fmt(r['lo'])}, {fmt(r['hi'])}]",
          f"{r['b_better']}/{r['a_better']}", fmt(r["p_holm"], 3), fmt(r["tost_p_holm"], 3),
          _verdict(r)] for r in comps],
        caption="Early-stopped test accuracy (network of the best validation epoch), paired "
                "over the report seeds (each seed: the same data for both networks); Holm "
                f"over all comparisons; equivalence only by a TOST with margin {MARGIN:g} "
                "(50 of 10,000 test points).")

    rows = []
    for p in PROBLEMS:
        for a in archs:
            s = _setting(results, p, a)
            if s is None or (p, a) not in conv:
                continue
            c = conv[(p, a)]
            either = np.maximum(c[:, 0], c[:, 1]) >= CONVEX
            rows.append([p, a, n_params([2, *s.model["hidden"], 1]), fmt(s.factors["lr"], 3),
                         fmt_ci(results.values(s, "es_test_accuracy"), bounds=FRACTION),
                         fmt_ci(c[:, 0], bounds=FRACTION), fmt_ci(c[:, 1], bounds=FRACTION),
                         f"{int(either.sum())}/{len(either)}"])
    report.table(["problem", "hidden", "params", "lr", "test acc (early-stopped)",
                  "convexity class 1", "convexity class 0", "a class region convex"], rows,
                 caption=f"Decision regions of every report seed (networks trained again "
                         f"here). Convexity: grid points of the region over grid points "
                         f"inside its convex hull ({GRID}x{GRID} grid over the seed's data; "
                         f"1 = convex); a region counts as convex from {CONVEX}. Mean [95% CI] "
                         f"over seeds.")

    conv_rows, still, fell = [], [], []
    for s in results.settings:
        ok, rise = curve_flattened(results.curves(s, "val_accuracy"), tol=FLAT)
        be = results.values(s, "best_val_epoch")
        drop = bool(np.isfinite(rise) and rise <= -FLAT)
        conv_rows.append([s.factors["problem"], s.factors["hidden"], s.epochs,
                          fmt(float(np.nanmedian(be)), 3), fmt(rise, 3),
                          "**no**" if not ok else ("fell" if drop else "yes")])
        if not ok:
            still.append(f"{s.factors['problem']} [{s.factors['hidden']}]")
        if drop:
            fell.append(f"{s.factors['problem']} [{s.factors['hidden']}] at lr "
                        f"{fmt(s.factors['lr'], 3)} (validation accuracy {fmt(rise, 3)}; test "
                        f"accuracy final "
                        f"{fmt(float(np.nanmean(results.values(s, 'test_accuracy'))), 4)}, "
                        f"early-stopped "
                        f"{fmt(float(np.nanmean(results.values(s, 'es_test_accuracy'))), 4)})")
    report.table(["problem", "hidden", "epochs", "median best val epoch",
                  "val acc rise over the last quarter", "flattened"], conv_rows,
                 caption=f"Convergence: a setting has flattened when its mean validation "
                         f"accuracy rose by less than {FLAT:g} over the last quarter of the "
                         f"budget (the validation loss of separable problems keeps falling "
                         f"towards 0 while the accuracy stays at 1); 'fell': it dropped by "
                         f"{FLAT:g} or more, training that is unstable at its rate rather than "
                         f"still improving.")
    worst = nets.max_difference()
    report.text(f"The networks drawn and measured were trained again inside the analysis "
                f"(the store keeps no parameters); their final validation losses differ from "
                f"the stored runs by at most {fmt(worst, 3)}.")

    # -- conclusions ------------------------------------------------------------------------
    if seed1 is not None:
        report.conclusion(
            f"**First layer.** Every first-layer unit is a soft half-plane: tanh(w.x + b) is "
            f"constant along lines parallel to w.x + b = 0 (drawn for the [{first[1]}] network "
            f"on {first[0]}, seed {seed1}); the output combines these lines into its decision "
            "region.")
    if seed2 is not None:
        n_units = len(sides)
        text = (f"**Second layer.** Of the {n_units} second-layer units with a boundary in the "
                f"plane of the [{second[1]}] networks on {second[0]} ({len(results.seeds)} report "
                f"seeds; {flat} more had one sign everywhere), {n_either} "
                f"({n_either / max(n_units, 1):.0%}) have a convex region on at least one side "
                f"(convexity >= {CONVEX}); counting the positive side only, as if the sign of a "
                f"tanh unit meant something, {n_pos} would.")
        if n_units:
            text += (f" The better side's median convexity is {fmt(float(np.median(best_side)), 3)}"
                     f", its lowest {fmt(float(best_side.min()), 3)}.")
        if n_either < n_units:
            text += (" So not every trained second-layer unit is a convex cell of the notes' "
                     "picture, even allowing either sign: a unit thresholds a weighted sum of "
                     "soft half-planes, which need not be an AND of them.")
        elif n_units:
            text += (" Allowing either sign, every unit is a convex cell bounded by the first "
                     "layer's lines, as in the notes' picture.")
        report.conclusion(text)

    verdicts = {}
    for r in comps:
        verdicts.setdefault(r["problem"], []).append(r)
    parts = []
    for p, rs in verdicts.items():
        bits = [f"{r['pair']} at {r['params']} params: {fmt(r['diff'], 3)} "
                f"[{fmt(r['lo'], 3)}, {fmt(r['hi'], 3)}] ({_verdict(r)})" for r in rs]
        parts.append(f"{p}: " + "; ".join(bits))
    text = ("**One vs two hidden layers at equal parameters** (early-stopped test accuracy, "
            "two-layer minus one-layer, mean [95% CI] over paired seeds, Holm-corrected; "
            f"equivalence only within +-{MARGIN:g} by TOST). " + ". ".join(parts) + ".")
    two_better = [r for r in comps if r["verdict"] == "a better"]
    one_better = [r for r in comps if r["verdict"] == "b better"]
    equiv = [r for r in comps if r["verdict"].startswith("equivalent")]
    text += (f" Of {len(comps)} matched pairs, two layers were better in {len(two_better)}, "
             f"one layer in {len(one_better)}, equivalent within +-{MARGIN:g} in {len(equiv)}, "
             f"inconclusive in {len(comps) - len(two_better) - len(one_better) - len(equiv)}.")
    if two_better:
        text += (" These are results of trained networks at a fixed budget, not of what each "
                 "family can represent: one hidden layer is a universal approximator, so where "
                 "it trails, it trails in what Adam found within the budget.")
    report.conclusion(text)
    if still:
        report.conclusion(f"**Convergence.** Not flattened by the end of the budget (mean "
                          f"validation accuracy still rising by >= {FLAT:g} over the last "
                          f"quarter): {', '.join(still)}; their numbers may understate what "
                          f"longer training reaches.")
    else:
        report.conclusion(f"**Convergence.** Every setting's mean validation accuracy rose by "
                          f"less than {FLAT:g} over the last quarter of its budget.")
    if fell:
        report.conclusion(f"**Unstable settings.** Mean validation accuracy fell by {FLAT:g} or "
                          f"more over the last quarter for {'; '.join(fell)}: the tuned rate "
                          f"does not settle (some seeds lose accuracy late), so the final "
                          f"network is worse than the early-stopped one; the comparisons use "
                          f"the early-stopped one.")
    plan = results.plan
    if plan is not None:
        lrs0 = prm["lrs"]
        beyond = [c for c in plan.choices if c.setting is not None
                  and "lr" in c.point and c.point["lr"] not in lrs0]
        if beyond:
            report.conclusion(
                f"**Learning rates beyond the initial grid** ({', '.join(f'{v:g}' for v in lrs0)}"
                f"). Adam's rate was selected outside it for "
                + ", ".join(f"{c.condition.get('problem')} [{c.condition.get('hidden')}] at "
                            f"{fmt(c.point['lr'], 3)} ({len(c.extended.get('lr', []))} "
                            f"extension{'s' if len(c.extended.get('lr', [])) != 1 else ''})"
                            for c in beyond)
                + ". No selection sits at the edge of the extended grid, but where the "
                  "classes can be fitted (almost) exactly, the selection metric (validation "
                  "loss) keeps rewarding rates that drive the loss towards 0 faster, so large "
                  "rates are favoured even where the accuracy no longer changes; the "
                  "accuracies compared are early-stopped.")

    one_layer = [(p, a) for p in PROBLEMS for a in archs if "-" not in a and (p, a) in conv]
    nonconvex = []
    for p, a in one_layer:
        c = conv[(p, a)]
        k = int((np.maximum(c[:, 0], c[:, 1]) < CONVEX).sum())
        if k:
            nonconvex.append(f"{p} [{a}] {k}/{len(c)}")
    if nonconvex:
        report.conclusion(
            "**Convexity of one-hidden-layer regions.** The classic reading of the notes' "
            "pictures (one hidden layer: convex regions; two: any region; Lippmann 1987) holds "
            "for hard-threshold hidden units joined by an AND at the output, not for one "
            "hidden layer in general: one hidden layer can already form non-convex and "
            "disjoint regions (Wieland and Leighton 1987; Makhoul et al. 1989) and, wide "
            "enough, approximates any continuous function (Cybenko 1989; Hornik et al. 1989). "
            "Here the trained one-hidden-layer tanh networks had neither class region convex "
            "in " + ", ".join(nonconvex) + " seeds. For xor and spirals this is forced by the "
            "data, whose classes are not convex, so it only shows that one hidden layer "
            "fitted them." + "".join(
                f" On {p}, where a convex class region would do, [{a}] had a best-side "
                f"convexity of {fmt(float(best.min()), 3)} at the lowest (cut {CONVEX})."
                for p, a, best in ((p, a, np.maximum(conv[(p, a)][:, 0], conv[(p, a)][:, 1]))
                                   for p, a in one_layer if p not in ("xor", "spirals"))
                if (best < CONVEX).any()))
    else:
        report.conclusion(
            "**Convexity of one-hidden-layer regions.** Every one-hidden-layer network "
            "measured had at least one convex class region, as the notes' picture suggests.")

    # the headline claim: the largest matched-pair difference, and the second-layer count
    if comps:
        top = max(comps, key=lambda r: abs(r["diff"]) if np.isfinite(r["diff"]) else -1)
        who = {"a better": "two hidden layers beat one", "b better": "one hidden layer beat two"
               }.get(top["verdict"], None)
        name = top["name"]
        head = (f"At equal parameters, the largest one- vs two-layer difference is {name}: "
                f"{fmt(top['diff'], 3)} [{fmt(top['lo'], 3)}, {fmt(top['hi'], 3)}] "
                f"early-stopped test accuracy (two minus one layer, {top['n']} paired seeds, "
                f"Holm p = {fmt(top['p_holm'], 3)})")
        head += f": {who}." if who else f" ({top['verdict']})."
        head += (f" Over all {len(comps)} pairs: two layers better in {len(two_better)}, one "
                 f"in {len(one_better)}, equivalent within +-{MARGIN:g} in {len(equiv)}, "
                 f"inconclusive in "
                 f"{len(comps) - len(two_better) - len(one_better) - len(equiv)}.")
        inc = [r for r in comps if r["verdict"] == "inconclusive"]
        if inc:
            sizes = sorted({int(r["params"]) for r in inc})
            others = [int(r["params"]) for r in comps if r["verdict"] != "inconclusive"]
            small = bool(others) and max(sizes) < min(others)
            head += (f" The inconclusive pairs are at {', '.join(str(v) for v in sizes)} "
                     f"params" + (", smaller than every decided pair, where the paired "
                                  "differences spread widely" if small else "") + ".")
            if not two_better and not one_better:
                head += " No pair shows a significant difference in either direction."
        if seed2 is not None:
            head += (f" {n_either}/{n_units} second-layer units had a convex region on one "
                     f"side or the other ({n_pos} on the positive side).")
        report.claim(head)
