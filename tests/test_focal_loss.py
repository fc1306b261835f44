"""Focal Loss：与 torchvision 的公式、独立的 BCE 实现、F.cross_entropy 在 float64 下对照；梯度、边界与坏输入。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import expit as sigmoid
from scipy.special import log_softmax

import mlbook
from mlbook.chapters import focal_loss as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64


def tv_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    """torchvision.ops.sigmoid_focal_loss 的公式（torchvision 装不了，照录其运算）。"""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def focal_via_bce(inputs, targets, alpha=0.25, gamma=2.0):
    """独立实现（硬标签）：p_t = exp(-CE)。"""
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    w = 1.0 if alpha < 0 else alpha * targets + (1 - alpha) * (1 - targets)
    return w * (-torch.expm1(-ce)) ** gamma * ce


def softmax_focal_ref(z, t, w, gamma):
    logp = F.log_softmax(z, dim=-1)
    return F.nll_loss((1 - logp.exp()) ** gamma * logp, t, weight=w, reduction="none")


PARAMS = [(0.25, 2.0), (-1, 0.0), (0.5, 0.5), (0.0, 1.0), (1.0, 5.0), (0.9, 3.3)]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("shape", [(), (1,), (7, 3), (4, 5, 6)])
def test_binary_matches_torchvision_formula_and_bce_implementation(seed, shape):
    rng = seeded(seed)
    z = rng.normal(scale=5.0, size=shape)
    y = (rng.random(shape) < 0.4).astype(float)
    ys = rng.random(shape)
    for alpha, gamma in PARAMS:
        ours = ch.sigmoid_focal_loss(z, y, alpha, gamma)
        assert_close(ours, tv_sigmoid_focal_loss(t64(z), t64(y), alpha, gamma), atol=1e-15, rtol=1e-14)
        assert_close(ours, focal_via_bce(t64(z), t64(y), alpha, gamma), atol=1e-15, rtol=1e-14)
        assert_close(
            ch.sigmoid_focal_loss(z, ys, alpha, gamma),
            tv_sigmoid_focal_loss(t64(z), t64(ys), alpha, gamma),
            atol=1e-15,
            rtol=1e-14,
        )
        for red in ["mean", "sum"]:
            assert_close(
                ch.sigmoid_focal_loss(z, ys, alpha, gamma, red),
                tv_sigmoid_focal_loss(t64(z), t64(ys), alpha, gamma, red),
                atol=1e-13,
                rtol=1e-14,
            )


def test_default_arguments_are_torchvisions():
    z, y = seeded(0).normal(size=(3, 4)), np.eye(3, 4)
    out = ch.sigmoid_focal_loss(z, y)
    assert out.shape == (3, 4)  # reduction="none"
    assert_close(out, tv_sigmoid_focal_loss(t64(z), t64(y)), atol=1e-15)


def test_bool_targets_are_accepted():
    z = seeded(1).normal(size=5)
    y = np.array([True, False, True, True, False])
    assert_close(ch.sigmoid_focal_loss(z, y), ch.sigmoid_focal_loss(z, y.astype(float)), atol=0)


@pytest.mark.parametrize("seed", range(3))
def test_gamma_zero_reduces_to_bce_and_half_bce(seed):
    rng = seeded(seed)
    z, ys = rng.normal(scale=4.0, size=(9, 4)), rng.random((9, 4))
    bce = F.binary_cross_entropy_with_logits(t64(z), t64(ys), reduction="none")
    assert_close(ch.sigmoid_focal_loss(z, ys, alpha=-1, gamma=0.0), bce, atol=1e-15, rtol=1e-14)
    assert_close(ch.sigmoid_focal_loss(z, ys, alpha=0.5, gamma=0.0), bce / 2, atol=1e-15, rtol=1e-14)
    # γ = 0 时 α 加权的 BCE：正类 α，负类 1-α
    y = (ys > 0.5).astype(float)
    w = 0.3 * y + 0.7 * (1 - y)
    ref = F.binary_cross_entropy_with_logits(t64(z), t64(y), weight=t64(w), reduction="none")
    assert_close(ch.sigmoid_focal_loss(z, y, alpha=0.3, gamma=0.0), ref, atol=1e-15, rtol=1e-14)


def test_negative_alpha_disables_weighting():
    z, y = seeded(2).normal(size=(6, 2)), (np.arange(12).reshape(6, 2) % 3 == 0).astype(float)
    for a in [-1, -0.5, -1e-9]:
        assert_close(ch.sigmoid_focal_loss(z, y, alpha=a), tv_sigmoid_focal_loss(t64(z), t64(y), alpha=-1), atol=1e-15)
    # α = 1 / 0 只保留正 / 负样本
    assert (ch.sigmoid_focal_loss(z, y, alpha=1.0)[y == 0] == 0).all()
    assert (ch.sigmoid_focal_loss(z, y, alpha=0.0)[y == 1] == 0).all()


def test_extreme_logits_are_finite_and_match():
    z = np.array([-1e300, -800.0, -40.0, -17.0, 0.0, 17.0, 40.0, 800.0, 1e300])
    for y in [0.0, 1.0, 0.3]:
        yy = np.full_like(z, y)
        ours = ch.sigmoid_focal_loss(z, yy)
        assert np.isfinite(ours).all()
        assert_close(ours, tv_sigmoid_focal_loss(t64(z), t64(yy)), atol=1e-15, rtol=1e-15)
        assert np.isfinite(ch.sigmoid_focal_loss_grad(z, yy, gamma=0.5)).all()
    # 错得离谱的正样本：损失正好 α·|z|
    assert ch.sigmoid_focal_loss([-800.0], [1.0])[0] == 0.25 * 800
    # 完全正确的样本损失为 +0（不是 -0）
    out = ch.sigmoid_focal_loss([800.0, -800.0], [1.0, 0.0])
    assert (out == 0).all() and not np.signbit(out).any()


def test_modulating_factor_keeps_relative_precision():
    # 1 - p_t 由 σ(-z) 直接算：z = 30 时仍有相对精度（1 - p 会舍入成 ~1e-13 的误差）
    z = np.array([30.0])
    exact = np.exp(-30.0) ** 2 * np.log1p(np.exp(-30.0)) / (1 + np.exp(-30.0)) ** 2
    assert ch.sigmoid_focal_loss(z, [1.0], alpha=-1)[0] == pytest.approx(exact, rel=1e-14)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1, 1.0), (0.6, 3.5), (0.25, 0.0)])
def test_gradient_matches_autograd(seed, alpha, gamma):
    rng = seeded(seed)
    z = rng.normal(scale=4.0, size=(8, 3))
    for y in [(rng.random((8, 3)) < 0.3).astype(float), rng.random((8, 3))]:
        for red in ["none", "mean", "sum"]:
            zt = t64(z, requires_grad=True)
            loss = tv_sigmoid_focal_loss(zt, t64(y), alpha, gamma, red)
            (loss.sum() if red == "none" else loss).backward()
            assert_close(ch.sigmoid_focal_loss_grad(z, y, alpha, gamma, red), zt.grad, atol=1e-16, rtol=1e-13)


def test_gradient_matches_paper_formula_for_hard_labels():
    z = np.linspace(-8, 8, 33)
    for y in [0.0, 1.0]:
        p_t = sigmoid(z) if y == 1 else sigmoid(-z)
        a_t = 0.25 if y == 1 else 0.75
        paper = (2 * y - 1) * a_t * (1 - p_t) ** 2 * (2 * p_t * np.log(p_t) + p_t - 1)
        assert_close(ch.sigmoid_focal_loss_grad(z, np.full_like(z, y)), paper, atol=1e-15)


def test_gradient_with_gamma_below_one_is_finite_where_torchvision_is_nan():
    z, y = np.array([40.0, 2.0, -40.0]), np.array([1.0, 1.0, 0.0])
    zt = t64(z, requires_grad=True)
    tv_sigmoid_focal_loss(zt, t64(y), gamma=0.5).sum().backward()
    assert torch.isnan(zt.grad[0]) and torch.isnan(zt.grad[2])
    g = ch.sigmoid_focal_loss_grad(z, y, gamma=0.5)
    assert np.isfinite(g).all()
    assert_close(g[1], zt.grad[1], atol=1e-16)
    num = mlbook.numeric_grad(lambda x: ch.sigmoid_focal_loss(x, y, gamma=0.5, reduction="sum"), z)
    assert_close(g, num, atol=1e-9)


def test_gradient_matches_finite_differences_soft_labels():
    rng = seeded(4)
    z, y = rng.normal(scale=2.0, size=(3, 3)), rng.random((3, 3))
    num = mlbook.numeric_grad(lambda x: ch.sigmoid_focal_loss(x, y, 0.3, 0.7, "mean"), z)
    assert_close(ch.sigmoid_focal_loss_grad(z, y, 0.3, 0.7, "mean"), num, atol=1e-9)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (20, 3), (33, 12)])
def test_softmax_focal_matches_nll_reference(seed, shape):
    rng = seeded(seed)
    n, c = shape
    z = rng.normal(scale=4.0, size=shape)
    t = rng.integers(0, c, size=n)
    w = rng.random(c)
    zt, tt = t64(z), torch.as_tensor(t)
    for gamma in [0.0, 0.5, 2.0]:
        for alpha, wt in [(None, None), (w, t64(w)), (0.25, t64(np.full(c, 0.25)))]:
            ref = softmax_focal_ref(zt, tt, wt, gamma)
            assert_close(ch.softmax_focal_loss(z, t, alpha, gamma, "none"), ref, atol=1e-15, rtol=1e-14)
            assert_close(ch.softmax_focal_loss(z, t, alpha, gamma, "mean"), ref.mean(), atol=1e-15, rtol=1e-14)
            assert_close(ch.softmax_focal_loss(z, t, alpha, gamma, "sum"), ref.sum(), atol=1e-14, rtol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_softmax_focal_gamma_zero_is_cross_entropy(seed):
    rng = seeded(seed)
    z, t, w = rng.normal(scale=3.0, size=(15, 6)), rng.integers(0, 6, 15), rng.random(6)
    zt, tt = t64(z), torch.as_tensor(t)
    assert_close(ch.softmax_focal_loss(z, t, gamma=0.0), F.cross_entropy(zt, tt), atol=1e-15, rtol=1e-14)
    assert_close(ch.softmax_focal_loss(z, t, 0.5, 0.0), F.cross_entropy(zt, tt) / 2, atol=1e-15, rtol=1e-14)
    assert_close(
        ch.softmax_focal_loss(z, t, w, 0.0, "sum"),
        F.cross_entropy(zt, tt, weight=t64(w), reduction="sum"),
        atol=1e-14,
        rtol=1e-14,
    )


@pytest.mark.parametrize("seed", range(3))
def test_two_class_softmax_focal_equals_sigmoid_focal(seed):
    rng = seeded(seed)
    z, t = rng.normal(scale=5.0, size=(25, 2)), rng.integers(0, 2, 25)
    for a in [0.25, 0.5, 0.8]:
        assert_close(
            ch.softmax_focal_loss(z, t, [1 - a, a], 2.0, "none"),
            ch.sigmoid_focal_loss(z[:, 1] - z[:, 0], t.astype(float), a, 2.0),
            atol=1e-14,
            rtol=1e-13,
        )


def test_softmax_focal_gradient_formula_matches_autograd():
    rng = seeded(7)
    z, t, w = rng.normal(scale=3.0, size=(10, 4)), rng.integers(0, 4, 10), rng.random(4)
    for gamma in [0.0, 1.0, 2.0, 3.5]:
        p = np.exp(log_softmax(z, axis=-1))
        pt = p[np.arange(10), t]
        g = (w[t] * (1 - pt) ** (gamma - 1) * (gamma * pt * np.log(pt) + pt - 1))[:, None] * (np.eye(4)[t] - p)
        zt = t64(z, requires_grad=True)
        softmax_focal_ref(zt, torch.as_tensor(t), t64(w), gamma).sum().backward()
        assert_close(g, zt.grad, atol=1e-15)
        num = mlbook.numeric_grad(lambda x, gm=gamma: ch.softmax_focal_loss(x, t, w, gm, "sum"), z)
        assert_close(g, num, atol=1e-8)


def test_softmax_focal_extremes_and_masks():
    z = np.array([[1000.0, 0.0, -1000.0], [5.0, 5.0, 5.0], [0.0, -np.inf, 2.0], [1e17, 1e17, 0.0]])
    t = np.array([2, 1, 0, 0])
    ours = ch.softmax_focal_loss(z, t, reduction="none")
    ref = softmax_focal_ref(t64(z), torch.as_tensor(t), None, 2.0)
    assert_close(ours, ref, atol=1e-12, rtol=1e-14)
    assert ours[0] == 2000.0  # 1 - p_t = 1，log p_t = -2000
    assert_close(ours[1], (2 / 3) ** 2 * np.log(3), atol=1e-15)
    # 屏蔽的类别作为目标：p_t = 0，损失 +inf（与交叉熵相同）
    assert ch.softmax_focal_loss(np.array([[0.0, -np.inf]]), [1], reduction="none")[0] == np.inf
    # 完全确定的正确预测：损失恰为 0
    assert ch.softmax_focal_loss(np.array([[0.0, -np.inf]]), [0], reduction="none")[0] == 0


def test_empty_batches():
    assert ch.sigmoid_focal_loss(np.zeros((0, 3)), np.zeros((0, 3)), reduction="sum") == 0
    assert ch.sigmoid_focal_loss(np.zeros((0, 3)), np.zeros((0, 3))).shape == (0, 3)
    assert ch.softmax_focal_loss(np.zeros((0, 3)), np.zeros(0, int), reduction="none").shape == (0,)
    assert ch.softmax_focal_loss(np.zeros((0, 3)), np.zeros(0, int), reduction="sum") == 0


def test_seed_version_clipping_kills_gradient_and_fixed_alpha_only_scales():
    # 常见错误 1：截断后最错的样本梯度恰为 0；常见错误 2：固定 α 只是整体缩放
    z = t64([-40.0], requires_grad=True)
    p = torch.sigmoid(z).clamp(1e-12, 1 - 1e-12)
    (-0.25 * (1 - p) ** 2 * torch.log(p)).sum().backward()
    assert z.grad.item() == 0.0
    assert ch.sigmoid_focal_loss_grad([-40.0], [1.0])[0] == pytest.approx(-0.25, rel=1e-12)
    zz, y = seeded(3).normal(size=6), np.array([1.0, 0, 1, 0, 1, 0])
    ratio = ch.sigmoid_focal_loss(zz, y) / ch.sigmoid_focal_loss(zz, y, alpha=-1)
    assert_close(ratio, np.where(y == 1, 0.25, 0.75), atol=1e-15)


def test_softmax_focal_depends_only_on_p_t():
    # 常见错误 3：逐列二分类会区分这两行，多分类 Focal Loss 不会
    with np.errstate(divide="ignore"):
        z = np.log(np.array([[0.6, 0.4, 0.0], [0.6, 0.2, 0.2]]))
    out = ch.softmax_focal_loss(z, [0, 0], reduction="none")
    assert_close(out[0], out[1], atol=1e-15)
    assert_close(out[0], -(0.4**2) * np.log(0.6), atol=1e-15)


Z = np.zeros((2, 3))
Y = np.zeros((2, 3))
T = np.array([0, 2])

BAD_INPUTS = [
    BadInput("shape_mismatch", lambda: ch.sigmoid_focal_loss(Z, Y[:1]), r"targets 的形状 \(1, 3\).*\(2, 3\)"),
    BadInput("nan_logit", lambda: ch.sigmoid_focal_loss([np.nan], [1.0]), "inputs.*nan"),
    BadInput("inf_logit", lambda: ch.sigmoid_focal_loss([np.inf], [1.0]), "inputs.*inf"),
    BadInput("target_above_one", lambda: ch.sigmoid_focal_loss([0.0], [2.0]), r"targets.*\[0, 1\]"),
    BadInput("target_negative", lambda: ch.sigmoid_focal_loss([0.0], [-1.0]), r"targets.*\[0, 1\]"),
    BadInput("target_nan", lambda: ch.sigmoid_focal_loss([0.0], [np.nan]), "targets"),
    BadInput("alpha_above_one", lambda: ch.sigmoid_focal_loss(Z, Y, alpha=1.5), "alpha.*1.5"),
    BadInput("alpha_nan", lambda: ch.sigmoid_focal_loss(Z, Y, alpha=np.nan), "alpha"),
    BadInput("alpha_string", lambda: ch.sigmoid_focal_loss(Z, Y, alpha="0.25"), "alpha", TypeError),
    BadInput("gamma_negative", lambda: ch.sigmoid_focal_loss(Z, Y, gamma=-1.0), "gamma.*-1"),
    BadInput("gamma_inf", lambda: ch.sigmoid_focal_loss(Z, Y, gamma=np.inf), "gamma"),
    BadInput("gamma_bool", lambda: ch.sigmoid_focal_loss(Z, Y, gamma=True), "gamma", TypeError),
    BadInput("reduction", lambda: ch.sigmoid_focal_loss(Z, Y, reduction="avg"), "reduction.*avg"),
    BadInput("reduction_none_obj", lambda: ch.sigmoid_focal_loss(Z, Y, reduction=None), "reduction"),
    BadInput("empty_mean", lambda: ch.sigmoid_focal_loss([], [], reduction="mean"), "空"),
    BadInput("empty_mean_grad", lambda: ch.sigmoid_focal_loss_grad([], [], reduction="mean"), "空"),
    BadInput("complex_inputs", lambda: ch.sigmoid_focal_loss(Z + 1j, Y), "inputs", TypeError),
    BadInput("string_targets", lambda: ch.sigmoid_focal_loss(Z, Y.astype(str)), "targets", TypeError),
    BadInput("grad_shape", lambda: ch.sigmoid_focal_loss_grad(Z, Y[0]), "targets 的形状"),
    BadInput("grad_alpha", lambda: ch.sigmoid_focal_loss_grad(Z, Y, alpha=2.0), "alpha"),
    BadInput("sm_1d", lambda: ch.softmax_focal_loss(np.zeros(3), [0]), r"input.*\(N, C\)"),
    BadInput("sm_no_classes", lambda: ch.softmax_focal_loss(np.zeros((2, 0)), T), "C ≥ 1"),
    BadInput("sm_nan", lambda: ch.softmax_focal_loss([[0.0, np.nan]], [0]), "input.*nan"),
    BadInput("sm_posinf", lambda: ch.softmax_focal_loss([[0.0, np.inf]], [0]), r"input.*\+inf"),
    BadInput("sm_masked_row", lambda: ch.softmax_focal_loss([[-np.inf, -np.inf]], [0]), "全是 -inf"),
    BadInput("sm_target_shape", lambda: ch.softmax_focal_loss(Z, [0]), r"target 的形状应为 \(2,\)"),
    BadInput("sm_target_high", lambda: ch.softmax_focal_loss(Z, [0, 3]), r"\[0, 3\)"),
    BadInput("sm_target_negative", lambda: ch.softmax_focal_loss(Z, [-1, 0]), r"\[0, 3\)"),
    BadInput("sm_target_float", lambda: ch.softmax_focal_loss(Z, [0.0, 1.0]), "target.*整数", TypeError),
    BadInput("sm_alpha_len", lambda: ch.softmax_focal_loss(Z, T, alpha=[1.0, 2.0]), r"alpha.*\(3,\)"),
    BadInput("sm_alpha_negative", lambda: ch.softmax_focal_loss(Z, T, alpha=[1.0, -1.0, 1.0]), "alpha.*非负"),
    BadInput("sm_gamma", lambda: ch.softmax_focal_loss(Z, T, gamma=-0.5), "gamma"),
    BadInput("sm_reduction", lambda: ch.softmax_focal_loss(Z, T, reduction="avg"), "reduction"),
    BadInput("sm_empty_mean", lambda: ch.softmax_focal_loss(np.zeros((0, 3)), np.zeros(0, int)), "空"),
    BadInput("sm_complex", lambda: ch.softmax_focal_loss(Z + 1j, T), "input", TypeError),
]


@pytest.mark.parametrize("case", bad_input_params(BAD_INPUTS))
def test_bad_inputs(case):
    case.check()


finite_logits = arrays(
    np.float64,
    st.integers(1, 12),
    elements=st.floats(-60, 60, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=60, deadline=None)
@given(z=finite_logits, data=st.data(), gamma=st.floats(0, 5), alpha=st.integers(0, 64).map(lambda k: k / 64))
def test_focal_is_bounded_by_weighted_bce_and_decreases_in_gamma(z, data, gamma, alpha):
    y = np.array(data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=len(z), max_size=len(z))))
    fl = ch.sigmoid_focal_loss(z, y, alpha, gamma)
    wbce = ch.sigmoid_focal_loss(z, y, alpha, 0.0)
    assert (fl >= 0).all()
    assert (fl <= wbce * (1 + 1e-12)).all()  # (1 - p_t)^γ ≤ 1
    assert (ch.sigmoid_focal_loss(z, y, alpha, gamma + 1.0) <= fl * (1 + 1e-12)).all()
    # 对称性：把 z 与 y 同时取反，α 换成 1 - α，损失不变（α = k/64 使 1 - (1 - α) == α 精确成立）
    assert_close(ch.sigmoid_focal_loss(-z, 1 - y, 1 - alpha, gamma), fl, atol=1e-300, rtol=1e-13)


@settings(max_examples=40, deadline=None)
@given(
    z=arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 6)), elements=st.floats(-1e3, 1e3)),
    c=st.floats(-1e3, 1e3),
    data=st.data(),
)
def test_softmax_focal_is_shift_invariant(z, c, data):
    t = np.array(data.draw(st.lists(st.integers(0, z.shape[1] - 1), min_size=z.shape[0], max_size=z.shape[0])))
    out = ch.softmax_focal_loss(z, t, reduction="none")
    assert (out >= 0).all()
    assert_close(ch.softmax_focal_loss(z + c, t, reduction="none"), out, atol=1e-9, rtol=1e-9)
