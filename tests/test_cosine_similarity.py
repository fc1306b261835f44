"""余弦相似度：cosine_similarity / normalize / pairwise_cosine_similarity 对照 PyTorch 与 sklearn（float64），
近零向量、广播、手推梯度对照自动求导，坏输入与性质测试。"""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

import mlbook
from mlbook.chapters import cosine_similarity as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64

# 每行乘一个尺度：普通、小、落在 ε 截断区（< 1e-8）、sklearn 的“零范数”区（< 2.2e-15）、精确为零
SCALES = [1.0, 3e-4, 1e-7, 2e-9, 1e-13, 1e-16, 0.0]


def _with_tiny_rows(r, n, d):
    x = r.normal(size=(n, d))
    x[: len(SCALES)] *= np.array(SCALES[:n])[:, None]
    return x


def _torch_grads(a, b, g, dim, eps=1e-8):
    at, bt = t64(a, True), t64(b, True)
    (F.cosine_similarity(at, bt, dim=dim, eps=eps) * t64(g)).sum().backward()
    return at.grad, bt.grad


# (x1 形状, x2 形状, dim)：含互相广播与负 dim
PAIR_SHAPES = [
    ((7, 5), (7, 5), 1),
    ((7, 5), (7, 5), -1),
    ((4, 1, 6), (3, 6), -1),
    ((1, 6), (5, 6), 1),
    ((2, 7, 3), (2, 7, 3), 1),
    ((2, 3, 4), (2, 3, 4), 0),
    ((6,), (6,), 0),
    ((3, 1), (1, 3), 0),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shapes", PAIR_SHAPES, ids=str)
def test_cosine_similarity_matches_torch(seed, shapes):
    s1, s2, dim = shapes
    r = seeded(seed)
    a, b = r.normal(size=s1), r.normal(size=s2)
    assert_close(ch.cosine_similarity(a, b, dim=dim), F.cosine_similarity(t64(a), t64(b), dim=dim), atol=1e-15)
    g = r.normal(size=np.broadcast_shapes(s1, s2)[:dim % len(s1)] + np.broadcast_shapes(s1, s2)[dim % len(s1) + 1:])
    for ours, ref in zip(ch.cosine_similarity_backward(g, a, b, dim=dim), _torch_grads(a, b, g, dim)):
        assert ours.shape == ref.shape
        assert_close(ours, ref, atol=1e-14)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("eps", [1e-8, 1e-6, 0.5])
def test_near_zero_vectors_follow_torch_eps(seed, eps):
    """ε 分别截断每个范数（当前 PyTorch），前向与 torch 自动求导的梯度都一致。"""
    r = seeded(seed)
    a = _with_tiny_rows(r, 8, 5)
    b = _with_tiny_rows(r, 8, 5)[::-1].copy()
    assert_close(ch.cosine_similarity(a, b, eps=eps), F.cosine_similarity(t64(a), t64(b), eps=eps), atol=1e-15)
    g = r.normal(size=8)
    for ours, ref in zip(ch.cosine_similarity_backward(g, a, b, eps=eps), _torch_grads(a, b, g, 1, eps)):
        assert_close(ours, ref, atol=1e-14, rtol=1e-13)


def test_eps_clamps_each_norm_not_the_product():
    """‖x‖ = 3e-10 < ε ≤ ‖x‖‖y‖ 的开方：逐个截断给 x·y/(ε‖y‖)，旧式 sqrt(clamp(w1·w2, ε²)) 会给出精确余弦。"""
    x, y = 1e-10 * np.array([1.0, 2.0, 2.0]), np.array([2.0, 3.0, 6.0])
    expected = (x @ y) / (1e-8 * 7.0)
    assert_close(ch.cosine_similarity(x, y, dim=0), expected, atol=0, rtol=1e-15)
    assert abs(float(ch.cosine_similarity(x, y, dim=0)) - 20 / 21) > 0.9
    assert_close(F.cosine_similarity(t64(x), t64(y), dim=0), expected, atol=0, rtol=1e-15)


def test_naive_version_is_wrong_only_for_small_norms():
    r = seeded(4)
    a, b = r.normal(size=(6, 8)), r.normal(size=(6, 8))
    ref = F.cosine_similarity(t64(a), t64(b), dim=-1)
    assert_close(ch.cosine_similarity_naive(a, b), ref, atol=1e-7)
    small = ch.cosine_similarity_naive(1e-5 * a, 1e-5 * b)
    assert np.abs(small - ref.numpy()).max() > 0.1  # 笔记的 ε 位置在范数 1e-5 时已经出错
    assert_close(ch.cosine_similarity(1e-5 * a, 1e-5 * b), ref, atol=1e-15)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("nm", [(1, 1), (5, 3), (9, 9), (8, 1)])
def test_pairwise_matches_sklearn(seed, nm):
    n, m = nm
    r = seeded(seed)
    X = _with_tiny_rows(r, n, 6)
    Y = _with_tiny_rows(r, m, 6)[::-1].copy()
    assert_close(ch.pairwise_cosine_similarity(X, Y), sk_cosine(X, Y), atol=1e-15)
    assert_close(ch.pairwise_cosine_similarity(X), sk_cosine(X), atol=1e-15)


def test_pairwise_zero_vectors_and_integer_input():
    X = [[0, 0, 0], [1, 1, 1]]
    Y = [[1, 0, 0], [1, 1, 0]]
    assert_close(ch.pairwise_cosine_similarity(X, Y), sk_cosine(X, Y), atol=1e-15)
    assert np.all(ch.pairwise_cosine_similarity(X, Y)[0] == 0)


def test_pairwise_equals_broadcast_cosine_away_from_zero():
    r = seeded(7)
    X, Y = r.normal(size=(4, 5)), r.normal(size=(3, 5))
    assert_close(ch.cosine_similarity(X[:, None], Y[None], dim=-1), ch.pairwise_cosine_similarity(X, Y), atol=1e-15)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 0.5, np.inf])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_normalize_matches_torch(p, dim):
    r = seeded(int(dim) + 5)
    x = _with_tiny_rows(r, 9, 4)[None].repeat(2, axis=0)  # (2, 9, 4)，含零行与近零行
    for eps in [1e-12, 1e-3]:
        ref = F.normalize(t64(x), p=p, dim=dim, eps=eps)
        assert_close(ch.normalize(x, p=p, dim=dim, eps=eps), ref, atol=1e-14)


def test_normalize_default_dim_is_one_like_torch():
    x = seeded(1).normal(size=(3, 4, 5))
    assert_close(ch.normalize(x), F.normalize(t64(x)), atol=1e-15)
    assert_close(np.linalg.norm(ch.normalize(x), axis=1), np.ones((3, 5)), atol=1e-15)


def test_empty_inputs():
    e = np.zeros((0, 4))
    assert ch.cosine_similarity(e, e).shape == (0,)
    z = np.zeros((3, 0))  # 特征维为空：与 torch 一样给 0
    assert_close(ch.cosine_similarity(z, z), F.cosine_similarity(t64(z), t64(z)), atol=0)
    assert ch.pairwise_cosine_similarity(np.zeros((0, 3)), np.ones((2, 3))).shape == (0, 2)


def test_huge_values_do_not_overflow():
    """分量 1e200：平方和溢出，参考实现给 0；本章的范数先缩放，结果与缩放前相同。"""
    r = seeded(2)
    a, b = r.normal(size=(4, 6)), r.normal(size=(4, 6))
    ref = ch.cosine_similarity(a, b)
    assert_close(ch.cosine_similarity(1e200 * a, 1e200 * b), ref, atol=1e-15)
    assert_close(ch.pairwise_cosine_similarity(1e200 * a, b), ch.pairwise_cosine_similarity(a, b), atol=1e-15)
    assert_close(ch.normalize(1e200 * a), ch.normalize(a), atol=1e-15)


def test_gradient_matches_finite_differences():
    r = seeded(3)
    a, b, g = r.normal(size=(3, 4)), r.normal(size=(3, 4)), r.normal(size=3)
    da, db = ch.cosine_similarity_backward(g, a, b)
    assert_close(da, mlbook.numeric_grad(lambda x: (ch.cosine_similarity(x, b) * g).sum(), a), atol=1e-9)
    assert_close(db, mlbook.numeric_grad(lambda y: (ch.cosine_similarity(a, y) * g).sum(), b), atol=1e-9)


def test_integer_inputs_are_accepted_as_float():
    a, b = np.array([[1, 2, 2]]), np.array([[2, 3, 6]])
    assert_close(ch.cosine_similarity(a, b), np.array([20 / 21]), atol=1e-15)


V = np.ones((2, 3))
BAD = [
    BadInput("不能广播", lambda: ch.cosine_similarity(np.ones((4, 5)), np.ones((3, 5))), "x1 的形状"),
    BadInput("dim 越界", lambda: ch.cosine_similarity(V[0], V[0]), "dim"),
    BadInput("dim 越界（负）", lambda: ch.cosine_similarity(V, V, dim=-3), "dim"),
    BadInput("dim 是浮点数", lambda: ch.cosine_similarity(V, V, dim=1.0), "dim", TypeError),
    BadInput("eps 为负", lambda: ch.cosine_similarity(V, V, eps=-1e-8), "eps"),
    BadInput("eps 为 nan", lambda: ch.cosine_similarity(V, V, eps=np.nan), "eps"),
    BadInput("eps 为字符串", lambda: ch.cosine_similarity(V, V, eps="1e-8"), "eps", TypeError),
    BadInput("eps=0 遇零向量", lambda: ch.cosine_similarity(V, 0 * V, eps=0), "零向量"),
    BadInput("x1 含 nan", lambda: ch.cosine_similarity(V * np.nan, V), "x1"),
    BadInput("x2 含 inf", lambda: ch.cosine_similarity(V, V * np.inf), "x2"),
    BadInput("复数 x1", lambda: ch.cosine_similarity(V + 1j, V), "x1", TypeError),
    BadInput("布尔 x2", lambda: ch.cosine_similarity(V, V > 0), "x2", TypeError),
    BadInput("p = 0", lambda: ch.normalize(V, p=0), "p"),
    BadInput("p 为负", lambda: ch.normalize(V, p=-2.0), "p"),
    BadInput("normalize eps=0 遇零向量", lambda: ch.normalize(0 * V, eps=0.0), "input"),
    BadInput("normalize dim 越界", lambda: ch.normalize(V, dim=2), "dim"),
    BadInput("字符串 input", lambda: ch.normalize(V.astype(str)), "input", TypeError),
    BadInput("X 是一维", lambda: ch.pairwise_cosine_similarity(V[0]), "X"),
    BadInput("Y 是三维", lambda: ch.pairwise_cosine_similarity(V, V[None]), "Y"),
    BadInput("特征数不同", lambda: ch.pairwise_cosine_similarity(V, np.ones((2, 4))), "特征数"),
    BadInput("grad_output 形状", lambda: ch.cosine_similarity_backward(np.ones(3), V, V), "grad_output"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


vec = st.lists(st.floats(-1e3, 1e3), min_size=4, max_size=4)


@settings(max_examples=60, deadline=None)
@given(x=vec, y=vec, a=st.floats(1e-3, 1e3), b=st.floats(1e-3, 1e3))
def test_scale_invariance_symmetry_and_bounds(x, y, a, b):
    x, y = np.array(x), np.array(y)
    if np.linalg.norm(x) < 1e-3 or np.linalg.norm(y) < 1e-3:
        return  # 范数远大于 ε 时余弦才与尺度无关
    c = ch.cosine_similarity(x, y, dim=0)
    assert abs(c) <= 1 + 1e-15
    assert_close(ch.cosine_similarity(y, x, dim=0), c, atol=0)
    assert_close(ch.cosine_similarity(a * x, b * y, dim=0), c, atol=1e-14)
    assert_close(ch.cosine_similarity(-x, y, dim=0), -c, atol=1e-15)
    # 式 (eq-cosine-euclid)：‖x̂ − ŷ‖² = 2 − 2cos
    assert_close(np.sum((ch.normalize(x, dim=0) - ch.normalize(y, dim=0)) ** 2), 2 - 2 * c, atol=1e-14)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), d=st.integers(2, 8))
def test_gradient_is_orthogonal_with_norm_sin_over_norm(seed, d):
    """式 (eq-cosine-grad)/(eq-cosine-grad-norm)：x·∂c/∂x = 0，‖∂c/∂x‖ = sinθ/‖x‖。"""
    r = seeded(seed)
    x, y = r.normal(size=d), r.normal(size=d)
    dx, dy = ch.cosine_similarity_backward(1.0, x, y, dim=0)
    c = ch.cosine_similarity(x, y, dim=0)
    if 1 - c**2 < 1e-6:
        return  # 几乎平行时 sqrt(1 − c²) 病态，只比正交性意义不大
    assert abs(x @ dx) <= 1e-14 * np.linalg.norm(x) * np.linalg.norm(dx) + 1e-15
    assert abs(y @ dy) <= 1e-14 * np.linalg.norm(y) * np.linalg.norm(dy) + 1e-15
    assert_close(np.linalg.norm(dx), np.sqrt(max(1 - c**2, 0.0)) / np.linalg.norm(x), atol=0, rtol=1e-8)
