"""Dask executors: a LocalCluster run equals the local one; a killed worker loses nothing."""

import os
import signal
import threading

import pytest

from dlbasics.studies import registry
from dlbasics.studies.cli import main
from dlbasics.studies.runner import DaskExecutor, run_study
from dlbasics.studies.store import Store

from .conftest import SLOW_EPOCHS, stored
from .test_end_to_end import _count

distributed = pytest.importorskip("distributed")


def test_dask_local_cluster_equals_local_run(tmp_path, gd_reference):
    store = tmp_path / "d.sqlite"
    argv = ["run", "gd_demo", "--scheduler", "local", "--jobs", "2", "--store", str(store),
            "--no-report", "--quiet"]
    assert main(argv) == 0
    assert stored(store, "gd_demo") == gd_reference


class _HeldStore(Store):
    """A store that, once it holds one run, stops the next write until the test says go."""

    def __init__(self, path, held, go):
        super().__init__(path)
        self.held, self.go = held, go

    def put(self, row):
        if self.count() and not self.go.is_set():
            self.held.set()
            assert self.go.wait(timeout=300), "the test never opened the gate"
        super().put(row)


def test_dask_worker_killed_mid_study_still_finishes(tmp_path, slow_reference, monkeypatch):
    """Kill a worker while the client holds one stored run and the rest are running, queued or
    waiting in worker memory (the client is held at a gate: no race with the study's speed)."""
    monkeypatch.setenv("DLBASICS_SLOW_EPOCHS", SLOW_EPOCHS)
    study = registry.get("slow_demo", "quick")
    path = tmp_path / "k.sqlite"
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    out = {}
    held, go = threading.Event(), threading.Event()

    def work():
        try:
            with _HeldStore(path, held, go) as store:
                ex = DaskExecutor(cluster.scheduler_address)
                try:
                    out["counts"] = run_study(study, store, ex, progress=False)
                finally:
                    ex.close()
        except BaseException as exc:  # reported by the main thread
            out["error"] = exc
        finally:
            held.set()  # never leave the main thread waiting

    try:
        pids = client.run(os.getpid)
        thread = threading.Thread(target=work)
        thread.start()
        assert held.wait(timeout=300), "no run was stored"
        assert "error" not in out, out.get("error")
        assert _count(path) == 1
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        go.set()
        thread.join(timeout=300)
        assert not thread.is_alive()
        assert "error" not in out, out.get("error")
        assert out["counts"]["failed"] == 0
        assert stored(path, "slow_demo") == slow_reference
    finally:
        go.set()
        client.close()
        cluster.close()
