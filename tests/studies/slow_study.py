"""A test-only study whose runs take long enough to interrupt (registered via DLBASICS_STUDIES).

Six settings, each its own group (distinct batch sizes); the odd ones carry a constant schedule
so they train alone (``dlbasics.models.train``), the even ones as populations.
``DLBASICS_SLOW_EPOCHS`` sets the epochs (default 150).

A gate the test controls, so that kill tests do not race the study: with
``DLBASICS_GATE=FIFO`` and ``DLBASICS_GATE_AT=N`` in the environment of the process that writes
the store (the ``dlbasics`` command), :meth:`Store.put` stops before the store would hold more
than ``N`` rows, writes one line to the named pipe ``FIFO`` (see :func:`wait_for_gate`) and waits
there until the process is killed. The test reads that line: at that moment exactly ``N`` runs
are stored, and the study cannot finish, however fast or loaded the machine is.
"""

import os
import select
import threading
import time

from dlbasics.studies.registry import register
from dlbasics.studies.spec import Setting, Study
from dlbasics.studies.store import Store


@register("slow_demo")
def make(profile):
    epochs = int(os.environ.get("DLBASICS_SLOW_EPOCHS", "150"))
    settings = []
    for i, batch in enumerate((1, 2, 3, 4, 5, 6)):
        schedule = {"name": "constant"} if i % 2 else None
        settings.append(Setting(
            problem="moons", problem_args={"n": 200}, model={"hidden": [16, 16]},
            optimizer="momentum" if i % 3 == 0 else "sgd", hyper={"lr": 0.05},
            batch_size=batch, epochs=epochs, schedule=schedule,
            factors={"batch": batch, "alone": bool(schedule)}))
    return Study("slow_demo", title="Slow demo (tests)", question="Does resuming work?",
                 settings=settings, seeds=[0, 1, 2])


def _install_gate(fifo, at):
    put = Store.put

    def gated_put(self, row):
        n = self.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        if n >= at:
            with open(fifo, "w") as f:  # blocks until the test has the pipe open
                f.write(f"held at {n}\n")
            threading.Event().wait()  # until killed
        put(self, row)

    Store.put = gated_put


if os.environ.get("DLBASICS_GATE"):
    _install_gate(os.environ["DLBASICS_GATE"], int(os.environ.get("DLBASICS_GATE_AT", "0")))


def gate_env(tmp_path, at):
    """``(environment variables, fifo)`` of a study process held before row ``at + 1``."""
    fifo = tmp_path / f"gate-{at}"
    if not fifo.exists():
        os.mkfifo(fifo)
    return {"DLBASICS_GATE": str(fifo), "DLBASICS_GATE_AT": str(at)}, fifo


def wait_for_gate(fifo, proc, timeout=300.0):
    """Wait until ``proc`` is held at the gate ``fifo``; return the line it wrote.

    Fails if ``proc`` ends first (it then never reached the gate) or after ``timeout`` s.
    """
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so the writer's open succeeds
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                data = b""
                while not data.endswith(b"\n"):
                    select.select([fd], [], [], 5.0)
                    chunk = os.read(fd, 100)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    return data.decode().strip()
            if proc.poll() is not None:
                raise AssertionError(f"the study ended (status {proc.returncode}) before "
                                     "reaching the gate")
        raise AssertionError(f"the study did not reach the gate in {timeout:g} s")
    finally:
        os.close(fd)
