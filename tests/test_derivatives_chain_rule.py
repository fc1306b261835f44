"""常见导数与链式法则：稳定的 sigmoid / logsigmoid / softplus 及其导数对照 PyTorch（float64，含极端输入），
高精度（mpmath）检验相对精度，Softmax 与矩阵乘法的雅可比对照 torch.autograd.functional.jacobian，坏输入与性质测试。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd.functional import jacobian

import mlbook
from mlbook.chapters import derivatives_chain_rule as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64

# 相对 4e-15；atol 只覆盖次正规数（PyTorch 的 sigmoid 在 x < -709 时下溢成 0，本章的更接近真值）
TOL = dict(atol=1e-300, rtol=4e-15)
EXTREME = np.array([0.0, -0.0, 1e-300, -1e-300, 36.0, 37.5, -37.5, 709.0, -709.0, 709.8, -709.8,
                    745.0, -745.0, 746.0, -746.0, 1e4, -1e4, 1e300, -1e300, np.inf, -np.inf, np.nan])
SOFTPLUS_ARGS = [(1.0, 20.0), (2.0, 5.0), (0.5, 30.0), (-1.0, 20.0), (3.0, 0.0), (1.0, -5.0)]


def _inputs(seed, shape, scale):
    return seeded(seed).normal(scale=scale, size=shape)


def _autograd(f, x):
    xt = t64(x, requires_grad=True)
    f(xt).sum().backward()
    return xt.grad


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [(), (1,), (7,), (4, 5), (2, 3, 4)])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_activations_match_torch(seed, shape, scale):
    x = _inputs(seed, shape, scale)
    t = t64(x)
    out = ch.sigmoid(x)
    assert out.shape == np.shape(x) and out.dtype == np.float64
    assert_close(out, torch.sigmoid(t), **TOL)
    assert_close(ch.logsigmoid(x), F.logsigmoid(t), **TOL)
    for beta, th in SOFTPLUS_ARGS:
        assert_close(ch.softplus(x, beta, th), F.softplus(t, beta=beta, threshold=th), **TOL)


def test_activations_match_torch_on_extreme_inputs():
    t = t64(EXTREME)
    assert_close(ch.sigmoid(EXTREME), torch.sigmoid(t), **TOL)
    assert_close(ch.logsigmoid(EXTREME), F.logsigmoid(t), **TOL)
    for beta, th in SOFTPLUS_ARGS:
        assert_close(ch.softplus(EXTREME, beta, th), F.softplus(t, beta=beta, threshold=th), **TOL)
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # 下溢是正确的舍入，不算
        ch.sigmoid(EXTREME[:-1]), ch.logsigmoid(EXTREME[:-1]), ch.softplus(EXTREME[:-1])
        ch.sigmoid_grad(EXTREME[:-1]), ch.softplus_grad(EXTREME[:-1])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e3])
def test_derivatives_match_autograd(seed, scale):
    x = np.concatenate([_inputs(seed, (50,), scale), EXTREME])
    # PyTorch 的 sigmoid 反向按 y(1-y) 计算，x ≈ 37 时 1-y 只剩一个 ulp：绝对误差 ~1e-16
    assert_close(ch.sigmoid_grad(x), _autograd(torch.sigmoid, x), atol=2e-16, rtol=4e-15)
    # 与两个因子都直接算出的 σ(x)σ(-x) 在相对意义下一致
    t = t64(x)
    assert_close(ch.sigmoid_grad(x), torch.sigmoid(t) * torch.sigmoid(-t), **TOL)
    assert_close(ch.logsigmoid_grad(x), _autograd(F.logsigmoid, x), **TOL)
    for beta, th in SOFTPLUS_ARGS:
        ref = _autograd(lambda v, b=beta, h=th: F.softplus(v, beta=b, threshold=h), x)
        assert_close(ch.softplus_grad(x, beta, th), ref, **TOL)


def test_derivatives_match_finite_differences():
    x0 = _inputs(7, (8,), 3.0)
    for f, df in [(ch.sigmoid, ch.sigmoid_grad), (ch.logsigmoid, ch.logsigmoid_grad),
                  (lambda v: ch.softplus(v, 2.0, 5.0), lambda v: ch.softplus_grad(v, 2.0, 5.0))]:
        assert_close(df(x0), mlbook.numeric_grad(lambda v, f=f: f(v).sum(), x0), atol=1e-8)


def test_relative_accuracy_against_mpmath():
    """与 50 位精度的真值比较：在整条实轴上保持相对精度（PyTorch 的 σ'(40) = 0 做不到这一点）。"""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    xs = [-740.0, -700.0, -100.0, -40.0, -5.0, -1e-8, 0.0, 1e-8, 5.0, 40.0, 100.0, 700.0]

    def sig(x):
        return 1 / (1 + mp.exp(-mp.mpf(x)))

    refs = {
        ch.sigmoid: [sig(x) for x in xs],
        ch.logsigmoid: [-mp.log1p(mp.exp(-mp.mpf(x))) for x in xs],  # 不用 log(σ)：1-σ 的抵消
        ch.sigmoid_grad: [sig(x) * sig(-x) for x in xs],
        ch.logsigmoid_grad: [sig(-x) for x in xs],
        lambda v: ch.softplus(v, threshold=np.inf): [mp.log1p(mp.exp(mp.mpf(x))) for x in xs],
    }
    for f, ref in refs.items():
        assert_close(f(np.array(xs)), np.array([float(r) for r in ref]), atol=0, rtol=4e-15)


def test_dtype_and_special_values():
    assert ch.sigmoid(np.array([0], dtype=np.int64)).tolist() == [0.5]
    assert ch.softplus(np.float32(1.0)).dtype == np.float64
    assert ch.sigmoid(np.inf) == 1.0 and ch.sigmoid(-np.inf) == 0.0
    assert ch.logsigmoid(-np.inf) == -np.inf and ch.logsigmoid(np.inf) == 0.0
    assert ch.softplus(np.inf) == np.inf and ch.softplus(-np.inf) == 0.0
    assert np.isnan(ch.sigmoid(np.nan)) and np.isnan(ch.softplus_grad(np.nan))
    # threshold 之上原样返回 x（同 F.softplus），导数为 1
    assert ch.softplus(20.5) == 20.5 and ch.softplus_grad(20.5) == 1.0
    assert ch.softplus(20.5, threshold=np.inf) > 20.5


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [(1,), (5,), (3, 4), (2, 3, 6)])
@pytest.mark.parametrize("scale", [1.0, 10.0, 300.0])
def test_softmax_jacobian_matches_autograd(seed, shape, scale):
    z = _inputs(seed, shape, scale)
    flat = t64(z).reshape(-1, shape[-1])
    ref = torch.stack([jacobian(lambda r: torch.softmax(r, -1), zr) for zr in flat])
    assert_close(ch.softmax_jacobian(z), ref.reshape(shape + shape[-1:]), atol=1e-16)


def test_softmax_jacobian_ties_and_single_class():
    assert_close(ch.softmax_jacobian(np.zeros(4)), (np.eye(4) - 0.25) / 4, atol=1e-17)
    assert ch.softmax_jacobian(np.array([[3.0], [-7.0]])).tolist() == [[[0.0]], [[0.0]]]
    z = np.array([1000.0, 0.0, -1000.0])  # 饱和：p 是 one-hot，雅可比为 0
    assert_close(ch.softmax_jacobian(z), jacobian(lambda r: torch.softmax(r, -1), t64(z)), atol=0)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("mkn", [(1, 1, 1), (3, 4, 2), (2, 1, 5), (5, 3, 3)])
def test_matmul_jacobian_matches_autograd(seed, mkn):
    m, k, n = mkn
    r = seeded(seed)
    A, B = r.normal(size=(m, k)), r.normal(size=(k, n))
    JA_ref, JB_ref = jacobian(torch.matmul, (t64(A), t64(B)))
    JA, JB = ch.matmul_jacobian(A, B)
    assert_close(JA, JA_ref, atol=0)
    assert_close(JB, JB_ref, atol=0)
    # 用雅可比收缩上游梯度 = 反向传播的 G Bᵀ、Aᵀ G
    G = r.normal(size=(m, n))
    assert_close(np.einsum("ij,ijpq->pq", G, JA), G @ B.T, atol=1e-14)
    assert_close(np.einsum("ij,ijpq->pq", G, JB), A.T @ G, atol=1e-14)


def test_elementwise_jacobians_are_diagonal():
    v = _inputs(3, (6,), 4.0)
    for ours, ref in [(ch.sigmoid_grad, torch.sigmoid), (ch.logsigmoid_grad, F.logsigmoid),
                      (ch.softplus_grad, F.softplus)]:
        assert_close(np.diag(ours(v)), jacobian(ref, t64(v)), atol=2e-16, rtol=4e-15)


X = np.zeros(3)
BAD_INPUTS = [
    BadInput("字符串 input", lambda: ch.sigmoid(["a"]), "input", TypeError),
    BadInput("复数 input", lambda: ch.logsigmoid(np.array([1j])), "input", TypeError),
    BadInput("布尔 input", lambda: ch.softplus(np.array([True])), "input", TypeError),
    BadInput("对象 input", lambda: ch.sigmoid_grad(np.array([None])), "input", TypeError),
    BadInput("beta = 0", lambda: ch.softplus(X, beta=0), "beta"),
    BadInput("beta 为 nan", lambda: ch.softplus(X, beta=np.nan), "beta"),
    BadInput("beta 为 inf", lambda: ch.softplus_grad(X, beta=np.inf), "beta"),
    BadInput("beta 为字符串", lambda: ch.softplus(X, beta="1"), "beta", TypeError),
    BadInput("beta 为布尔", lambda: ch.softplus(X, beta=True), "beta", TypeError),
    BadInput("threshold 为 nan", lambda: ch.softplus_grad(X, threshold=np.nan), "threshold"),
    BadInput("threshold 为数组", lambda: ch.softplus(X, threshold=X), "threshold", TypeError),
    BadInput("softmax 标量", lambda: ch.softmax_jacobian(1.0), "input"),
    BadInput("softmax 空类别维", lambda: ch.softmax_jacobian(np.zeros((2, 0))), "input"),
    BadInput("softmax 含 inf", lambda: ch.softmax_jacobian([0.0, np.inf]), "input"),
    BadInput("softmax 含 nan", lambda: ch.softmax_jacobian([0.0, np.nan]), "input"),
    BadInput("softmax 复数", lambda: ch.softmax_jacobian([1j]), "input", TypeError),
    BadInput("matmul 形状不匹配", lambda: ch.matmul_jacobian(np.zeros((2, 3)), np.zeros((2, 3))), "other"),
    BadInput("matmul 一维", lambda: ch.matmul_jacobian(X, np.zeros((3, 2))), "input"),
    BadInput("matmul 三维", lambda: ch.matmul_jacobian(np.zeros((2, 3)), np.zeros((1, 3, 2))), "other"),
    BadInput("matmul 字符串", lambda: ch.matmul_jacobian(np.zeros((1, 1)), [["a"]]), "other", TypeError),
]


@pytest.mark.parametrize("case", bad_input_params(BAD_INPUTS))
def test_bad_inputs(case):
    case.check()


finite = st.floats(-1e4, 1e4, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(x=finite)
def test_sigmoid_logsigmoid_softplus_identities(x):
    """σ(x) + σ(-x) = 1；log σ(x) = -softplus(-x)；softplus(x) - softplus(-x) = x；softplus' = σ。"""
    a = np.array(x)
    assert abs(ch.sigmoid(a) + ch.sigmoid(-a) - 1.0) <= 2.3e-16
    sp = ch.softplus(-a, threshold=np.inf)
    assert_close(ch.logsigmoid(a), -sp, atol=0, rtol=1e-15)
    assert_close(ch.softplus(a, threshold=np.inf) - sp, a, atol=1e-15, rtol=1e-15)
    assert_close(ch.softplus_grad(a, threshold=np.inf), ch.sigmoid(a), atol=0)
    assert_close(ch.sigmoid_grad(a), ch.sigmoid(a) * ch.logsigmoid_grad(a), atol=0, rtol=1e-15)


@settings(max_examples=100, deadline=None)
@given(x=finite, y=finite)
def test_monotone(x, y):
    """sigmoid、logsigmoid、softplus 单调不减；导数非负，sigmoid 的导数不超过 1/4。"""
    lo, hi = np.array(min(x, y)), np.array(max(x, y))
    for f in (ch.sigmoid, ch.logsigmoid, ch.softplus):
        assert f(lo) <= f(hi)
    assert 0.0 <= ch.sigmoid_grad(lo) <= 0.25


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**16), C=st.integers(1, 8), c=st.floats(-100, 100))
def test_softmax_jacobian_properties(seed, C, c):
    """对称；每列和为 0（Σ p_i = 1）；对角元 p(1-p) ≥ 0；平移不变；Jᵀg 等于 p ⊙ (g - <p, g>)。"""
    r = seeded(seed)
    z, g = r.normal(scale=3.0, size=(2, C)), r.normal(size=(2, C))
    J = ch.softmax_jacobian(z)
    assert_close(J, np.swapaxes(J, -1, -2), atol=0)
    assert_close(J.sum(axis=-2), np.zeros((2, C)), atol=1e-15)
    assert (np.diagonal(J, axis1=-2, axis2=-1) >= 0).all()
    assert_close(ch.softmax_jacobian(z + c), J, atol=1e-14)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    vjp = p * (g - (p * g).sum(-1, keepdims=True))
    assert_close(np.einsum("nik,ni->nk", J, g), vjp, atol=1e-15)
