"""Softmax 与交叉熵：本章实现与 PyTorch 在 float64 下对照，外加边界情形、坏输入与性质测试。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import mlbook
from mlbook.chapters import softmax_cross_entropy as ch


def t64(x):
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (16, 3), (33, 100)])
def test_random_inputs_match_torch(seed, shape):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=5.0, size=shape)
    t = rng.integers(0, shape[1], size=shape[0])
    y = rng.dirichlet(np.ones(shape[1]), size=shape[0])
    zt = t64(z)
    np.testing.assert_allclose(ch.softmax(z), torch.softmax(zt, -1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(ch.log_softmax(z), torch.log_softmax(zt, -1), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(ch.logsumexp(z), torch.logsumexp(zt, -1), rtol=1e-14, atol=1e-13)
    for target, ref_target in [(t, torch.as_tensor(t)), (y, t64(y))]:
        for reduction in ["mean", "sum", "none"]:
            ours = ch.cross_entropy(z, target, reduction=reduction)
            ref = F.cross_entropy(zt, ref_target, reduction=reduction)
            np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=1e-12)
        np.testing.assert_allclose(
            ch.cross_entropy_from_probs(ch.softmax(z), target), F.cross_entropy(zt, ref_target), rtol=1e-12
        )


@pytest.mark.parametrize("seed", range(5))
def test_gradient_matches_autograd(seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=4.0, size=(12, 6))
    for target, ref_target in [
        (rng.integers(0, 6, 12), None),
        (rng.dirichlet(np.ones(6), 12), None),
    ]:
        ref_target = torch.as_tensor(target) if target.ndim == 1 else t64(target)
        zt = t64(z).requires_grad_()
        F.cross_entropy(zt, ref_target).backward()
        np.testing.assert_allclose(ch.cross_entropy_grad(z, target), zt.grad, rtol=1e-12, atol=1e-16)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    z, t = rng.normal(size=(3, 4)), np.array([0, 3, 1])
    num = mlbook.numeric_grad(lambda x: ch.cross_entropy(x, t), z)
    np.testing.assert_allclose(ch.cross_entropy_grad(z, t), num, atol=1e-8)


EXTREME = np.array(
    [
        [1000.0, 0.0, -1000.0],
        [-1000.0, -1000.0, -999.0],
        [5.0, 5.0, 5.0],
        [0.0, -np.inf, 2.0],
        [-np.inf, -np.inf, 3.0],
        [1e308, 1e308, -1e308],
    ]
)


def test_extreme_logits_ties_and_masks():
    t = np.array([2, 0, 1, 0, 2, 1])
    zt = t64(EXTREME)
    p = ch.softmax(EXTREME)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(p, torch.softmax(zt, -1), atol=1e-15)
    np.testing.assert_allclose(p[2], [1 / 3] * 3, atol=1e-16)  # 并列
    assert p[3, 1] == 0.0 and p[4, 2] == 1.0  # 屏蔽的类别概率恰为 0
    ours = ch.cross_entropy(EXTREME, t, reduction="none")
    np.testing.assert_allclose(ours, F.cross_entropy(zt, torch.as_tensor(t), reduction="none"), rtol=1e-13)
    assert ours[0] == 2000.0


def test_masked_target_class_gives_infinite_loss_not_nan():
    z = np.array([[0.0, -np.inf]])
    assert ch.cross_entropy(z, [1]) == np.inf
    assert ch.cross_entropy(z, [0]) == 0.0
    # 软标签里屏蔽类别的权重为 0 时，0·log 0 = 0
    assert ch.cross_entropy(z, np.array([[1.0, 0.0]])) == 0.0
    assert ch.cross_entropy_from_probs(np.array([[1.0, 0.0]]), [1]) == np.inf


def test_empty_batch():
    z = np.zeros((0, 4))
    t = np.zeros(0, dtype=int)
    assert ch.cross_entropy(z, t, reduction="sum") == 0.0
    assert ch.cross_entropy(z, t, reduction="none").shape == (0,)
    assert ch.softmax(z).shape == (0, 4)
    with pytest.raises(ValueError, match="空批次"):
        ch.cross_entropy(z, t)
    with pytest.raises(ValueError, match="空批次"):
        ch.cross_entropy_grad(z, t)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ch.softmax(np.zeros((2, 0))), "类别维"),
        (lambda: ch.softmax(np.float64(1.0)), "类别维"),
        (lambda: ch.softmax([[0.0, np.nan]]), "nan"),
        (lambda: ch.softmax([[0.0, np.inf]]), r"\+inf"),
        (lambda: ch.softmax([[-np.inf, -np.inf]]), "全是 -inf"),
        (lambda: ch.cross_entropy(np.zeros(3), [0]), r"\(N, C\)"),
        (lambda: ch.cross_entropy(np.zeros((2, 3)), [0, 3]), r"\[0, 3\)"),
        (lambda: ch.cross_entropy(np.zeros((2, 3)), [0, -1]), r"\[0, 3\)"),
        (lambda: ch.cross_entropy(np.zeros((2, 3)), [0.0, 1.0]), "整数"),
        (lambda: ch.cross_entropy(np.zeros((2, 3)), [0]), "批大小"),
        (lambda: ch.cross_entropy(np.zeros((2, 3)), np.ones((2, 3))), "和为 1"),
        (lambda: ch.cross_entropy(np.zeros((2, 3)), np.ones((2, 2)) / 2), "形状"),
        (lambda: ch.cross_entropy(np.zeros((2, 3)), [0, 1], reduction="avg"), "reduction"),
        (lambda: ch.cross_entropy_from_probs(np.array([[2.0, -1.0]]), [0]), r"\[0, 1\]"),
        (lambda: ch.cross_entropy_from_probs(np.array([[0.2, 0.2]]), [0]), "logit"),
    ],
)
def test_bad_input_raises_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_naive_softmax_overflows_where_stable_does_not():
    z = np.array([[1000.0, 999.0, 0.0]])
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(ch.softmax_naive(z)).any()
    np.testing.assert_allclose(ch.softmax(z), torch.softmax(t64(z), -1), atol=1e-16)


logit_rows = arrays(
    np.float64, st.tuples(st.integers(1, 6), st.integers(1, 8)),
    elements=st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=60, deadline=None)
@given(z=logit_rows, c=st.floats(-1e4, 1e4))
def test_softmax_is_shift_invariant_and_normalised(z, c):
    p = ch.softmax(z)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(ch.softmax(z + c), p, atol=1e-9)
    assert (p >= 0).all()


@settings(max_examples=60, deadline=None)
@given(z=logit_rows, data=st.data())
def test_cross_entropy_is_lse_minus_target_logit(z, data):
    t = np.array(data.draw(st.lists(st.integers(0, z.shape[1] - 1), min_size=z.shape[0], max_size=z.shape[0])))
    ours = ch.cross_entropy(z, t, reduction="none")
    expected = ch.logsumexp(z) - z[np.arange(len(t)), t]
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-9)
    assert (ours >= -1e-9).all()
    ref = F.cross_entropy(t64(z), torch.as_tensor(t), reduction="none")
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(z=logit_rows)
def test_gradient_rows_sum_to_zero_and_are_bounded(z):
    t = np.zeros(z.shape[0], dtype=int)
    g = ch.cross_entropy_grad(z, t) * z.shape[0]
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-12)
    assert (np.abs(g) <= 1 + 1e-12).all()


def test_log_softmax_keeps_precision_for_huge_logits():
    z = np.array([[1e17, 1e17, 1e17 - 64]])
    np.testing.assert_allclose(ch.log_softmax(z), torch.log_softmax(t64(z), -1), rtol=1e-14)
    np.testing.assert_allclose(ch.cross_entropy(z, [0]), F.cross_entropy(t64(z), torch.tensor([0])), rtol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_training_matches_torch_sgd(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 4, size=40)
    y[:4] = np.arange(4)  # 保证 4 个类别都出现
    W, b, history = ch.train_softmax_regression(X, y, lr=0.3, steps=25)
    W_t = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    b_t = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([W_t, b_t], lr=0.3)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = F.cross_entropy(t64(X) @ W_t + b_t, torch.as_tensor(y))
        losses.append(loss.item())
        loss.backward()
        opt.step()
    np.testing.assert_allclose(W, W_t.detach(), atol=1e-12)
    np.testing.assert_allclose(b, b_t.detach(), atol=1e-12)
    np.testing.assert_allclose(history, losses, atol=1e-12)
    assert history[0] == pytest.approx(np.log(4))


def test_training_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="形状"):
        ch.train_softmax_regression(np.zeros((5, 2)), np.zeros(4, dtype=int))


def test_naive_softmax_agrees_on_moderate_logits():
    z = np.random.default_rng(0).normal(scale=3.0, size=(8, 5))
    np.testing.assert_allclose(ch.softmax_naive(z), torch.softmax(t64(z), -1), atol=1e-15)
