"""The speed study (``dlbasics bench``): our backends against PyTorch, JAX and scikit-learn.

:mod:`.bench` is the driver (``python -m dlbasics.studies.speed``): it starts one worker process
per framework (``python -m dlbasics.studies.speed.worker SPEC OUT``), so that no two thread
pools (NumPy's OpenBLAS, SciPy's OpenBLAS used by Numba's ``np.dot``, PyTorch's, XLA's) ever
run side by side, and writes the report with :mod:`.report`. Every other module runs inside a
worker; of them the driver imports :mod:`.common` (NumPy alone) and, for :mod:`.limits`'
cross-core probe (:func:`~.limits.core_latency_ns`: two threads of ours in a compiled loop,
about 30 to 200 ms before and after each worker, while no worker runs), Numba and
:mod:`dlbasics.models`, whose thread pools stay idle in it.
:mod:`.compile_profile` stands apart: where a first call's compile time goes, per function;
:mod:`.phases` (where the time of our step goes, phase by phase) runs in a process of its own
that the driver starts, as :mod:`.sklearn_fit` does.

The driver's names (``main``, ``run``, ``analyse``, ``train_step_flops``, ...) are reachable here
too; they are imported on first use, so that a worker does not import the driver.
"""


#: The modules of this package (``from . import report`` must find them, not the driver's names).
_SUBMODULES = frozenset({"_handoff", "bench", "common", "compile_profile", "limits", "ours",
                         "peer_jax", "peer_sklearn", "peer_torch", "phases", "report",
                         "scaling", "sklearn_fit", "worker"})


def __getattr__(name):
    if name in _SUBMODULES or name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    bench = importlib.import_module(f"{__name__}.bench")
    try:
        return getattr(bench, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
