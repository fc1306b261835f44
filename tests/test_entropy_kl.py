"""熵、交叉熵与 KL 散度：与 scipy.stats.entropy、scipy.special.rel_entr、F.kl_div 在 float64 下对照，
外加零概率的边界、梯度、坏输入与性质测试。"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mlbook
from mlbook.chapters import entropy_kl as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64


def _dists(seed, shape, zeros=0.0):
    """沿最后一维和为 1 的随机分布，约 zeros 比例的元素为 0（每行至少一个正数）。"""
    r = seeded(seed)
    p = r.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    p[r.random(p.shape) < zeros] = 0.0
    p[..., 0] += (p.sum(axis=-1) == 0)
    return p / p.sum(axis=-1, keepdims=True)


def _torch_kl(inp, tgt, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reduction="mean" 的提示
        return F.kl_div(t64(inp), t64(tgt), **kw)


# ---------- entropy 与 scipy.stats.entropy ----------

@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape, axis", [((7,), 0), ((5, 9), 0), ((5, 9), 1), ((5, 9), -1),
                                         ((3, 4, 6), 1), ((3, 4, 6), None)])
@pytest.mark.parametrize("base", [None, 2, 10, 0.5])
def test_entropy_matches_scipy(seed, shape, axis, base):
    r = seeded(seed)
    pk = r.random(shape) * (r.random(shape) > 0.3)  # 未归一化、含 0
    qk = r.random(shape) * (r.random(shape) > 0.2)
    # 沿 axis 全为 0 的组无法归一化（本章报错）：给这些组整体加 1
    pk = pk + (pk.sum(axis=axis, keepdims=True) == 0)
    qk = qk + (qk.sum(axis=axis, keepdims=True) == 0)
    ref_axis = {} if axis is None else {"axis": axis}
    if axis is None:
        ref_h = scipy.stats.entropy(pk.ravel(), base=base)
        ref_kl = scipy.stats.entropy(pk.ravel(), qk.ravel(), base=base)
    else:
        ref_h = scipy.stats.entropy(pk, base=base, **ref_axis)
        ref_kl = scipy.stats.entropy(pk, qk, base=base, **ref_axis)
    assert_close(ch.entropy(pk, base=base, axis=axis), ref_h, atol=1e-14, rtol=1e-15)
    ours = ch.entropy(pk, qk, base=base, axis=axis)
    assert_close(ours, ref_kl, atol=1e-14, rtol=1e-15)  # 同为 inf 视为一致
    assert np.array_equal(np.isinf(ours), np.isinf(ref_kl))


def test_entropy_zero_conventions():
    assert ch.entropy([1.0, 0.0, 0.0]) == 0.0                       # 0·log 0 = 0
    assert ch.entropy([1, 0], [1, 0]) == 0.0                         # p = q = 0 的项为 0
    assert ch.entropy([0.5, 0.5], [1.0, 0.0]) == np.inf              # q = 0 < p
    assert ch.entropy([1.0, 0.0], [0.5, 0.5]) == pytest.approx(np.log(2), abs=1e-16)
    assert ch.entropy([0.5, 0.5], base=2) == 1.0
    assert ch.cross_entropy_dist([0.5, 0.5], [1.0, 0.0]) == np.inf
    assert ch.cross_entropy_dist([1.0, 0.0], [1.0, 0.0]) == 0.0
    for p, q in [([1, 0, 0], [0.5, 0.5, 0]), ([0, 1], [0, 1]), ([1, 1], [1, 0])]:
        assert_close(ch.entropy(p, q), scipy.stats.entropy(p, q), atol=1e-16)


def test_entropy_broadcasts_like_scipy():
    r = seeded(4)
    pk, qk = r.random((4, 6)), r.random(6) + 0.1
    assert_close(ch.entropy(pk, qk, axis=1), scipy.stats.entropy(pk, qk, axis=1), atol=1e-15)
    assert_close(ch.entropy(qk, pk, axis=1), scipy.stats.entropy(qk, pk, axis=1), atol=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_rel_entr_matches_scipy(seed):
    p, q = _dists(seed, (6, 10), zeros=0.3), _dists(seed + 10, (6, 10), zeros=0.3)
    ours, ref = ch.rel_entr(p, q), scipy.special.rel_entr(p, q)
    assert_close(ours, ref, atol=1e-16)
    assert np.array_equal(np.isinf(ours), np.isinf(ref))
    # scipy.special.kl_div 逐元素多了 -x + y，归一化后整行求和相同
    finite = np.isfinite(ref).all(axis=1)
    assert_close(scipy.special.kl_div(p, q).sum(1)[finite], ours.sum(1)[finite], atol=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_decomposition_and_gibbs(seed):
    p, q = _dists(seed, (200, 7), zeros=0.2), _dists(seed + 5, (200, 7))
    h, kl = ch.entropy(p, axis=1), ch.entropy(p, q, axis=1)
    assert_close(ch.cross_entropy_dist(p, q, axis=1), h + kl, atol=1e-13)
    ref_ce = -(scipy.special.xlogy(p, q)).sum(axis=1)
    assert_close(ch.cross_entropy_dist(p, q, axis=1), ref_ce, atol=1e-14)
    assert (kl >= 0).all() and (h >= 0).all() and (h <= np.log(7) + 1e-15).all()
    assert (ch.entropy(p, p, axis=1) == 0).all()


# ---------- kl_div 与 F.kl_div ----------

@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [(1, 1), (4, 5), (16, 10), (2, 3, 4), (6,)])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "batchmean"])
def test_kl_div_matches_torch(seed, shape, reduction):
    p = _dists(seed, shape, zeros=0.3)              # target 含 0
    q = _dists(seed + 100, shape)                   # 严格为正
    inp = np.log(q)
    assert_close(ch.kl_div(inp, p, reduction), _torch_kl(inp, p, reduction=reduction),
                 atol=1e-13, rtol=1e-14)
    # log_target=True：目标处处为正
    assert_close(ch.kl_div(np.log(p + q), np.log(q), reduction, log_target=True),
                 _torch_kl(np.log(p + q), np.log(q), reduction=reduction, log_target=True),
                 atol=1e-13, rtol=1e-14)


def test_kl_div_reductions_relations():
    p, q = _dists(1, (8, 5), zeros=0.2), _dists(2, (8, 5))
    inp = np.log(q)
    none = ch.kl_div(inp, p, "none")
    assert none.shape == (8, 5)
    assert_close(ch.kl_div(inp, p, "batchmean"), ch.entropy(p, q, axis=1).mean(), atol=1e-15)
    assert_close(ch.kl_div(inp, p, "mean") * 5, ch.kl_div(inp, p, "batchmean"), atol=1e-15)
    assert_close(ch.kl_div(inp, p, "sum"), none.sum(), atol=0)
    # 默认 reduction 是 "mean"，与 torch 相同
    assert_close(ch.kl_div(inp, p), _torch_kl(inp, p), atol=1e-15)


def test_kl_div_zero_and_inf_edge_cases_match_torch():
    inp = np.array([[-np.inf, np.log(0.5), np.log(0.5)], [0.0, -np.inf, -1.0]])
    for tgt in [np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]),     # target=0 且 input=-inf → nan
                np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])]:    # target>0 且 input=-inf → inf
        ours, ref = ch.kl_div(inp, tgt, "none"), _torch_kl(inp, tgt, reduction="none")
        assert_close(ours, ref, atol=1e-15)
    with np.errstate(divide="ignore"):
        lt = np.log(np.array([[0.5, 0.5, 0.0]]))
    ours = ch.kl_div(np.log([[0.4, 0.4, 0.2]]), lt, "none", log_target=True)
    ref = _torch_kl(np.log([[0.4, 0.4, 0.2]]), lt, reduction="none", log_target=True)
    assert_close(ours, ref, atol=1e-15)
    assert np.isnan(ours[0, 2])


def test_kl_div_broadcasting_and_scalars_match_torch():
    r = seeded(3)
    inp = np.log(_dists(3, (4, 6)))
    tgt = _dists(4, (6,))
    for red in ["none", "sum", "mean", "batchmean"]:
        assert_close(ch.kl_div(inp, tgt, red), _torch_kl(inp, tgt, reduction=red), atol=1e-14)
        assert_close(ch.kl_div(tgt, inp[:1] * 0 + 0.3, red), _torch_kl(tgt, inp[:1] * 0 + 0.3, reduction=red),
                     atol=1e-14)
    x, y = np.float64(-1.0), np.float64(r.random())
    for red in ["none", "sum", "mean", "batchmean"]:
        assert_close(ch.kl_div(x, y, red), _torch_kl(x, y, reduction=red), atol=1e-15)


def test_kl_div_accepts_torch_tensors():
    p, q = _dists(5, (3, 4)), _dists(6, (3, 4))
    assert_close(ch.kl_div(t64(np.log(q)), t64(p), "batchmean"), ch.entropy(p, q, axis=1).mean(), atol=1e-15)


def test_empty_input():
    z = np.zeros((0, 3))
    assert ch.kl_div(z, z, "sum") == 0.0
    assert ch.kl_div(z, z, "none").shape == (0, 3)
    for red in ["mean", "batchmean"]:
        with pytest.raises(ValueError, match="空输入"):
            ch.kl_div(z, z, red)


# ---------- 梯度 ----------

@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [(1, 2), (5, 7), (16, 3)])
def test_logits_grad_matches_autograd(seed, shape):
    z = seeded(seed).normal(scale=3.0, size=shape)
    p = _dists(seed + 1, shape, zeros=0.3)
    zt = t64(z, requires_grad=True)
    F.kl_div(F.log_softmax(zt, -1), t64(p), reduction="batchmean").backward()
    assert_close(ch.kl_div_logits_grad(z, p), zt.grad, atol=2e-16)


def test_logits_grad_matches_finite_differences():
    z, p = seeded(7).normal(size=(3, 5)), _dists(8, (3, 5), zeros=0.3)
    num = mlbook.numeric_grad(lambda x: ch.kl_div(ch._log_softmax(x), p, "batchmean"), z)
    assert_close(ch.kl_div_logits_grad(z, p), num, atol=1e-9)


def test_log_softmax_extreme_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [5.0, 5.0, 5.0]])
    assert_close(ch._log_softmax(z), torch.log_softmax(t64(z), -1), atol=1e-13)


# ---------- 坏输入 ----------

P3 = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
BAD = [
    BadInput("pk 含负数", lambda: ch.entropy([0.5, -0.1, 0.6]), "pk"),
    BadInput("qk 含负数", lambda: ch.entropy([0.5, 0.5], [1.1, -0.1]), "qk"),
    BadInput("pk 全为 0", lambda: ch.entropy([0.0, 0.0]), "pk"),
    BadInput("qk 一行全为 0", lambda: ch.entropy(P3, np.zeros(3), axis=1), "qk"),
    BadInput("pk 含 nan", lambda: ch.entropy([0.5, np.nan]), "pk"),
    BadInput("pk 含 inf", lambda: ch.entropy([0.5, np.inf]), "pk"),
    BadInput("pk 为空", lambda: ch.entropy([]), "pk"),
    BadInput("base = 1", lambda: ch.entropy([0.5, 0.5], base=1), "base"),
    BadInput("base 为负", lambda: ch.entropy([0.5, 0.5], base=-2), "base"),
    BadInput("形状不能广播", lambda: ch.entropy(P3, P3[:, :2]), "pk 的形状"),
    BadInput("axis 越界", lambda: ch.entropy(P3, axis=2), "axis"),
    BadInput("标量 pk", lambda: ch.entropy(1.0), "axis"),
    BadInput("复数 pk", lambda: ch.entropy(np.array([0.5, 0.5]) + 1j), "pk", TypeError),
    BadInput("字符串 qk", lambda: ch.entropy([0.5, 0.5], ["a", "b"]), "qk", TypeError),
    BadInput("交叉熵 qk 形状", lambda: ch.cross_entropy_dist(P3, P3[:1, :2]), "qk"),
    BadInput("rel_entr 负数", lambda: ch.rel_entr([-0.1], [0.5]), "x"),
    BadInput("reduction", lambda: ch.kl_div(np.log(P3), P3, reduction="avg"), "reduction"),
    BadInput("target 为负", lambda: ch.kl_div(np.log(P3), np.log(P3)), "log_target"),
    BadInput("input 含 +inf", lambda: ch.kl_div(np.full(3, np.inf), P3[0]), "input"),
    BadInput("input 含 nan", lambda: ch.kl_div(np.full(3, np.nan), P3[0]), "input"),
    BadInput("target 含 nan", lambda: ch.kl_div(np.log(P3), P3 * np.nan), "target"),
    BadInput("kl_div 形状", lambda: ch.kl_div(np.log(P3), P3[:, :2]), "input 的形状"),
    BadInput("复数 input", lambda: ch.kl_div(np.log(P3) + 1j, P3), "input", TypeError),
    BadInput("空批次 batchmean", lambda: ch.kl_div(np.zeros((0, 3)), np.zeros((0, 3)), "batchmean"), "batchmean"),
    BadInput("梯度形状", lambda: ch.kl_div_logits_grad(np.zeros((2, 3)), P3[:1]), "logits"),
    BadInput("梯度一维", lambda: ch.kl_div_logits_grad(np.zeros(3), P3[0]), "logits"),
    BadInput("梯度 logits 含 inf", lambda: ch.kl_div_logits_grad(np.full((2, 3), np.inf), P3), "logits"),
    BadInput("梯度 target 为负", lambda: ch.kl_div_logits_grad(np.zeros((2, 3)), -P3), "target"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


# ---------- 性质 ----------

@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), c=st.integers(1, 8), scale=st.floats(1e-3, 1e3))
def test_properties(seed, c, scale):
    """KL ≥ 0 且 KL(p||p) = 0；H(p) ∈ [0, log C]；entropy 对 pk 的整体缩放不变（先归一化）；
    H(p,q) = H(p) + KL(p||q)；batchmean 的 kl_div 等于逐行 entropy(p, q) 的平均。"""
    p, q = _dists(seed, (3, c), zeros=0.3), _dists(seed + 1, (3, c))
    kl = ch.entropy(p, q, axis=1)
    h = ch.entropy(p, axis=1)
    assert (kl >= 0).all() and (ch.entropy(p, p, axis=1) == 0).all()
    assert (h >= 0).all() and (h <= np.log(c) + 1e-14).all()
    assert_close(ch.entropy(p * scale, q, axis=1), kl, atol=1e-13)
    assert_close(ch.cross_entropy_dist(p, q, axis=1), h + kl, atol=1e-13)
    assert_close(ch.kl_div(np.log(q), p, "batchmean"), kl.mean(), atol=1e-14)
