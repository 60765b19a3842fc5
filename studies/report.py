"""Reports: figures (PNG + SVG, Agg backend), Markdown tables and each study's ``README.md``.

:func:`write_report` builds ``<out>/<study>/README.md`` around what the study's analysis adds
through a :class:`Report`: title and question, setup (computed from the settings), the
analysis's sections (figures, tables, text), a table of every setting, the conclusion, the
command that regenerates the report, and the machines and versions that made the runs.
:func:`write_index` writes ``<out>/README.md`` listing every study report found there.

Figures never show; they are written and closed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import traceback
from pathlib import Path

from . import provenance, stats

#: Matplotlib style of every figure.
STYLE = {
    "figure.figsize": (6.4, 4.2),
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "svg.hashsalt": "dlbasics",
    "svg.fonttype": "none",
}
_pyplot = None


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend with :data:`STYLE` (imported on first use)."""
    global _pyplot
    if _pyplot is None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.rcParams.update(STYLE)
        _pyplot = plt
    return _pyplot


#: Significant digits of the numbers in report tables.
DIGITS = 4


def fmt(x, digits=DIGITS):
    """A number for a table: ``"-"`` for None/NaN, ``"inf"``, or ``digits`` significant."""
    if x is None:
        return "-"
    if isinstance(x, (int,)) and not isinstance(x, bool):
        return str(x)
    x = float(x)
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


#: Ranges of common quantities, to clip confidence intervals with (``bounds=``).
POSITIVE = (0.0, math.inf)
FRACTION = (0.0, 1.0)


def bounds_of(key):
    """Natural range of a summary key or history metric: accuracies in [0, 1], others >= 0."""
    if "accuracy" in key:
        return FRACTION
    if "loss" in key or key in ("time", "seconds", "train_seconds", "epochs", "updates",
                                "grad_evals", "wall_s"):
        return POSITIVE
    return None


def fmt_ci(values, digits=DIGITS, bounds=None):
    """``"mean [lo, hi]"`` of per-seed values (NaN left out; interval clipped to ``bounds``)."""
    return stats.mean_ci(values, bounds=bounds).fmt(digits)


def md_table(headers, rows):
    """A Markdown table; cells are converted with ``str`` (numbers: format them first)."""
    def cell(v):
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def band(ax, x, curves, label, color=None, confidence=0.95, linestyle="-", alpha=0.2,
         bounds=None):
    """Plot the mean of ``(n_seeds, n_points)`` curves with its t-interval as a band.

    ``bounds``: clip the band (e.g. :data:`POSITIVE` for a loss, :data:`FRACTION` for an
    accuracy).
    """
    mean, lo, hi, _ = stats.curve_ci(curves, confidence, bounds)
    (line,) = ax.plot(x, mean, label=label, color=color, linestyle=linestyle, linewidth=1.6)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=alpha, linewidth=0)
    return line


def save_figure(fig, directory, name):
    """Write ``name.png`` and ``name.svg`` into ``directory``; close the figure."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fig.savefig(directory / f"{name}.png", dpi=150, bbox_inches="tight",
                metadata={"Software": None})
    fig.savefig(directory / f"{name}.svg", bbox_inches="tight", metadata={"Date": None})
    pyplot().close(fig)
    return directory / f"{name}.png", directory / f"{name}.svg"


class Report:
    """What an analysis adds to a study's report.

    Parameters
    ----------
    directory : Path
        ``<out>/<study>``; figures are written there at once.
    results : Results
    """

    def __init__(self, directory, results):
        self.directory = Path(directory)
        self.results = results
        self.parts = []
        self.conclusions = []
        self.figures = []
        self.claims = []

    @contextlib.contextmanager
    def figure(self, name, caption, nrows=1, ncols=1, figsize=None, **kw):
        """``with report.figure("curves", "Validation loss ...") as (fig, ax):`` draw; saved
        as PNG + SVG on exit and shown in the README with its caption."""
        if figsize is None:
            figsize = (6.4 * ncols if ncols > 1 else 6.4, 4.2 * nrows if nrows > 1 else 4.2)
        plt = pyplot()
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=True, **kw)
        try:
            yield fig, axes
        except BaseException:
            plt.close(fig)
            raise
        fig.tight_layout()
        self.add_figure(fig, name, caption)

    def add_figure(self, fig, name, caption):
        """Save a figure made elsewhere and show it in the README."""
        if not name or not all(c.isalnum() or c in "_-" for c in name):
            raise ValueError(f"figure name must be letters, digits, '_' or '-', got {name!r}")
        save_figure(fig, self.directory, name)
        self.figures.append(name)
        self.parts.append(f"![{caption}]({name}.png)\n\n*{caption}* ([SVG]({name}.svg))")

    def section(self, title):
        self.parts.append(f"## {title}")

    def text(self, markdown):
        self.parts.append(markdown.strip())

    def table(self, headers, rows, caption=None):
        if caption:
            self.parts.append(f"*{caption}*")
        self.parts.append(md_table(headers, rows))

    def conclusion(self, markdown):
        """A sentence of the conclusion; write it from the numbers, never hard-code it."""
        self.conclusions.append(markdown.strip())

    def claim(self, markdown):
        """The report's headline claim, with its effect size and interval (from the numbers):
        it opens the README and the index lists it."""
        self.claims.append(markdown.strip())


# ----------------------------------------------------------------------------------------------
# the README of a study
# ----------------------------------------------------------------------------------------------


def _describe_problem(s, seed=0):
    from . import datasets

    args = ", ".join(f"{k}={v}" for k, v in s.problem_args.items())
    try:
        ds = datasets.load(s.problem, s.data_seed_for(seed), **s.problem_args)
        ntr, nva, nte = ds.sizes()
        split = f"{ntr}/{nva}/{nte} train/val/test, {ds.n_features} features, {ds.task}"
    except Exception as exc:  # a missing extra must not stop the report
        split = f"not loadable here: {exc}"
    return f"`{s.problem}`" + (f" ({args})" if args else "") + f": {split}"


def _model_text(model):
    return ", ".join(f"{k}={v}" for k, v in model.items())


def _setup(study):
    lines = []
    problems = {}
    for s in study.settings:
        problems.setdefault((s.problem, json.dumps(s.problem_args, sort_keys=True),
                             s.data_seed), s)
    data = ("each run seed draws its own data and split (the intervals include the variance "
            "of the data)" if study.data_resampled else
            "the data (and its splits) are one fixed draw for every seed, which varies the "
            "network only")
    lines.append("- Problems: " + "; ".join(_describe_problem(s, study.seeds[0])
                                            for s in problems.values())
                 + f". Inputs standardised with training-split statistics; {data}.")
    models = []
    for s in study.settings:
        if s.model not in models:
            models.append(s.model)
    lines.append("- Models: " + "; ".join(f"MLP({_model_text(m)})" for m in models) + ".")
    seeds = study.seeds
    lines.append(f"- Seeds: {len(seeds)} ({', '.join(map(str, seeds))}); a seed sets the "
                 "initialisation, the shuffling order"
                 + (" and the data." if study.data_resampled else "."))
    lines.append(f"- Grid: {len(study.settings)} settings x {len(seeds)} seeds = "
                 f"{len(study.settings) * len(seeds)} runs.")
    out = "\n".join(lines)
    if study.notes:
        out += "\n\n" + study.notes.strip()
    rows = []
    for s in study.settings:
        hyper = ", ".join(f"{k}={v}" for k, v in s.hyper.items()) or "defaults"
        if s.schedule:
            hyper += "; schedule " + ", ".join(f"{k}={v}" for k, v in s.schedule.items())
        rows.append([s.label, s.problem, _model_text(s.model), s.optimizer, hyper,
                     "full" if s.batch_size is None else s.batch_size, s.epochs])
    out += "\n\n" + md_table(["setting", "problem", "model", "optimizer", "hyper-parameters",
                              "batch", "epochs"], rows)
    return out


#: Columns of the all-settings table: (header, summary key).
SUMMARY_COLUMNS = (
    ("final val loss", "final_val_loss"),
    ("final val acc", "final_val_accuracy"),
    ("test loss", "test_loss"),
    ("test acc", "test_accuracy"),
    ("train s", "train_seconds"),
)


def settings_table(results):
    """Rows of the all-settings table: label, run counts, mean [95% CI] of summary values."""
    rows = []
    for s in results.settings:
        c = results.counts(s)
        status = f"{c['ok']}/{c['diverged']}/{c['failed']}/{c['missing']}"
        rows.append([s.label, status] + [fmt_ci(results.values(s, k), bounds=bounds_of(k))
                                         for _, k in SUMMARY_COLUMNS])
    return ["setting", "ok/div/fail/miss"] + [h for h, _ in SUMMARY_COLUMNS], rows


def run_time(results):
    """``(sum of the runs' wall seconds, wall-clock seconds during which the study was running)``
    of the stored runs (with a tuned study's tuning and timing runs): the second is the length of
    the union of the runs' ``[started_at, finished_at]`` intervals, so a study resumed later, or
    its timing pass redone, does not count the time in between. ``(0, 0)`` without timestamps."""
    rows = [r for res in (results, results.tuning, results.timing) if res is not None
            for r in res.rows()]
    total = float(sum(r["wall_s"] or 0.0 for r in rows))
    spans = sorted((_dt.datetime.fromisoformat(r["started_at"]),
                    _dt.datetime.fromisoformat(r["finished_at"]))
                   for r in rows if r.get("started_at") and r.get("finished_at"))
    busy, end = 0.0, None
    for a, b in spans:
        if end is None or a > end:
            busy += (b - a).total_seconds()
            end = b
        elif b > end:
            busy += (b - end).total_seconds()
            end = b
    return total, max(busy, 0.0)


def _provenance(results):
    lines = []
    total, span = run_time(results)
    lines.append(f"- Run time: {span:.0f} s of wall clock during which the study's runs were "
                 f"running (the union of their start-to-finish intervals; {total:.0f} s summed "
                 "over runs)")
    for m in results.machines():
        lines.append(f"- Machine: {provenance.describe_machine(m)}")
    for v in results.versions():
        lines.append("- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    backends = sorted({r["backend"] for r in results.rows() if r["backend"]})
    paths = sorted({r["path"] for r in results.rows() if r["path"]})
    if backends:
        lines.append(f"- Backend: {', '.join(backends)}; training path: {', '.join(paths)}")
    lines.append(f"- Report written with commit {provenance.git_commit() or 'unknown'}")
    return "\n".join(lines) or "- No runs."


def default_analysis(results, report):
    """Used when a study has none: validation-loss curves and the best setting on validation."""
    with report.figure("val_loss", "Validation loss, mean and 95% CI over seeds") as (_, ax):
        for s in results.settings[:12]:
            band(ax, results.epochs(s), results.curves(s, "val_loss"), s.label,
                 bounds=POSITIVE)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation loss")
        ax.legend()
    best, _ = stats.best_of_grid(results)
    if best is not None:
        ci = stats.mean_ci(results.values(best, "final_val_loss"), bounds=POSITIVE)
        report.conclusion(f"Lowest mean final validation loss: **{best.label}** ({ci.fmt()}).")


def protocol(study, results):
    """The machine-readable protocol of a report (``summary.json``'s ``protocol`` object)."""
    from . import datasets

    tun = study.tuning
    problems = {}
    for s in results.settings:
        key = s.problem + ("" if not s.problem_args else " (" + ", ".join(
            f"{k}={v}" for k, v in sorted(s.problem_args.items())) + ")")
        entry = problems.get(key)
        if entry is None:
            try:
                ds = datasets.load(s.problem, s.data_seed_for(study.seeds[0]), **s.problem_args)
                ntr, nva, nte = ds.sizes()
            except Exception:  # a missing extra must not stop the report
                ntr = nva = nte = None
            entry = problems[key] = {"n_train": ntr, "n_val": nva, "n_test": nte, "epochs": []}
        if s.epochs not in entry["epochs"]:
            entry["epochs"].append(s.epochs)
    for entry in problems.values():
        entry["epochs"] = entry["epochs"][0] if len(entry["epochs"]) == 1 else entry["epochs"]
    plan = results.plan
    edges = []
    for e in (plan.edges_remaining if plan is not None else []):
        edges.append({"condition": e["condition"], "axis": e["axis"], "value": e["value"],
                      "side": e["side"], "reason": e["reason"]})
    refs = []
    for r in study.references:
        s = r["setting"]
        if isinstance(s, dict):  # the factors of a condition (a tuned setting's label varies)
            s = next(iter(results.select(**s)), None)
        ci = stats.mean_ci(results.values(s, r["key"]) if s is not None else [],
                           bounds=bounds_of(r["key"]))
        refs.append({"name": r["name"], "source": r["source"], "paper_value": r["paper_value"],
                     "ours": None if ci.n == 0 else round(ci.mean, 4),
                     "ci": [None if not math.isfinite(v) else round(v, 4)
                            for v in (ci.lo, ci.hi)],
                     "key": r["key"], "setting": r["setting"], "n": ci.n,
                     "selected": None if s is None else getattr(s, "label", s)})
    return {
        "tune_seeds": len(tun.tune_seeds) if tun is not None else 0,
        "report_seeds": len(study.seeds),
        "data_resampled": study.data_resampled,
        "selection_metric": tun.metric if tun is not None else None,
        "problems": problems,
        "grid_edges_remaining": edges,
        "timing_repeats": study.timing_repeats,
        "references": refs,
    }


def _selected_of(plan, tun):
    """``"each of N conditions"``, or ``"K of the N conditions (...)"`` while some are not
    selected."""
    k, n = len(plan.selected), len(tun.conditions)
    if k == n:
        return f"each of {n} conditions"
    return f"{k} of the {n} conditions (the others' tuning is incomplete)"


def _fmt_point(point):
    return ", ".join(f"{k}={fmt(v, 3)}" for k, v in point.items()) or "(not tuned)"


def _protocol_text(study, results, proto):
    """The protocol in one paragraph, the selection table and the flagged edges."""
    tun, plan = study.tuning, results.plan
    sizes = "; ".join(f"{k}: {v['n_train']}/{v['n_val']}/{v['n_test']} train/val/test, "
                      f"{v['epochs']} epochs" for k, v in proto["problems"].items())
    data = "each seed draws its own data and split" if proto["data_resampled"] else \
        "one fixed data draw"
    if tun is None:
        text = (f"**Protocol.** {len(study.settings)} settings x {len(study.seeds)} seeds, "
                f"{data}; {sizes}. No tuning stage: every setting is reported on every seed.")
        return text
    text = (f"**Protocol.** Tuning: {len(plan.tuning_settings)} grid points x "
            f"{len(tun.tune_seeds)} tuning seeds, selected on the mean `{tun.metric}` "
            f"({'highest' if tun.maximize else 'lowest'}; a point that diverged on any tuning "
            f"seed loses), grids extended up to {tun.max_extensions} steps beyond an edge. "
            f"Report: the selected point of {_selected_of(plan, tun)} on "
            f"{len(study.seeds)} fresh seeds; {data}; {sizes}. Test metrics are given for the "
            "final network (`test_*`) and for the network of the best validation epoch "
            "(`es_test_*`, early stopping); each claim says which.")
    if study.timing_repeats:
        text += (f" Times: each selected setting trained alone {study.timing_repeats} times "
                 "(one thread, nothing else of the study running); time-based comparisons use "
                 "those medians.")
    rows = []
    for c in plan.choices:
        ext = "; ".join(f"{k}: +{', '.join(fmt(v, 3) for v in vs)}"
                        for k, vs in c.extended.items() if vs) or "-"
        if c.setting is not None:
            chosen = _fmt_point(c.point)
        elif c.failed:
            chosen = "tuning incomplete: a tuning run failed (see Failed runs)"
        else:
            chosen = "tuning incomplete"
        rows.append([", ".join(f"{k}={v}" for k, v in c.condition.items()), chosen, ext])
    text += "\n\n" + md_table(["condition", "selected", "grid extended"], rows)
    edges = proto["grid_edges_remaining"]
    if edges:
        text += "\n\n**Grid edges that remain** (the selected value is at the edge of what was " \
                "tried; the optimum may lie beyond):\n" + "\n".join(
                    f"- {', '.join(f'{k}={v}' for k, v in e['condition'].items())}: "
                    f"{e['axis']} = {fmt(e['value'], 3)} at the {e['side']} edge "
                    f"({e['reason']})" for e in edges)
    elif plan.complete:
        text += "\n\nNo selected value remains at the edge of its grid."
    return text


def _tuning_failed(results):
    n = len(results.tuning.errors()) if results.tuning is not None else 0
    return f" (and {n} tuning run{'s' if n > 1 else ''} failed)" if n else ""


def write_report(study, results, out_root, command):
    """Write ``<out_root>/<study>/README.md`` (+ figures) and ``summary.json``; return the dir."""
    directory = Path(out_root) / study.name
    directory.mkdir(parents=True, exist_ok=True)
    report = Report(directory, results)
    counts = results.counts()
    failure = directory / "ANALYSIS_FAILED"
    failure.unlink(missing_ok=True)
    if counts["ok"] + counts["diverged"]:
        try:
            (study.analysis or default_analysis)(results, report)
        except OSError:  # a figure could not be written (full disk, unwritable --out)
            pyplot().close("all")
            raise
        except Exception as exc:
            # The runs are safe in the store; keep the generic parts of the report and say so.
            failure.write_text(traceback.format_exc())
            pyplot().close("all")
            report.conclusions = [f"**The analysis failed** ({type(exc).__name__}: {exc}); "
                                  "the tables below come from the store."]
    else:
        report.conclusion("No completed runs yet: nothing to conclude.")

    total = sum(counts.values())
    proto = protocol(results.study, results)
    parts = [f"# {study.title}"]
    if report.claims:
        parts.append("**Claim.** " + " ".join(report.claims))
    parts += [_protocol_text(results.study, results, proto),
              f"**Question.** {study.question.strip()}",
             f"Profile `{study.profile}`: {counts['ok']} of {total} runs ok, "
             f"{counts['diverged']} diverged, {counts['failed']} failed, "
             f"{counts['missing']} missing{_tuning_failed(results)}.",
             "## Setup", _setup(results.study)]
    if report.parts:
        parts += ["## Results", *report.parts]
    head, rows = settings_table(results)
    parts += ["## All settings",
              "Mean over seeds with its 95% Student-t confidence interval, clipped to the range "
              "of the quantity (ok runs; diverged runs are counted, not averaged). Accuracies "
              "are fractions; `train s` is the training time of one run (its share when "
              "trained in a population; compilation excluded).",
              md_table(head, rows)]
    parts += ["## Conclusion", "\n\n".join(report.conclusions) or "No conclusion was drawn."]
    diverged = results.diverged()
    if diverged:
        lines = [f"- `{lab}`, seed {seed}: loss became non-finite in epoch {ep}; training "
                 "stopped there (the run is kept, counted, and left out of the averages)"
                 for lab, seed, ep in diverged[:10]]
        if len(diverged) > 10:
            lines.append(f"- ... and {len(diverged) - 10} more")
        parts += ["## Diverged runs", "\n".join(lines)]
    errors = [(lab, f"seed {seed}", err) for lab, seed, err in results.errors()]
    if results.tuning is not None:
        errors += [(lab, f"tuning seed {seed}", err) for lab, seed, err in results.tuning.errors()]
    if errors:
        lines = [f"- `{lab}`, {seed}: {err}" for lab, seed, err in errors[:10]]
        if len(errors) > 10:
            lines.append(f"- ... and {len(errors) - 10} more")
        parts += ["## Failed runs",
                  "An error stopped these runs (a bug or a fault of the machine, not a "
                  "divergence); they are left out of every number above, and `dlbasics run` "
                  "runs them again. While a tuning run fails, its condition is not selected "
                  "and has no report runs.",
                  "\n".join(lines)]
    parts += ["## Reproduce", f"```\n{command}\n```",
              "Runs already in the results store are not run again (but for failed ones); "
              "add `--fresh` to redo them. `dlbasics report` rewrites this page from the "
              "store.",
              "## Machine and versions", _provenance(results)]
    (directory / "README.md").write_text("\n\n".join(parts) + "\n")
    summary = {
        "name": study.name, "title": study.title, "question": study.question.strip(),
        "profile": study.profile, "counts": counts, "figures": report.figures,
        "run_seconds": round(run_time(results)[1], 1),
        "conclusion": report.conclusions, "claim": report.claims, "protocol": proto,
        "command": command,
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return directory


class NoReport(str):
    """Why :func:`report_from_store` wrote no report (the text, after the study's name);
    ``failed``: because failed tuning runs left nothing selected (the command then exits 1;
    a report written with some conditions blocked, or with failed report runs, lists them and
    does not fail the command)."""

    failed = False

    def __new__(cls, text, failed=False):
        out = super().__new__(cls, text)
        out.failed = failed
        return out

    def __reduce__(self):  # pickled whole (from a worker process)
        return (NoReport, (str(self), self.failed))


def report_from_store(name, profile, seeds, backend, store, out_root, command):
    """Write the report of study ``name`` from a results store (:func:`write_report`), from
    arguments that pickle, so that a worker process can write it.

    The study is built again from the registry; its analysis runs on one Numba and one BLAS
    thread (:func:`~dlbasics.studies.runner.one_compute_thread`), in this process as in a
    worker, so the numbers and figures of a report do not depend on where it was written or on
    the machine's cores (with two or more Numba threads a gradient over many rows is summed in
    two row chunks, in one pass on one thread).

    Parameters
    ----------
    name : str
        A registered study (in a worker: one that its registry finds, see
        :func:`~dlbasics.studies.registry.discoverable`).
    profile : {"quick", "full"}
    seeds : int or None
        As ``--seeds`` gives it: the study's own seeds where ``None``.
    backend : str
        The backend whose runs are reported.
    store : Store or str
        An open store, or the path of one that another process has open (read through
        :meth:`~dlbasics.studies.store.Store.reader`).
    out_root : str or Path
        The reports' directory; the report goes to ``out_root/name``.
    command : str
        The command line that regenerates the report (written into it).

    Returns
    -------
    tuple of (pathlib.Path, bool) or NoReport
        The report's directory and whether its analysis failed (``ANALYSIS_FAILED`` written);
        a :class:`NoReport` saying why where nothing was written: the store holds no runs of
        the study's report stage, or no condition of a tuned study is selected yet (its
        tuning unfinished, or blocked by failed runs).

    Raises
    ------
    StoreUnavailable
        The store could not be read (a fault of the machine).
    OSError
        Any other: the report could not be written (the store is untouched).
    """
    from . import registry
    from .results import Results
    from .runner import one_compute_thread
    from .store import Store

    study = registry.get(name, profile).with_seeds(seeds)
    if isinstance(store, Store):
        results = Results.load(study, store, backend)
    else:
        with Store.reader(store) as reader:
            results = Results.load(study, reader, backend)
    path = store.path if isinstance(store, Store) else store
    if study.tuning is not None and not results.plan.selected:
        # nothing to report (Results.load would fall back to the declared settings)
        failed = len(results.tuning.errors())
        if failed:
            return NoReport(f"no report: no condition is selected yet, {failed} of its tuning "
                            f"runs in {path} failed (`dlbasics export` lists their errors); "
                            "run it again to run them again", failed=True)
        if results.tuning.rows():
            return NoReport(f"its tuning is not finished in {path}, no report (run it to "
                            "finish)")
        return NoReport(f"no runs in {path}, no report (run it first)")
    if not results.rows():
        return NoReport(f"no runs of its report stage in {path}, no report (run it first)")
    with one_compute_thread():
        d = write_report(study, results, out_root, command)
    return d, (d / "ANALYSIS_FAILED").exists()


def write_index(out_root):
    """Write ``<out_root>/README.md`` listing every study report found under it."""
    out_root = Path(out_root)
    entries = []
    for sub in sorted(p for p in out_root.iterdir() if p.is_dir()) if out_root.is_dir() else []:
        if (sub / "summary.json").exists():
            try:
                entries.append(json.loads((sub / "summary.json").read_text()))
                continue
            except (OSError, ValueError):
                pass
        readme = sub / "README.md"
        if sub.name != "quick" and readme.exists():  # e.g. the speed benchmark's report
            lines = readme.read_text().splitlines()
            title = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), sub.name)
            entries.append({"name": sub.name, "title": title, "question": ""})
    lines = ["# Studies", "",
             "Each study asks one question of the lecture notes and answers it with runs over "
             "a grid and several seeds; its page has the setup, figures, tables, conclusion and "
             "the command that regenerates it.", ""]
    rows = []
    for e in entries:
        c = e.get("counts")
        first = (e.get("claim") or e.get("conclusion") or [""])[0].split("\n")[0]
        if not e.get("claim"):
            first = first.split(". ")[0].rstrip(".") + "." if first else ""
        runs = f"{c.get('ok', 0)}/{sum(c.values())}" if c else "-"
        secs = e.get("run_seconds")
        rows.append([f"[{e['title']}]({e['name']}/README.md)", e.get("question", ""), runs,
                     f"{secs / 60:.1f} min" if secs is not None else "-", first])
    lines.append(md_table(["study", "question", "runs ok", "run time", "headline claim"], rows)
                 if rows else "No study reports yet.")
    total = sum(e.get("run_seconds") or 0.0 for e in entries)
    if total:
        lines += ["", f"Run time of the studies above, added up: {total / 60:.1f} min "
                      "(each study's wall clock while its runs were running; studies that ran "
                      "side by side count twice, so this is an upper bound)."]
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "README.md").write_text("\n".join(lines) + "\n")
    return out_root / "README.md"
