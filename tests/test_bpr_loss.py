"""BPR 损失：bpr_loss / bpr_loss_backward 对照 -F.logsigmoid 与自动求导（float64），矩阵分解的手推梯度对照自动求导，
每用户 AUC 对照 sklearn，负采样、合成数据与训练的性质，坏输入与性质测试。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from mlbook.chapters.roc_pr_auc import roc_auc_score
from sklearn.metrics import roc_auc_score as sk_roc_auc

import mlbook
from mlbook.chapters import bpr_loss as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64


def torch_bpr(pos, neg, reduction):
    loss = -F.logsigmoid(pos - neg)
    return {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]


# (pos 形状, neg 形状)：含 (B, 1) 对 (B, K) 的广播与标量
SHAPES = [((16,), (16,)), ((6, 1), (6, 4)), ((3, 5), (5,)), ((), (7,)), ((2, 3, 4), (2, 3, 4)), ((), ())]
REDUCTIONS = ["none", "mean", "sum"]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_loss_and_backward_match_torch(seed, shapes, reduction):
    r = seeded(seed)
    p, q = r.normal(scale=3.0, size=shapes[0]), r.normal(scale=3.0, size=shapes[1])
    pt, qt = t64(p, True), t64(q, True)
    ref = torch_bpr(pt, qt, reduction)
    assert_close(ch.bpr_loss(p, q, reduction), ref.detach(), atol=1e-15, rtol=1e-15)
    g = r.normal(size=ref.shape) if reduction == "none" else 1.0
    (ref * t64(g)).sum().backward()
    dp, dq = ch.bpr_loss_backward(g, p, q, reduction)
    assert dp.shape == p.shape and dq.shape == q.shape
    assert_close(dp, pt.grad, atol=1e-15)
    assert_close(dq, qt.grad, atol=1e-15)


def test_extreme_margins_are_finite_and_match_softplus():
    m = np.array([-1e300, -1e4, -800.0, -40.0, 0.0, 40.0, 800.0, 1e300])
    ours = ch.bpr_loss(m, 0.0, reduction="none")
    assert np.isfinite(ours).all()
    assert_close(ours, F.softplus(t64(-m), threshold=1e308), atol=0, rtol=1e-15)
    assert_close(ours[:3], -m[:3], atol=0, rtol=1e-15)  # 很负的分差：损失 ≈ -x
    assert 0 < ours[5] < 1e-17  # e^{-40}，不是舍入成的 0
    dp, _ = ch.bpr_loss_backward(np.ones_like(m), m, 0.0, "none")
    assert_close(dp, -torch.sigmoid(t64(-m)), atol=1e-15)


def test_naive_version_overflows_at_large_negative_margins():
    r = seeded(1)
    p, q = r.normal(size=20), r.normal(size=20)
    assert_close(ch.bpr_loss_naive(p, q), ch.bpr_loss(p, q), atol=1e-14)
    with np.errstate(over="ignore", divide="ignore"):
        assert np.isinf(ch.bpr_loss_naive(-1000.0, 0.0))
        assert ch.bpr_loss_naive(40.0, 0.0) == 0  # σ(40) 舍入成 1
    assert_close(ch.bpr_loss(-1000.0, 0.0), 1000.0, atol=0, rtol=1e-15)


def test_notes_code_raises_type_error_on_numpy():
    with pytest.raises(TypeError, match="Tensor"):
        np.log(torch.sigmoid(np.ones(3) - np.zeros(3)))


def test_gradient_matches_finite_differences():
    r = seeded(5)
    p, q = r.normal(size=(4, 1)), r.normal(size=(4, 3))
    dp, dq = ch.bpr_loss_backward(1.0, p, q)
    assert_close(dp, mlbook.numeric_grad(lambda a: ch.bpr_loss(a, q), p), atol=1e-9)
    assert_close(dq, mlbook.numeric_grad(lambda b: ch.bpr_loss(p, b), q), atol=1e-9)


def test_empty_inputs_sum_and_none():
    e = np.zeros((0, 3))
    assert ch.bpr_loss(e, e, "none").shape == (0, 3)
    assert ch.bpr_loss(e, e, "sum") == 0
    dp, dq = ch.bpr_loss_backward(1.0, e, e, "sum")
    assert dp.shape == dq.shape == (0, 3)


def _torch_mf_grads(params, u, i, j, reg):
    tp = {k: t64(v, True) for k, v in params.items()}
    pu, qi, qj = tp["P"][u], tp["Q"][i], tp["Q"][j]
    bi, bj = tp["b"][i], tp["b"][j]
    x = (pu * (qi - qj)).sum(1) + bi - bj
    loss = -F.logsigmoid(x).sum() + 0.5 * reg * sum((t**2).sum() for t in (pu, qi, qj, bi, bj))
    loss.backward()
    return loss.detach(), {k: v.grad for k, v in tp.items()}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("reg", [0.0, 0.1, 2.0])
def test_mf_gradient_matches_autograd_with_repeated_indices(seed, reg):
    r = seeded(seed)
    n_users, n_items = 4, 6
    params = ch.init_bpr_mf(n_users, n_items, 3, scale=1.0, seed=seed)
    params["b"] = r.normal(size=n_items)
    train = r.random((n_users, n_items)) < 0.4
    train[:, 0], train[:, -1] = True, False  # 每个用户都有正例与负例
    u, i, j = ch.sample_bpr_triples(train, 50, r)  # 50 > 用户数、物品数：索引必然重复
    loss, grads = ch.bpr_mf_loss_and_grad(params, u, i, j, reg)
    ref_loss, ref = _torch_mf_grads(params, u, i, j, reg)
    assert_close(loss, ref_loss, atol=1e-12)
    for k in params:
        assert grads[k].shape == params[k].shape
        assert_close(grads[k], ref[k], atol=1e-13)


def test_mf_gradient_matches_finite_differences():
    r = seeded(9)
    params = ch.init_bpr_mf(3, 5, 2, scale=1.0, seed=2)
    u, i, j = np.array([0, 1, 1, 2]), np.array([0, 1, 1, 4]), np.array([3, 2, 0, 3])
    params["b"] = r.normal(size=5)
    _, grads = ch.bpr_mf_loss_and_grad(params, u, i, j, reg=0.5)
    for k in params:

        def f(v, k=k):
            return ch.bpr_mf_loss_and_grad({**params, k: v}, u, i, j, reg=0.5)[0]

        assert_close(grads[k], mlbook.numeric_grad(f, params[k]), atol=1e-8)


def test_user_bias_cancels_in_the_margin():
    """分差里每个用户的常数抵消：给某个用户的全部得分加同一个数，损失不变。"""
    r = seeded(3)
    p, q = r.normal(size=(5, 1)), r.normal(size=(5, 4))
    c = r.normal(size=(5, 1)) * 100
    assert_close(ch.bpr_loss(p + c, q + c), ch.bpr_loss(p, q), atol=1e-13)


@pytest.mark.parametrize("seed", range(3))
def test_sampled_triples_are_valid_and_positives_uniform(seed):
    r = seeded(seed)
    train = r.random((30, 12)) < 0.3
    train[:, 0], train[:, 1] = True, False
    u, i, j = ch.sample_bpr_triples(train, 20000, r)
    assert train[u, i].all() and not train[u, j].any()
    # (u, i) 在训练交互上均匀：每个用户被抽中的比例 ≈ 它的交互数 / 总交互数
    freq = np.bincount(u, minlength=30) / len(u)
    assert np.abs(freq - train.sum(1) / train.sum()).max() < 0.01
    # j 在该用户的非交互物品上均匀：每个 j 的条件频率 ≈ 1/(非交互数)
    u0 = u == 0
    counts = np.bincount(j[u0], minlength=12)[~train[0]] / u0.sum()
    assert np.abs(counts - 1 / (~train[0]).sum()).max() < 0.06


def test_make_implicit_feedback_structure_and_determinism():
    train, test, util = ch.make_implicit_feedback(n_users=30, n_items=25, n_per_user=8, n_test=3, seed=4)
    assert train.shape == test.shape == util.shape == (30, 25)
    assert (train.sum(1) == 5).all() and (test.sum(1) == 3).all()
    assert not (train & test).any()
    again = ch.make_implicit_feedback(n_users=30, n_items=25, n_per_user=8, n_test=3, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, test, util), again))
    other = ch.make_implicit_feedback(n_users=30, n_items=25, n_per_user=8, n_test=3, seed=5)
    assert not np.array_equal(train, other[0])


def _sklearn_per_user(scores, train, test):
    out = np.full(len(scores), np.nan)
    for u in range(len(scores)):
        cand = ~train[u]
        if 0 < test[u, cand].sum() < cand.sum():
            out[u] = sk_roc_auc(test[u, cand], scores[u, cand])
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ties", [False, True])
def test_per_user_auc_matches_sklearn(seed, ties):
    r = seeded(seed)
    scores = r.normal(size=(25, 30))
    if ties:
        scores = np.round(scores)  # 大量并列
    train = r.random((25, 30)) < 0.2
    test = (r.random((25, 30)) < 0.15) & ~train
    test[0] = False  # 没有测试正例的用户：nan
    ours = ch.per_user_auc(scores, train, test)
    ref = _sklearn_per_user(scores, train, test)
    assert np.isnan(ours[0])
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    assert_close(ours[~np.isnan(ours)], ref[~np.isnan(ref)], atol=1e-15)


def test_training_beats_popularity_and_loss_decreases():
    train, test, _ = ch.make_implicit_feedback(n_users=120, n_items=100, seed=1)
    params, hist = ch.train_bpr_mf(train, test, n_epochs=12, seed=1)
    assert len(hist["loss"]) == len(hist["auc"]) == 12
    pop = np.broadcast_to(train.sum(0), train.shape)
    base = np.nanmean(ch.per_user_auc(pop, train, test))
    final = np.nanmean(ch.per_user_auc(ch.mf_scores(params), train, test))
    assert_close(final, hist["auc"][-1], atol=1e-15)
    assert final > base + 0.05
    assert hist["loss"][-1] < np.log(2) - 0.1 < hist["loss"][0] + 0.1
    again, hist2 = ch.train_bpr_mf(train, test, n_epochs=12, seed=1)
    assert hist2 == hist  # 同一个种子完全复现


TRAIN = np.array([[True, False, False], [False, True, False]])
BAD_INPUTS = [
    BadInput("不能广播", lambda: ch.bpr_loss(np.ones(4), np.ones(3)), "pos_scores 的形状"),
    BadInput("reduction 拼错", lambda: ch.bpr_loss(1.0, 0.0, reduction="avg"), "reduction"),
    BadInput("reduction 不是字符串", lambda: ch.bpr_loss(1.0, 0.0, reduction=None), "reduction"),
    BadInput("mean 遇空输入", lambda: ch.bpr_loss(np.ones(0), np.ones(0)), "reduction='mean'"),
    BadInput("pos_scores 含 nan", lambda: ch.bpr_loss([np.nan], [0.0]), "pos_scores"),
    BadInput("neg_scores 含 inf", lambda: ch.bpr_loss([0.0], [np.inf]), "neg_scores"),
    BadInput("neg_scores 是复数", lambda: ch.bpr_loss([0.0], [1j]), "neg_scores", TypeError),
    BadInput("pos_scores 是布尔", lambda: ch.bpr_loss([True], [0.0]), "pos_scores", TypeError),
    BadInput("grad_output 形状（mean）", lambda: ch.bpr_loss_backward(np.ones(2), [1.0, 2.0], 0.0), "grad_output"),
    BadInput("grad_output 形状（none）", lambda: ch.bpr_loss_backward(1.0, [1.0, 2.0], 0.0, "none"), "grad_output"),
    BadInput("train 不是布尔", lambda: ch.sample_bpr_triples(TRAIN.astype(int), 3, seeded(0)), "train"),
    BadInput("train 是一维", lambda: ch.sample_bpr_triples(TRAIN[0], 3, seeded(0)), "train"),
    BadInput("train 没有交互", lambda: ch.sample_bpr_triples(~np.ones((2, 3), bool), 3, seeded(0)), "train"),
    BadInput("用户交互了全部物品", lambda: ch.sample_bpr_triples(np.ones((2, 3), bool), 3, seeded(0)), "全部物品"),
    BadInput("scores 形状不符", lambda: ch.per_user_auc(np.zeros((2, 2)), TRAIN, ~TRAIN), "scores"),
    BadInput("test 不是布尔", lambda: ch.per_user_auc(np.zeros((2, 3)), TRAIN, np.zeros((2, 3))), "test"),
    BadInput("train 与 test 重叠", lambda: ch.per_user_auc(np.zeros((2, 3)), TRAIN, TRAIN), "重叠"),
    BadInput("scores 含 nan", lambda: ch.per_user_auc(np.full((2, 3), np.nan), TRAIN, ~TRAIN), "scores"),
    BadInput("n_test 太大", lambda: ch.make_implicit_feedback(n_test=20, n_per_user=20), "n_test"),
    BadInput("n_per_user 超过物品数", lambda: ch.make_implicit_feedback(n_items=10, n_per_user=10), "n_per_user"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD_INPUTS))
def test_bad_inputs(case):
    case.check()


finite = st.floats(-50, 50)


@settings(max_examples=60, deadline=None)
@given(p=st.lists(finite, min_size=1, max_size=6), c=st.floats(-1e3, 1e3))
def test_shift_invariance_and_antisymmetry(p, c):
    p = np.array(p)
    q = p[::-1].copy()
    assert_close(ch.bpr_loss(p + c, q + c, "none"), ch.bpr_loss(p, q, "none"), atol=1e-12)
    # softplus(-x) - softplus(x) = -x
    assert_close(ch.bpr_loss(p, q, "none") - ch.bpr_loss(q, p, "none"), q - p, atol=1e-12)
    assert (ch.bpr_loss(p, q, "none") > 0).all()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), n_pos=st.integers(1, 8), n_neg=st.integers(1, 8), ties=st.booleans())
def test_auc_error_is_bounded_by_all_pairs_bpr(seed, n_pos, n_neg, ties):
    """1 - AUC ≤ (全部成对上的平均 BPR 损失) / ln 2，并列时也成立。"""
    r = seeded(seed)
    s_pos, s_neg = r.normal(size=n_pos), r.normal(size=n_neg)
    if ties:
        s_pos, s_neg = np.round(s_pos), np.round(s_neg)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    auc = roc_auc_score(y, np.r_[s_pos, s_neg])
    bound = ch.bpr_loss(s_pos[:, None], s_neg[None, :]) / np.log(2)
    assert 1 - auc <= bound + 1e-12
