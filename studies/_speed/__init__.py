"""Helpers of :mod:`dlbasics.studies.speed`: the per-framework worker processes and the report.

Every module here except :mod:`.report` runs inside a worker process started by
:mod:`dlbasics.studies.speed` (``python -m dlbasics.studies._speed.worker SPEC OUT``), one process
per framework, so that no two thread pools (NumPy's OpenBLAS, SciPy's OpenBLAS used by Numba's
``np.dot``, PyTorch's, XLA's) ever run side by side. Only :mod:`.common` is imported by the parent;
it needs NumPy alone.
"""
