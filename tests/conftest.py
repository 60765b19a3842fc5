import numpy as np
import pytest

DTYPES = (np.float32, np.float64)


def rtol_for(dtype):
    """Comparison tolerance for results of a kernel against the float64 reference."""
    return 2e-5 if np.dtype(dtype) == np.float32 else 1e-12


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
