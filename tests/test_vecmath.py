"""The vectorisable float32 functions of dlbasics.kernels.vecmath against libm."""

import math
import re

import numpy as np
import pytest
from numba import njit

from dlbasics.kernels import vecmath as vm
from dlbasics.kernels.activations import sigmoid_vec
from dlbasics.kernels.losses import BCE_LOGITS
from dlbasics.kernels.vecmath import _exp_neg20, _recip_1_2, tanh, tanh_f64_eval
from dlbasics.models._lanes import _lane_slice, _loss_elementwise


@njit
def _tanh_array(x, out):
    for i in range(x.shape[0]):
        out[i] = tanh(x[i])


def _inputs():
    rng = np.random.default_rng(7)
    parts = [
        rng.normal(size=200_000),
        rng.normal(size=50_000) * 0.05,  # around the series/exponential switch
        rng.normal(size=50_000) * 1e-4,
        rng.uniform(-12, 12, 100_000),
        np.linspace(-0.06, 0.06, 20_001),
        np.array([0.05, -0.05, np.nextafter(0.05, 0), 9.01, 9.02, 10.0, 11.0, 1e-30, 1e-45,
                  3e38]),
    ]
    return np.concatenate(parts)


def test_float32_is_libm_rounded_but_for_rare_ties():
    x = _inputs().astype(np.float32)
    got = np.empty_like(x)
    _tanh_array(x, got)
    ref = np.array([math.tanh(float(v)) for v in x]).astype(np.float32)
    diff = got != ref
    # The float64 evaluation is within ~1e-12 of tanh, so only values within that distance of
    # a float32 rounding boundary can round the other way: a handful in 400k, and by one ulp.
    assert diff.sum() <= 10, diff.sum()
    ulps = np.abs(got.view(np.int32).astype(np.int64) - ref.view(np.int32).astype(np.int64))
    assert ulps.max() <= 1
    assert got.dtype == np.float32


def test_float32_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 20.0, -20.0, 1e-40], dtype=np.float32)
    got = np.empty_like(x)
    _tanh_array(x, got)
    assert got[0] == 0.0 and not np.signbit(got[0])
    assert got[1] == 0.0 and np.signbit(got[1])
    assert got[2] == 1.0 and got[3] == -1.0
    assert np.isnan(got[4])
    assert got[5] == 1.0 and got[6] == -1.0
    assert got[7] == np.float32(1e-40)


def test_float64_is_libm_exactly():
    x = _inputs()
    got = np.empty_like(x)
    _tanh_array(x, got)
    np.testing.assert_array_equal(got, np.array([math.tanh(v) for v in x]))


def test_python_call_is_libm():
    assert tanh(0.3) == math.tanh(0.3)


def test_exp_neg20():
    for y in np.linspace(-20.0, 0.0, 20_001):
        assert _exp_neg20(y) == pytest.approx(math.exp(y), rel=2e-13)


def test_f64_eval_accuracy_and_recip():
    for x in np.linspace(-10.0, 10.0, 40_001):
        t = math.tanh(x)
        assert abs(tanh_f64_eval(x) - t) <= 1e-12 * abs(t) + 1e-300
    for d in np.linspace(1.0, 2.0, 1001):
        assert _recip_1_2(d) == pytest.approx(1.0 / d, rel=1e-15)


# --- exp, log1p, sigmoid ----------------------------------------------------------------------
# The float32 forms evaluate in float64 and round once, so they are libm's float64 result
# rounded to float32 but where the exact value lies within the float64 error (below 1e-13
# relative) of a rounding boundary. scripts/vecmath_ulps.py --exhaustive measures every float32
# in each range; the counts there are the ones stated in dlbasics.kernels.vecmath.


@njit
def _exp_array(x, out):
    for i in range(x.shape[0]):
        out[i] = vm.exp(x[i])


@njit
def _log1p_array(x, out):
    for i in range(x.shape[0]):
        out[i] = vm.log1p(x[i])


@njit
def _sigmoid_array(x, out):
    for i in range(x.shape[0]):
        out[i] = vm.sigmoid(x[i])


def _sig_libm(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


_F32 = {  # kernel, float64 libm reference, bit-pattern range of the sample (see vecmath_ulps)
    "exp": (_exp_array, math.exp, (-104.0, 89.0)),
    "log1p": (_log1p_array, math.log1p, (-1.0, 3.4e38)),
    "sigmoid": (_sigmoid_array, _sig_libm, (-104.0, 18.0)),
}


def _sample(lo, hi, rng):
    """Float32 arguments in ``[lo, hi]``: uniform over bit patterns (every binade alike), uniform
    in value over the busiest part, and the ends."""
    pos = np.frombuffer(np.float32(hi).tobytes(), np.uint32)[0]
    neg = np.frombuffer(np.float32(-lo).tobytes(), np.uint32)[0]
    bits = np.concatenate([rng.integers(0, pos, 150_000, dtype=np.uint32),
                           rng.integers(0, neg, 150_000, dtype=np.uint32) | np.uint32(1 << 31)])
    x = np.concatenate([bits.view(np.float32), rng.uniform(max(lo, -20), min(hi, 20), 100_000),
                        [lo, hi, 0.0, -0.0]]).astype(np.float32)
    return x[x > -1] if lo == -1.0 else x


def _ulps(a, b):
    ka, kb = (v.view(np.int32).astype(np.int64) for v in (a, b))
    ka, kb = (np.where(k < 0, -(k & 0x7FFFFFFF), k) for k in (ka, kb))
    return np.abs(ka - kb)


@pytest.mark.parametrize("name", sorted(_F32))
def test_float32_exp_log1p_sigmoid_are_libm_rounded(name):
    kernel, ref_fn, (lo, hi) = _F32[name]
    x = _sample(lo, hi, np.random.default_rng(11))
    got = np.empty_like(x)
    kernel(x, got)
    with np.errstate(over="ignore"):
        ref = np.array([ref_fn(float(v)) for v in x]).astype(np.float32)
    assert got.dtype == np.float32
    # vecmath_ulps --exhaustive (every float32 of the range): exp 159 of 2.2e9 round the other
    # way, log1p 1 of 3.2e9, sigmoid 535 of 2.2e9, each by one ulp; about 0.1 expected here
    assert (got != ref).sum() <= 3, (got != ref).sum()
    assert _ulps(got, ref).max() <= 1


def test_float32_exp_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72, 88.73, 89.5, -103.9, -104.0,
                  -200.0, -87.0, 1e-40], dtype=np.float32)
    got = np.empty_like(x)
    _exp_array(x, got)
    assert got[0] == 1.0 and got[1] == 1.0
    assert got[2] == np.inf and got[3] == 0.0 and np.isnan(got[4])
    assert np.isfinite(got[5]) and got[5] == np.float32(math.exp(float(x[5])))
    assert got[6] == np.inf and got[7] == np.inf
    assert got[8] == np.float32(math.exp(float(x[8]))) > 0  # subnormal
    assert got[9] == 0.0 and got[10] == 0.0
    assert got[11] == np.float32(math.exp(-87.0))
    assert got[12] == 1.0


def test_float32_log1p_special_values():
    big = np.finfo(np.float32).max
    x = np.array([0.0, -0.0, -1.0, -2.0, np.inf, -np.inf, np.nan, big, 1e-45, 1e-30,
                  np.nextafter(np.float32(-1), np.float32(0)), 2.0 ** -25, -0.5], dtype=np.float32)
    got = np.empty_like(x)
    _log1p_array(x, got)
    assert got[0] == 0.0 and not np.signbit(got[0])
    assert got[1] == 0.0 and np.signbit(got[1])
    assert got[2] == -np.inf
    assert np.isnan(got[3]) and got[4] == np.inf and np.isnan(got[5]) and np.isnan(got[6])
    for i in (7, 8, 9, 10, 11, 12):
        assert got[i] == np.float32(math.log1p(float(x[i]))), i


def test_float32_sigmoid_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 17.4, 30.0, -88.0, -103.0, -104.5, 1e-40],
                 dtype=np.float32)
    got = np.empty_like(x)
    _sigmoid_array(x, got)
    assert got[0] == 0.5 and got[1] == 0.5
    assert got[2] == 1.0 and got[3] == 0.0 and np.isnan(got[4])
    assert got[5] == 1.0 and got[6] == 1.0
    assert got[7] == np.float32(math.exp(-88.0) / (1 + math.exp(-88.0))) > 0  # subnormal
    assert got[8] == np.float32(math.exp(-103.0))
    assert got[9] == 0.0 and got[10] == 0.5


@pytest.mark.parametrize("name", sorted(_F32))
def test_float64_exp_log1p_sigmoid_are_libm_exactly(name):
    kernel, ref_fn, _ = _F32[name]
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(size=20_000) * 10, rng.uniform(-0.99, 5, 20_000)])
    x = x.clip(-700, 700) if name == "exp" else x
    x = np.abs(x) if name == "log1p" else x
    got = np.empty_like(x)
    kernel(x, got)
    np.testing.assert_array_equal(got, np.array([ref_fn(v) for v in x]))


def test_python_calls_are_libm():
    assert vm.exp(0.3) == math.exp(0.3)
    assert vm.log1p(0.3) == math.log1p(0.3)
    assert vm.sigmoid(0.3) == _sig_libm(0.3) and vm.sigmoid(-0.3) == _sig_libm(-0.3)


def test_f64_evals_relative_error():
    # measured on 400k points: exp 1.4e-13, sigmoid 1.1e-13, log1p 2.5e-16 (the docstrings)
    for x in np.linspace(vm.EXP_MIN, vm.EXP_MAX, 40_001):
        assert abs(vm.exp_f64_eval(x) - math.exp(x)) <= 3e-13 * math.exp(x)
    for x in np.linspace(-104.0, 40.0, 40_001):
        assert abs(vm.sigmoid_f64_eval(x) - _sig_libm(x)) <= 3e-13 * _sig_libm(x)
    rng = np.random.default_rng(3)
    xs = np.concatenate([rng.uniform(-1, 4, 20_000), np.geomspace(1e-30, 3e38, 10_001),
                         -np.geomspace(1e-30, 0.999, 10_001)]).astype(np.float32)
    for x in xs.astype(np.float64):
        ref = math.log1p(x)
        assert abs(vm.log1p_f64_eval(x) - ref) <= 1e-15 * abs(ref)


@pytest.mark.parametrize("kernel", [_exp_array, _log1p_array, _sigmoid_array, _tanh_array])
def test_float32_loops_vectorise(kernel):
    # A call left in the loop (a libm function, a function too large for LLVM's inliner, a
    # division with Numba's zero test) keeps it scalar: the optimised IR has no vector of doubles.
    x = np.ones(64, np.float32)
    kernel(x, np.empty_like(x))
    ir = kernel.inspect_llvm(kernel.signatures[0])
    assert re.search(r"<(2|4|8|16) x double>", ir), "loop not vectorised"


@njit
def _tanh_fast_array(x, out):
    for i in range(x.shape[0]):
        out[i] = vm.tanh_fast(x[i])


def test_tanh_fast_float32_is_faithful():
    # Exhaustively (scripts/vecmath_ulps.py --exhaustive): at most 1 ulp from the correctly
    # rounded tanh; not correctly rounded: 1.1% of the float32 arguments in [-9.1, 9.1] (most
    # float32 values are tiny, where tanh_fast returns x, correctly), 8.9% of those in
    # [0.01, 9.1], which dominate this sample.
    x = _inputs().astype(np.float32)
    got = np.empty_like(x)
    _tanh_fast_array(x, got)
    ref = np.array([math.tanh(float(v)) for v in x]).astype(np.float32)
    ulps = np.abs(got.view(np.int32).astype(np.int64) - ref.view(np.int32).astype(np.int64))
    assert ulps.max() <= 1
    assert 0 < (ulps > 0).mean() < 0.15
    assert got.dtype == np.float32


def test_tanh_fast_rational_relative_error():
    # the fitted rational (scripts/fit_tanh.py: 8.9e-9 on its grid) before rounding
    for x in np.concatenate([np.linspace(0.0, vm.TANH_FAST_CLAMP, 50_001)[1:],
                             np.geomspace(1e-30, 1.0, 2001)]):
        assert abs(vm.tanh_fast_f64_eval(x) - math.tanh(x)) <= 9e-9 * math.tanh(x)
        assert vm.tanh_fast_f64_eval(-x) == -vm.tanh_fast_f64_eval(x)


def test_tanh_fast_special_values_and_float64():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 9.25, 20.0, -20.0, 1e-40, -3e38],
                 dtype=np.float32)
    got = np.empty_like(x)
    _tanh_fast_array(x, got)
    assert got[0] == 0.0 and not np.signbit(got[0])
    assert got[1] == 0.0 and np.signbit(got[1])
    assert got[2] == 1.0 and got[3] == -1.0
    assert np.isnan(got[4])
    assert got[5] == 1.0 and got[6] == 1.0 and got[7] == -1.0
    assert got[8] == np.float32(1e-40)
    assert got[9] == -1.0
    x64 = _inputs()
    out64 = np.empty_like(x64)
    _tanh_fast_array(x64, out64)
    np.testing.assert_array_equal(out64, np.array([math.tanh(v) for v in x64]))
    assert vm.tanh_fast(0.3) == math.tanh(0.3)


def test_tanh_fast_loop_vectorises():
    x = np.ones(64, np.float32)
    _tanh_fast_array(x, np.empty_like(x))
    ir = _tanh_fast_array.inspect_llvm(_tanh_fast_array.signatures[0])
    assert re.search(r"<(2|4|8|16) x double>", ir), "loop not vectorised"


def test_fit_tanh_script_reproduces_the_coefficients():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "fit_tanh.py"
    spec = importlib.util.spec_from_file_location("fit_tanh", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    P, Q, err = mod.fit()
    held = [vm._TF_P0, vm._TF_P1, vm._TF_P2, vm._TF_P3, vm._TF_P4, vm._TF_P5, vm._TF_P6]
    # the same fit to well within what float32 results can see (LAPACK builds differ)
    np.testing.assert_allclose(P, held, rtol=1e-6)
    np.testing.assert_allclose(Q[1:], [vm._TF_Q1, vm._TF_Q2, vm._TF_Q3], rtol=1e-6)
    assert err < 9e-9


@njit
def _bce_terms_array(x, soft, sig):
    for i in range(x.shape[0]):
        soft[i], sig[i] = vm.bce_terms(x[i])


@njit
def _bce_three_calls(x, soft, sig):
    for i in range(x.shape[0]):
        soft[i] = vm.log1p(vm.exp(-abs(x[i])))
        sig[i] = sigmoid_vec(x[i])


@njit
def _bce_terms_one(x):
    return vm.bce_terms(x)


def test_bce_terms_float32_bits_of_the_three_calls():
    # every float32 bit pattern: scripts/bce_terms_bits.py (0 differences); here a sample over
    # all binades of both signs, the busy range, the clamp at 104 and the special values, NaNs
    # (signalling ones too) compared bit for bit; an odd length, so that the loops' scalar
    # remainder runs too, and a sample one value a call (scalar code)
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 1 << 32, 400_000, dtype=np.uint64).astype(np.uint32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, 103.9, 104.0, 104.1, -104.0, 1e-45, -1e-45,
                        3.4e38, -3.4e38, 1.0, -1.0], np.float32)
    nans = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FC12345],
                    np.uint32).view(np.float32)
    x = np.concatenate([bits.view(np.float32), rng.uniform(-30, 30, 100_001).astype(np.float32),
                        special, nans])  # float32 throughout: signalling NaNs stay as drawn
    soft, sig = np.empty_like(x), np.empty(x.size)
    soft0, sig0 = np.empty_like(x), np.empty(x.size)
    _bce_terms_array(x, soft, sig)
    _bce_three_calls(x, soft0, sig0)
    np.testing.assert_array_equal(soft.view(np.uint32), soft0.view(np.uint32))
    np.testing.assert_array_equal(sig.view(np.uint64), sig0.view(np.uint64))
    for i in np.concatenate([np.arange(0, x.size, 997), np.arange(x.size - 20, x.size)]):
        one_soft, one_sig = _bce_terms_one(x[i])
        assert np.float32(one_soft).view(np.uint32) == soft[i].view(np.uint32)
        assert np.float64(one_sig).view(np.uint64) == sig[i].view(np.uint64)
    assert np.isnan(soft[-5:]).all() and np.isnan(sig[-5:]).all()
    # and the values: log1p(exp(-|x|)) rounded to float32 within an ulp, the sigmoid to 3e-13
    fin = np.isfinite(x)
    ref = np.array([math.log1p(math.exp(-abs(float(v)))) for v in x[fin]])
    assert _ulps(soft[fin], ref.astype(np.float32)).max() <= 1
    inside = fin & (x > -104.0)  # below, the sigmoid is e^-104 (sigmoid_f64_eval's clamp)
    ref_sig = np.array([_sig_libm(float(v)) for v in x[inside]])
    np.testing.assert_allclose(sig[inside], ref_sig, rtol=3e-13, atol=0)
    assert (sig[fin & (x <= -104.0)] == vm.sigmoid_f64_eval(-104.0)).all()
    assert soft[x == np.inf][0] == 0.0 and sig[x == np.inf][0] == 1.0
    assert soft[x == -np.inf][0] == 0.0 and 0 < sig[x == -np.inf][0] < 1e-45
    assert soft[x == 0][0] == np.float32(math.log(2.0)) and sig[x == 0][0] == 0.5


def test_log1p_unit_is_log1p_f64_eval_on_the_unit_interval():
    rng = np.random.default_rng(8)
    xs = np.concatenate([rng.random(50_000), np.geomspace(5e-324, 1.0, 2001),
                         [0.0, -0.0, 1.0, np.nextafter(1.0, 0.0), math.sqrt(2.0) - 1.0,
                          np.nextafter(math.sqrt(2.0) - 1.0, 0.0),
                          np.nextafter(math.sqrt(2.0) - 1.0, 1.0), np.nan]])
    for x in xs:
        a, b = vm._log1p_unit(x), vm.log1p_f64_eval(x)
        assert np.float64(a).view(np.uint64) == np.float64(b).view(np.uint64), x


def test_bce_terms_float64_and_python_are_libm():
    x = np.concatenate([np.linspace(-50.0, 50.0, 2001), [0.0, -0.0, 750.0, -750.0]])
    soft, sig = np.empty_like(x), np.empty_like(x)
    _bce_terms_array(x, soft, sig)
    for v, s, g in zip(x, soft, sig, strict=True):
        assert s == math.log1p(math.exp(-abs(v)))
        assert g == _sig_libm(v)
        assert vm.bce_terms(v) == (s, g)


def test_bce_terms_loop_vectorises():
    x = np.ones(64, np.float32)
    _bce_terms_array(x, np.empty_like(x), np.empty(64))
    ir = _bce_terms_array.inspect_llvm(_bce_terms_array.signatures[0])
    assert "vector.body" in ir and re.search(r"<(2|4|8|16) x double>", ir), "loop not vectorised"



@njit(error_model="numpy")
def _lane_loss_new(ws, n, B, nl, C, btot):
    _loss_elementwise(BCE_LOGITS, ws, 0, n, 2 * n, B, nl, C, btot, 1.0 / (B * nl))


@njit(error_model="numpy")
def _lane_loss_old(ws, n, B, nl, C, btot):
    # _loss_elementwise's binary cross-entropy loop before vecmath.bce_terms
    inv_n = 1.0 / (B * nl)
    for e in range(B * nl):
        p = _lane_slice(ws, e, C)
        y = _lane_slice(ws, n // C + e, C)
        g = _lane_slice(ws, 2 * n // C + e, C)
        for c in range(C):
            pj = p[c]
            yj = y[c]
            btot[c] += max(pj, 0.0) - pj * yj + vm.log1p(vm.exp(-abs(pj)))
            g[c] = (sigmoid_vec(pj) - yj) * inv_n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lane_loss_loop_bits_of_the_three_calls(dtype):
    # the lane layout's binary cross-entropy loop (models/_lanes.py) against the same loop with
    # vecmath.log1p(vecmath.exp(-abs(p))) and sigmoid_vec(p): loss totals and gradients bitwise
    C, B, nl = 19, 37, 3  # lanes not a multiple of a vector: the remainder runs too
    n = B * nl * C
    rng = np.random.default_rng(2)
    ws = np.zeros(3 * n, dtype)
    ws[:n] = rng.standard_normal(n).astype(dtype) * dtype(20)
    ws[:9] = np.array([0.0, -0.0, 104.0, -104.0, 1e-40, np.inf, -np.inf, 200.0, -200.0], dtype)
    ws[n:2 * n] = (rng.random(n) < 0.5).astype(dtype)
    w_new, w_old = ws.copy(), ws.copy()
    t_new, t_old = np.zeros(C), np.zeros(C)
    _lane_loss_new(w_new, n, B, nl, C, t_new)
    _lane_loss_old(w_old, n, B, nl, C, t_old)
    np.testing.assert_array_equal(t_new.view(np.uint64), t_old.view(np.uint64))
    np.testing.assert_array_equal(w_new.view(f"u{ws.itemsize}"), w_old.view(f"u{ws.itemsize}"))
    # lanes 5 and 6 met a logit of +-inf: their loss is not finite; the others are
    assert not np.isfinite(t_new[5:7]).any() and np.isfinite(np.delete(t_new, [5, 6])).all()
    assert np.count_nonzero(w_new[2 * n:]) > n // 2
