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
from mlbook.testing import BadInput, bad_input_params, t64


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


Z23 = np.zeros((2, 3))

BAD_INPUTS = [
    BadInput("no_class_axis", lambda: ch.softmax(np.zeros((2, 0))), "类别维"),
    BadInput("scalar", lambda: ch.softmax(np.float64(1.0)), "类别维"),
    BadInput("nan", lambda: ch.softmax([[0.0, np.nan]]), "nan"),
    BadInput("posinf", lambda: ch.softmax([[0.0, np.inf]]), r"\+inf"),
    BadInput("masked_row", lambda: ch.softmax([[-np.inf, -np.inf]]), "全是 -inf"),
    BadInput("ce_1d", lambda: ch.cross_entropy(np.zeros(3), [0]), r"\(N, C\)"),
    BadInput("ce_index_high", lambda: ch.cross_entropy(Z23, [0, 3]), r"\[0, 3\)"),
    BadInput("ce_index_negative", lambda: ch.cross_entropy(Z23, [0, -1]), r"\[0, 3\)"),
    BadInput("ce_float_index", lambda: ch.cross_entropy(Z23, [0.0, 1.0]), "整数"),
    BadInput("ce_batch", lambda: ch.cross_entropy(Z23, [0]), "批大小"),
    BadInput("ce_probs_sum", lambda: ch.cross_entropy(Z23, np.ones((2, 3))), "和为 1"),
    BadInput("ce_probs_shape", lambda: ch.cross_entropy(Z23, np.ones((2, 2)) / 2), "形状"),
    BadInput("ce_reduction", lambda: ch.cross_entropy(Z23, [0, 1], reduction="avg"), "reduction"),
    BadInput("probs_range", lambda: ch.cross_entropy_from_probs(np.array([[2.0, -1.0]]), [0]), r"\[0, 1\]"),
    BadInput("probs_are_logits", lambda: ch.cross_entropy_from_probs(np.array([[0.2, 0.2]]), [0]), "logit"),
    BadInput(
        "probs_reduction",
        lambda: ch.cross_entropy_from_probs(np.full((1, 2), 0.5), [0], reduction="avg"),
        "reduction",
    ),
    BadInput("grad_1d", lambda: ch.cross_entropy_grad(np.zeros(3), [0]), r"\(N, C\)"),
    BadInput("grad_3d", lambda: ch.cross_entropy_grad(np.zeros((2, 3, 4)), [0, 1]), r"\(N, C\)"),
    BadInput("complex_logits", lambda: ch.cross_entropy(Z23 + 1j, [0, 1]), "logits.*complex", TypeError),
    BadInput("string_logits", lambda: ch.softmax(["1", "2"]), "logits", TypeError),
    BadInput("complex_probs", lambda: ch.cross_entropy_from_probs(np.full((1, 2), 0.5 + 0j), [0]), "probs", TypeError),
    BadInput("lse_axis", lambda: ch.logsumexp(Z23, axis=2), "axis=2"),
    BadInput("lse_nan", lambda: ch.logsumexp([[np.nan, 0.0]], axis=0), "nan"),
    BadInput("lse_string", lambda: ch.logsumexp(["a"]), "z", TypeError),
    BadInput("train_empty", lambda: ch.train_softmax_regression(np.zeros((0, 2)), []), "空"),
    BadInput("train_float_labels", lambda: ch.train_softmax_regression(np.zeros((2, 2)), [0.0, 1.0]), "整数"),
    BadInput("train_shapes", lambda: ch.train_softmax_regression(np.zeros((3, 2)), np.zeros(4, int)), "形状"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD_INPUTS))
def test_bad_inputs(case):
    case.check()


def test_index_targets_use_gather_not_one_hot():
    # np.eye(C)[t] 需要 C² 个 float：C = 10⁵ 时 74.5 GiB（MemoryError）；gather 只要 O(N·C)
    rng = np.random.default_rng(0)
    z, t = rng.normal(size=(2, 100_000)), np.array([0, 99_999])
    np.testing.assert_allclose(ch.cross_entropy(z, t), F.cross_entropy(t64(z), torch.as_tensor(t)), rtol=1e-14)
    zt = t64(z, requires_grad=True)
    F.cross_entropy(zt, torch.as_tensor(t)).backward()
    np.testing.assert_allclose(ch.cross_entropy_grad(z, t), zt.grad, atol=1e-17)


@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_logsumexp_validates_the_axis_it_reduces(axis):
    cases = [
        [[-np.inf, 0.0], [-np.inf, 1.0]],  # axis=0：第一列全是 -inf → -inf（不是 nan）
        [[-np.inf, -np.inf], [0.0, 0.0]],  # axis=1 的第一行全 -inf；axis=0 完全合法
        [[np.inf, 0.0], [1.0, 2.0]],  # +inf → +inf，与 torch 一致
        np.random.default_rng(axis + 5).normal(size=(2, 2)) * 500,
    ]
    for z in cases:
        z = np.asarray(z)
        np.testing.assert_array_equal(
            np.isinf(ch.logsumexp(z, axis=axis)), torch.logsumexp(t64(z), dim=axis).isinf().numpy()
        )
        np.testing.assert_allclose(ch.logsumexp(z, axis=axis), torch.logsumexp(t64(z), dim=axis), rtol=1e-15)


def test_logsumexp_of_empty_axis_is_minus_inf():
    for shape, axis in [((2, 0), 1), ((0, 3), 0), ((0,), 0)]:
        z = np.zeros(shape)
        np.testing.assert_array_equal(ch.logsumexp(z, axis=axis), torch.logsumexp(t64(z), dim=axis))


def test_logsumexp_of_3d_along_middle_axis():
    z = np.random.default_rng(3).normal(size=(2, 5, 3)) * 30
    np.testing.assert_allclose(ch.logsumexp(z, axis=1), torch.logsumexp(t64(z), dim=1), rtol=1e-15)


def test_gradient_bounds_are_reached_exactly_in_floating_point():
    g = ch.cross_entropy_grad(np.array([[40.0, 0.0, -np.inf]]), np.array([1]))
    assert g[0, 0] == 1.0 and g[0, 1] == -1.0 and g[0, 2] == 0.0


def test_probabilities_passed_to_cross_entropy_give_a_smaller_loss_in_a_narrow_band():
    # 常见错误 5：错得离谱时，传入概率的损失反而更小，并被困在 [log(1+2/e), log(e+2)] 里
    z = t64([[10.0, 0.0, 0.0]], requires_grad=True)
    right = F.cross_entropy(z, torch.tensor([1]))
    wrong = F.cross_entropy(z.softmax(-1), torch.tensor([1]))
    assert wrong.item() < right.item()
    assert np.log(1 + 2 / np.e) <= wrong.item() <= np.log(np.e + 2)
    (g_wrong,) = torch.autograd.grad(wrong, z)
    assert g_wrong.norm() < 1e-3


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
