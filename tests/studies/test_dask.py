"""Dask executors: a LocalCluster run equals the local one; a killed worker loses nothing."""

import os
import signal
import threading
import time

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


def test_dask_worker_killed_mid_study_still_finishes(tmp_path, slow_reference, monkeypatch):
    monkeypatch.setenv("DLBASICS_SLOW_EPOCHS", SLOW_EPOCHS)
    study = registry.get("slow_demo", "quick")
    path = tmp_path / "k.sqlite"
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    out = {}

    def work():
        try:
            with Store(path) as store:
                ex = DaskExecutor(cluster.scheduler_address)
                try:
                    out["counts"] = run_study(study, store, ex, progress=False)
                finally:
                    ex.close()
        except BaseException as exc:  # reported by the main thread
            out["error"] = exc

    try:
        pids = client.run(os.getpid)
        thread = threading.Thread(target=work)
        thread.start()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and thread.is_alive() and _count(path) < 1:
            time.sleep(0.01)
        n_killed = _count(path)
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive()
        assert "error" not in out, out.get("error")
        assert n_killed < len(slow_reference), "the worker was killed after the study ended"
        assert out["counts"]["failed"] == 0
        assert stored(path, "slow_demo") == slow_reference
    finally:
        client.close()
        cluster.close()
