import numpy as np
import pytest

DTYPES = (np.float32, np.float64)


def rtol_for(dtype):
    """Comparison tolerance for results of a kernel against the float64 reference."""
    return 2e-5 if np.dtype(dtype) == np.float32 else 1e-12


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def interrupt_first_block(monkeypatch):
    """``install(name)`` replaces the block worker ``dlbasics.models._core.<name>`` (what
    ``run_blocks`` runs on each thread) by one that raises ``KeyboardInterrupt`` in block 0,
    Ctrl-C in the calling thread before its block starts, and runs the real worker in the
    others; it returns the list of the blocks that ran to the end."""
    from dlbasics.models import _core

    def install(name):
        real = getattr(_core, name)
        ran = []

        def worker(first, last, *args):
            if first == 0:
                raise KeyboardInterrupt
            real(first, last, *args)
            ran.append(first)

        monkeypatch.setattr(_core, name, worker)
        return ran

    return install
