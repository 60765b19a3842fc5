"""Machinery for property-based tests of public entry points.

An entry point is described by a builder that draws *valid* arguments, the names of its
arguments, and a checker that verifies a successful result against ``tests/naive.py``. A test
draws valid arguments, then (usually) corrupts one of them with a mutation: wrong or mixed
dtype, wrong shape, non-contiguous or empty array, NaN/inf, a list, None, an out-of-range or
huge scalar. The call must then either succeed *and* pass the checker, or raise
``ValueError``/``TypeError`` whose message names one of the arguments (:func:`names_argument`).
A crash of the interpreter fails the whole run.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

ARRAY_MUTATIONS = (
    "int", "other_float", "complex", "bool", "list", "none", "ndim_up", "ndim_down", "grow",
    "shrink", "noncontig", "empty", "nan", "inf", "huge", "readonly",
)
SCALAR_MUTATIONS = ("zero", "negative", "huge", "nan", "inf", "string", "none", "array", "bool")


@dataclass
class Entry:
    """A public function under test."""

    name: str
    fn: object
    build: object  # draw -> dict of keyword arguments
    check: object  # (kwargs, result) -> None, asserts correctness
    arg_names: tuple
    also_named: tuple = field(default_factory=tuple)  # other words an error may name
    # (argument, mutation) -> the exact message of a known bug whose error names no argument
    # (each has a strict xfail test of the wanted behaviour beside the entry)
    known_unnamed: dict = field(default_factory=dict)


def names_argument(msg, names):
    """True when the error message ``msg`` names one of ``names``.

    A name counts only as a whole word (``seed`` is not named by ``seeds``, nor ``y`` by
    ``NoneType``). A one-letter name must in addition stand where a message names its
    subject: quoted (```x```, ``'x'``) or followed by a verb (``x must``, ``w has``, ``X
    contains``), so the article in "must be a float" does not name an argument ``a``.
    """
    for n in names:
        word = r"(?<![\w.])" + re.escape(n) + r"(?![\w])"
        if len(n) > 1:
            if re.search(word, msg):
                return True
        elif re.search(r"['`\"]" + re.escape(n) + r"['`\"]", msg) or re.search(
            word + r"\s+(must|has|have|contains|is|are|does|and|or)\b", msg
        ):
            return True
    return False


def mutate_array(a, kind, rng):
    if kind == "int":
        return np.round(a).astype(np.int64)
    if kind == "other_float":
        return a.astype(np.float32 if a.dtype == np.float64 else np.float64)
    if kind == "complex":
        return a.astype(np.complex128)
    if kind == "bool":
        return a > 0
    if kind == "list":
        return a.tolist()
    if kind == "none":
        return None
    if kind == "ndim_up":
        return a[None]
    if kind == "ndim_down":  # one fewer dimension (an empty 1-D array becomes an empty scalar)
        if a.ndim == 1:
            return a.ravel()[:1].reshape(()) if a.size else np.array(np.nan, dtype=a.dtype)
        return a[0] if a.shape[0] else np.full(a.shape[1:], np.nan, dtype=a.dtype)
    if kind == "grow":
        return np.concatenate([a, a[..., :1]], axis=-1) if a.ndim else a
    if kind == "shrink":
        return a[..., :-1] if a.ndim and a.shape[-1] > 0 else a
    if kind == "noncontig":
        wide = np.repeat(a, 2, axis=-1) if a.ndim else a
        return wide[..., ::2] if a.ndim else a
    if kind == "empty":
        return a[..., :0] if a.ndim else a
    if kind in ("nan", "inf", "huge"):
        b = np.array(a, dtype=a.dtype if a.dtype.kind == "f" else np.float64)
        if b.size:
            idx = tuple(rng.integers(0, s) for s in b.shape)
            b[idx] = {"nan": np.nan, "inf": -np.inf, "huge": 1e30}[kind]
        return b
    if kind == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    raise ValueError(kind)


def mutate_scalar(v, kind):
    return {"zero": 0, "negative": -abs(v) - 1 if isinstance(v, numbers.Number) else -1,
            "huge": 1e300, "nan": float("nan"), "inf": float("inf"), "string": "1",
            "none": None, "array": np.array([v, v]), "bool": True}[kind]


def draw_mutated(draw, entry):
    """Valid kwargs of ``entry`` with (most of the time) one argument corrupted."""
    kwargs = entry.build(draw)
    target = draw(st.sampled_from((None,) + tuple(k for k in entry.arg_names if k in kwargs)))
    if target is None:
        return kwargs, None
    value = kwargs[target]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if isinstance(value, np.ndarray):
        kind = draw(st.sampled_from(ARRAY_MUTATIONS))
        kwargs[target] = mutate_array(value, kind, rng)
    elif isinstance(value, (numbers.Number, str)) or value is None:
        kind = draw(st.sampled_from(SCALAR_MUTATIONS))
        kwargs[target] = mutate_scalar(value if value is not None else 1, kind)
    else:
        kind = "none"
        kwargs[target] = None
    return kwargs, (target, kind)


def run_entry(entry, kwargs, mutation):
    """Call the entry point and apply the contract; returns ``"ok"`` or ``"rejected"``."""
    snapshot = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    try:
        result = entry.fn(**kwargs)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        if mutation is not None and mutation in entry.known_unnamed:
            assert msg == entry.known_unnamed[mutation], msg
            return "rejected"
        assert names_argument(msg, entry.arg_names + entry.also_named), (
            f"{entry.name}: error does not name an argument ({mutation}): {msg!r}"
        )
        return "rejected"
    with np.errstate(all="ignore"):  # the float64 references may meet NaN/inf inputs
        entry.check(snapshot, result)
    return "ok"


def floats(draw, shape, dtype, scale=2.0):
    seed = draw(st.integers(0, 2**32 - 1))
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(dtype)


def dims(draw, low=1, high=6):
    return draw(st.integers(low, high))


def dtype_of(draw):
    return draw(st.sampled_from((np.float32, np.float64)))


def close(actual, expected, dtype):
    tol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                               rtol=tol, atol=tol, equal_nan=True)
