"""Coefficients of the rational ``tanh`` of ``dlbasics.kernels.vecmath.tanh_fast``.

Fits :math:`\\tanh x \\approx x\\,P(s)/Q(s)`, :math:`s = x^2`, with ``P`` of degree 6 and ``Q`` of
degree 3 (``Q(0) = 1``), for the smallest largest *relative* error on ``[0, A]``, ``A = 9.25``
(beyond about 9.011 the float32 ``tanh`` is 1; the fit runs a little further, so that its value at
``A``, where ``tanh_fast`` clamps, rounds to 1), by Lawson's iteratively reweighted least squares on
the linearised error :math:`(x P(s) - t\\,Q(s)) / t` over a dense grid (uniform on ``[0, A]``,
geometric towards 0): each pass solves the weighted least-squares problem and then multiplies every
point's weight by its error, which drives the solution towards the minimax (equal-ripple) one. The
fit works in ``u = s / A^2`` (a well-conditioned basis on ``[0, 1]``) and converts to powers of
``s`` at the end. It prints the largest relative error on the grid and the coefficients as
``vecmath`` holds them (float64 reprs).

Run: ``.venv/bin/python scripts/fit_tanh.py`` (a second, deterministic).
"""

from __future__ import annotations

import numpy as np

#: End of the fitted range (``vecmath.TANH_FAST_CLAMP``).
A = 9.25
N_P, N_Q = 7, 4  # coefficients of P (s^0..s^6) and of Q (s^0..s^3, Q(0) = 1)
PASSES = 60


def fit(a=A, n_p=N_P, n_q=N_Q, passes=PASSES):
    """``(P, Q, max_rel_err)``: coefficients in powers of ``s = x^2``, lowest first."""
    x = np.concatenate([np.linspace(1e-4, a, 20000), np.geomspace(1e-6, 1.0, 2000)])
    x.sort()
    t = np.tanh(x)
    u = (x / a) ** 2
    vp = np.vstack([x * u**k for k in range(n_p)]).T
    vq = np.vstack([u**k for k in range(1, n_q)]).T
    w = np.full_like(x, 1.0 / x.size)
    q = np.ones_like(x)
    for _ in range(passes):
        # the error of the last pass's Q scales the linearised residual towards the true one
        m = np.hstack([vp, -t[:, None] * vq]) / (t * q)[:, None]
        rhs = 1.0 / q
        sw = np.sqrt(w)
        c = np.linalg.lstsq(m * sw[:, None], rhs * sw, rcond=None)[0]
        p, qq = c[:n_p], c[n_p:]
        q = 1.0 + vq @ qq
        err = (vp @ p) / q / t - 1.0
        w = w * np.abs(err)
        w /= w.sum()
    P = [float(p[k] / a ** (2 * k)) for k in range(n_p)]
    Q = [1.0] + [float(qq[k - 1] / a ** (2 * k)) for k in range(1, n_q)]
    return P, Q, float(np.abs(err).max())


def main():
    P, Q, e = fit()
    print(f"largest relative error on the grid: {e:.3g}")
    print("P =", ", ".join(repr(c) for c in P))
    print("Q =", ", ".join(repr(c) for c in Q))


if __name__ == "__main__":
    main()
