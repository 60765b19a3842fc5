"""The compile-time profile of the speed study (dlbasics.studies.speed.compile_profile)."""

import pytest
from numba import njit
from numba.core.event import Event, EventStatus

from dlbasics.studies.speed.compile_profile import compile_records, profile_call


class _Disp:
    def __init__(self, name):
        def f():
            pass

        f.__qualname__ = name
        self.py_func = f


def _ev(name, start):
    status = EventStatus.START if start else EventStatus.END
    return Event("numba:compile", status, data={"dispatcher": _Disp(name)})


def test_records_nest_with_exclusive_times():
    # outer [0, 10] holds a [1, 4] (which holds b [2, 3]) and c [5, 9]
    events = [(0.0, _ev("outer", True)), (1.0, _ev("a", True)), (2.0, _ev("b", True)),
              (3.0, _ev("b", False)), (4.0, _ev("a", False)), (5.0, _ev("c", True)),
              (9.0, _ev("c", False)), (10.0, _ev("outer", False))]
    recs = {r["name"].split(".")[-1]: r for r in compile_records(events)}
    assert recs["outer"]["inclusive_s"] == 10.0 and recs["outer"]["exclusive_s"] == 3.0
    assert recs["a"]["inclusive_s"] == 3.0 and recs["a"]["exclusive_s"] == 2.0
    assert recs["b"]["exclusive_s"] == 1.0 and recs["c"]["exclusive_s"] == 4.0
    assert [recs[k]["depth"] for k in ("outer", "a", "b", "c")] == [0, 1, 2, 1]
    assert sum(r["exclusive_s"] for r in recs.values()) == 10.0


def test_records_refuse_events_that_do_not_nest():
    with pytest.raises(ValueError, match="without its start"):
        compile_records([(0.0, _ev("a", False))])
    with pytest.raises(ValueError, match="left open"):
        compile_records([(0.0, _ev("a", True))])


def test_profile_call_sees_a_first_compile_and_not_a_second():
    @njit
    def inner(x):
        return x * 2.0

    @njit
    def outer(x):
        return inner(x) + 1.0

    result, wall, recs = profile_call(outer, 3.0)
    assert result == 7.0 and wall > 0
    names = [r["name"] for r in recs]
    assert any(n.endswith("outer") for n in names) and any(n.endswith("inner") for n in names)
    top = next(r for r in recs if r["name"].endswith("outer"))
    assert top["depth"] == 0 and 0 < top["exclusive_s"] <= top["inclusive_s"] <= wall
    _, _, again = profile_call(outer, 4.0)  # compiled: nothing to record
    assert again == []


def test_profile_call_reads_events_and_wall_time_from_one_clock(monkeypatch):
    # Numba's own recorder stamps events with time.time while the wall time is perf_counter's:
    # CI once saw a compile 0.4 ms longer than its call. A clock that ticks once a read shows
    # that both come from the module's perf_counter.
    from types import SimpleNamespace

    import dlbasics.studies.speed.compile_profile as cp

    ticks = iter(range(1000))
    monkeypatch.setattr(cp, "time", SimpleNamespace(perf_counter=lambda: float(next(ticks))))

    @njit
    def inner(x):
        return x - 1.0

    @njit
    def outer(x):
        return inner(x) * 3.0

    result, wall, recs = cp.profile_call(outer, 2.0)
    assert result == 3.0
    # reads 0, 1, ...: t0, a start and an end per compile, t1
    assert wall == 2 * len(recs) + 1 and len(recs) >= 2
    assert all(r["inclusive_s"] == int(r["inclusive_s"]) for r in recs)
    top = next(r for r in recs if r["name"].endswith("outer"))
    assert top["depth"] == 0 and top["inclusive_s"] == wall - 2  # from read 1 to read wall - 1


def test_section_lists_the_functions_with_the_most_exclusive_time_and_the_rest():
    from dlbasics.studies.speed.compile_profile import EARLIER, section

    recs = [{"name": f"dlbasics.kernels.m.f{i}", "exclusive_s": float(i), "inclusive_s": 2.0 * i,
             "depth": i % 3} for i in range(1, 13)]
    prof = {"net": "784-256-256-10", "batch": 32, "n": 2048, "dtype": "float32",
            "first_epoch_s": 80.5, "records": recs}
    text = section(prof, top=3)
    assert "took 80.50 s, 78.00 s of it compiling 12 specialisations" in text
    rows = [line for line in text.splitlines() if line.startswith("| m.f")]
    assert rows == ["| m.f12 | 12.00 | 24.00 | 0 |", "| m.f11 | 11.00 | 22.00 | 2 |",
                    "| m.f10 | 10.00 | 20.00 | 1 |"]
    assert "| all others (9) | 45.00 | | |" in text  # 1 + ... + 9
    for what, t, _ in EARLIER:
        assert f"{what}: {t:.2f} s" in text
    assert "not measured" in section(None) and "not measured" in section({"records": []})
