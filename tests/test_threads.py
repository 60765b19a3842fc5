"""Blocks of work on Python threads (dlbasics.models._threads): every item once, errors raised,
threads joined; population training gives the same bits for any thread count."""

import threading
import time

import numba
import numpy as np
import pytest

from dlbasics.models import MLP, SGD, Adam, _threads, train_population
from dlbasics.models._threads import run_blocks


@pytest.mark.parametrize("n", [0, 1, 2, 5, 8])
@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_blocks_cover_every_item_once_in_contiguous_blocks(n, threads):
    seen, lock = [], threading.Lock()

    def fn(start, stop, tag):
        assert tag == "x"
        with lock:
            seen.append((start, stop, threading.get_ident()))

    run_blocks(fn, n, "x", threads=threads)
    blocks = sorted((a, b) for a, b, _ in seen)
    T = max(min(threads, n), 1)
    assert len(blocks) == T
    assert [b - a for a, b in blocks] == [(t + 1) * n // T - t * n // T for t in range(T)]
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(blocks[t][1] == blocks[t + 1][0] for t in range(T - 1))
    first = [ident for a, _, ident in seen if a == 0]
    assert first == [threading.get_ident()]  # block 0 in the calling thread


def test_blocks_default_to_numbas_thread_count(monkeypatch):
    monkeypatch.setattr(numba, "get_num_threads", lambda: 3)
    seen = []
    run_blocks(lambda a, b: seen.append((a, b)), 9)
    assert sorted(seen) == [(0, 3), (3, 6), (6, 9)]


def test_blocks_raise_the_error_of_another_thread():
    def fn(start, stop):
        if start > 0:
            raise RuntimeError(f"block at {start}")

    with pytest.raises(RuntimeError, match="block at 2"):
        run_blocks(fn, 4, threads=2)


@pytest.mark.timeout(60, method="thread")
@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_abort_releases_blocks_that_wait_for_the_first(error):
    """Blocks that wait for the calling thread's block: where that block ends in an error or
    an interrupt, ``abort`` runs (once, before the join) and releases them, and the error is
    raised after they have returned; a call that ends well never aborts."""
    go, done, aborts = threading.Event(), [], []

    def fn(start, stop, fail):
        if start == 0:
            if fail:
                raise error("first block")
            go.set()
        else:
            go.wait()
            done.append(start)

    with pytest.raises(error, match="first block"):
        run_blocks(fn, 3, True, threads=3, abort=lambda: (aborts.append(1), go.set()))
    assert aborts == [1] and sorted(done) == [1, 2]
    go.clear()
    done.clear()
    run_blocks(fn, 3, False, threads=3, abort=lambda: aborts.append(2))
    assert aborts == [1] and sorted(done) == [1, 2]


@pytest.mark.parametrize("dropout", [False, True])
def test_per_network_population_equal_for_any_thread_count(monkeypatch, dropout):
    """The per-network path (mixed optimizers; with dropout) gives the same bits whether
    ``train_population`` sees one thread (the serial loop) or several (the ``prange``)."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)
    template = MLP([3, 8, 1], activation="tanh", output="sigmoid", seed=0,
                   keep_prob=[0.8, 1.0] if dropout else None)
    opts = [SGD(0.1), Adam(0.01)] * 3
    results = []
    for threads in (1, 2, 3, 4):
        monkeypatch.setattr(numba, "get_num_threads", lambda t=threads: t)
        hists, P = train_population(template, X, y, opts, seeds=list(range(6)), batch_size=4,
                                    epochs=2, shuffle_seeds=[1, 2, 3, 4, 5, 6], lanes=False)
        results.append((P, [h.train_loss for h in hists]))
    for P, losses in results[1:]:
        assert np.array_equal(P, results[0][0]) and losses == results[0][1]
    assert len({tuple(loss) for loss in results[0][1]}) == 6  # six different networks


def test_an_interrupt_while_joining_waits_for_every_thread(monkeypatch):
    """An interrupt that lands while the calling thread waits for the others is raised only
    after they have all finished (none may write the caller's arrays after the return)."""
    done, calls = [], []
    real = _threads._wait_one

    def interrupted_once(future):
        calls.append(future)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real(future)

    def fn(start, stop):
        if start > 0:
            time.sleep(0.3)
        done.append(start)

    monkeypatch.setattr(_threads, "_wait_one", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        run_blocks(fn, 3, threads=3)
    assert sorted(done) == [0, 1, 2] and len(calls) >= 3


def test_pools_survive_other_sizes_and_callers():
    """Callers with different thread counts at once: no pool is shut down under another."""
    results, errors = [], []

    def fn(start, stop, out):
        out.extend(range(start, stop))

    def caller(threads):
        try:
            for _ in range(50):
                out = []
                run_blocks(fn, 6, out, threads=threads)
                results.append(sorted(out) == list(range(6)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=caller, args=(t,)) for t in (2, 3, 4, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors and len(results) == 200 and all(results)

