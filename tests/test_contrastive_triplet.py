"""对比损失、Margin Loss 与 Triplet Loss：pairwise_distance / margin_ranking_loss / triplet_margin_loss 对照
PyTorch（float64，含 swap 与 eps、梯度对照自动求导），对比损失对照按公式组合的参考，batch-hard 对照逐锚点暴力枚举；
坏输入与性质测试。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mlbook
from mlbook.chapters import contrastive_triplet as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64

P_VALUES = [1.0, 2.0, 3.0, np.inf]


def _grads(f, *xs, **kw):
    """f(*xs, **kw) 与它对每个 x 的梯度（float64 叶子张量）。"""
    ts = [t64(x, True) for x in xs]
    out = f(*ts, **kw)
    return out, torch.autograd.grad(out.sum(), ts)


# ---------------------------------------------------------------- pairwise_distance


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("shapes", [((6, 5), (6, 5)), ((3, 1, 4), (5, 4)), ((7,), (7,)), ((1, 3), (4, 3))], ids=str)
def test_pairwise_distance_matches_torch(p, shapes):
    r = seeded(len(shapes[0]) + shapes[1][0])
    a, b = r.normal(size=shapes[0]), r.normal(size=shapes[1])
    for eps, keepdim in [(1e-6, False), (0.0, True), (0.3, False), (1e-6, True)]:
        ours, g_ours = _grads(ch.pairwise_distance, a, b, p=p, eps=eps, keepdim=keepdim)
        ref, g_ref = _grads(F.pairwise_distance, a, b, p=p, eps=eps, keepdim=keepdim)
        assert ours.shape == ref.shape
        assert_close(ours, ref, atol=1e-15, rtol=1e-14)
        for go, gr in zip(g_ours, g_ref):
            assert_close(go, gr, atol=1e-14, rtol=1e-13)


def test_pairwise_distance_eps_is_added_to_the_difference():
    x = np.array([[1.0, 2.0, 3.0]])
    assert_close(ch.pairwise_distance(x, x), [1e-6 * np.sqrt(3)], atol=0, rtol=1e-15)
    # 加在差上，所以不对称：d(x, y) ≠ d(y, x)
    y = np.array([[1.5, 2.0, 2.0]])
    assert abs(float(ch.pairwise_distance(x, y) - ch.pairwise_distance(y, x))) > 1e-7


# ---------------------------------------------------------------- margin_ranking_loss


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_margin_ranking_loss_matches_torch(seed, reduction):
    r = seeded(seed)
    s1, s2 = r.normal(size=(4, 5)), r.normal(size=(4, 5))
    y = r.choice([-1.0, 1.0], size=(4, 5))
    for margin in [0.0, 0.7, -0.3]:
        kw = dict(target=t64(y), margin=margin, reduction=reduction)
        ours, g_ours = _grads(ch.margin_ranking_loss, s1, s2, **kw)
        ref, g_ref = _grads(F.margin_ranking_loss, s1, s2, **kw)
        assert_close(ours, ref, atol=1e-15)
        for go, gr in zip(g_ours, g_ref):
            assert_close(go, gr, atol=1e-15)


def test_margin_ranking_two_tower_sign():
    """分数越大越好：排序正确且差距超过间隔时损失为 0，排序错误时为 m − s⁺ + s⁻。"""
    out = ch.margin_ranking_loss([0.9, 0.2], [0.1, 0.8], [1, 1], margin=0.5, reduction="none")
    assert_close(out, [0.0, 0.5 - 0.2 + 0.8], atol=1e-15)
    # target 取 −1 等价于交换两个输入
    r = seeded(5)
    s1, s2 = r.normal(size=6), r.normal(size=6)
    flipped = ch.margin_ranking_loss(s1, s2, -np.ones(6), 0.3)
    assert_close(flipped, ch.margin_ranking_loss(s2, s1, np.ones(6), 0.3), atol=0)


# ---------------------------------------------------------------- triplet_margin_loss


def _triplets(r, b=9, d=4):
    a = r.normal(size=(b, d))
    return a, a + 0.8 * r.normal(size=(b, d)), a + 1.2 * r.normal(size=(b, d))


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_margin_loss_matches_torch(p, swap):
    configs = [(0, 1.0, 1e-6, "mean"), (1, 0.4, 0.0, "none"), (2, 2.0, 0.05, "sum"), (3, 1.0, 1e-6, "none")]
    for seed, margin, eps, reduction in configs:
        a, pos, neg = _triplets(seeded(seed))
        kw = dict(margin=margin, p=p, eps=eps, swap=swap, reduction=reduction)
        ours, g_ours = _grads(ch.triplet_margin_loss, a, pos, neg, **kw)
        ref, g_ref = _grads(F.triplet_margin_loss, a, pos, neg, **kw)
        assert_close(ours, ref, atol=1e-14, rtol=1e-14)
        for go, gr in zip(g_ours, g_ref):
            assert_close(go, gr, atol=1e-14, rtol=1e-13)


def test_triplet_unbatched_and_empty_like_torch():
    a, pos, neg = _triplets(seeded(1))
    for swap in [False, True]:
        one = [t64(v[0]) for v in (a, pos, neg)]
        assert_close(ch.triplet_margin_loss(*one, swap=swap), F.triplet_margin_loss(*one, swap=swap), atol=1e-15)
    empty = t64(np.zeros((0, 4)))
    assert ch.triplet_margin_loss(empty, empty, empty, reduction="none").shape == (0,)
    assert_close(ch.triplet_margin_loss(empty, empty, empty), F.triplet_margin_loss(empty, empty, empty), atol=0)


def test_swap_replaces_the_negative_distance():
    """正样本离负样本更近时，swap 把 d(a, n) 换成 d(p, n)，损失变大。"""
    a, pos, neg = np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), np.array([[1.5, 0.0]])
    plain = ch.triplet_margin_loss(a, pos, neg, eps=0.0)
    swapped = ch.triplet_margin_loss(a, pos, neg, eps=0.0, swap=True)
    assert_close(plain, 1.0 + 1.0 - 1.5, atol=1e-15)
    assert_close(swapped, 1.0 + 1.0 - 0.5, atol=1e-15)
    assert_close(swapped, F.triplet_margin_loss(t64(a), t64(pos), t64(neg), eps=0.0, swap=True), atol=1e-15)


def test_hand_derived_triplet_gradient():
    """式 (eq-triplet-grad)：激活的三元组上 ∂a = u/‖u‖ − v/‖v‖，∂p = −u/‖u‖，∂n = v/‖v‖；其余为 0。"""
    a, pos, neg = _triplets(seeded(4), b=12)
    eps = 1e-6
    u, v = a - pos + eps, a - neg + eps
    du, dv = np.linalg.norm(u, axis=1, keepdims=True), np.linalg.norm(v, axis=1, keepdims=True)
    act = (1.0 + du - dv > 0).astype(float)
    assert 0 < act.sum() < len(a)  # 有激活的、也有不激活的
    _, (ga, gp, gn) = _grads(ch.triplet_margin_loss, a, pos, neg, reduction="sum")
    assert_close(ga, act * (u / du - v / dv), atol=1e-15)
    assert_close(gp, -act * u / du, atol=1e-15)
    assert_close(gn, act * v / dv, atol=1e-15)
    assert_close(ga + gp + gn, np.zeros_like(a), atol=1e-15)


def test_notes_version_differs_from_torch_by_eps():
    """笔记的 PairwiseMarginLoss（无 ε）= eps=0 的三元组损失，与默认 ε 的 torch 差在 1e-6 量级。"""
    a, pos, neg = _triplets(seeded(2))
    ta, tp, tn = t64(a), t64(pos), t64(neg)
    notes = torch.mean(torch.clamp(torch.norm(ta - tp, dim=1) - torch.norm(ta - tn, dim=1) + 1.0, min=0.0))
    assert_close(ch.triplet_margin_loss(a, pos, neg, eps=0.0), notes, atol=1e-15)
    gap = abs(float(notes - F.triplet_margin_loss(ta, tp, tn)))
    assert 1e-9 < gap < 1e-5


def test_float32_tensors_keep_dtype_and_graph():
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = ch.triplet_margin_loss(x, x.flip(0), x.roll(1, 0))
    assert out.dtype == torch.float32 and out.requires_grad


# ---------------------------------------------------------------- contrastive_loss


def _contrastive_ref(x1, x2, y, margin):
    d = F.pairwise_distance(t64(x1), t64(x2))
    y = t64(y)
    return (0.5 * (y * d**2 + (1 - y) * F.relu(margin - d) ** 2)).mean()


@pytest.mark.parametrize(("seed", "margin"), [(0, 0.5), (1, 1.0), (2, 3.0)])
def test_contrastive_loss_matches_formula(seed, margin):
    r = seeded(seed)
    x1, x2 = r.normal(size=(10, 3)), 0.6 * r.normal(size=(10, 3))
    y = r.integers(0, 2, size=10)
    assert_close(ch.contrastive_loss(x1, x2, y, margin), _contrastive_ref(x1, x2, y, margin), atol=1e-15)
    # 梯度：式 (eq-triplet-contrastive-grad) 与中心差分
    u = x1 - x2 + 1e-6
    d = np.linalg.norm(u, axis=1, keepdims=True)
    coef = np.where(y[:, None] == 1, 1.0, -np.maximum(margin - d, 0) / d)
    _, (g1, g2) = _grads(lambda a, b: ch.contrastive_loss(a, b, y, margin), x1, x2)
    assert_close(g1, coef * u / len(y), atol=1e-15)
    assert_close(g2, -coef * u / len(y), atol=1e-15)
    num = mlbook.numeric_grad(lambda z: ch.contrastive_loss(z, x2, y, margin).item(), x1)
    assert_close(g1, num, atol=1e-8)


def test_contrastive_label_convention_y1_is_similar():
    x1 = np.zeros((2, 2))
    close, far = np.array([[0.1, 0.0], [3.0, 0.0]]), np.array([[3.0, 0.0], [0.1, 0.0]])
    y = [1, 0]  # 第一对相似，第二对不相似
    good = ch.contrastive_loss(x1, close, y).item()
    bad = ch.contrastive_loss(x1, far, y).item()
    assert good < 0.01 < 1.0 < bad
    # 布尔标签与整数标签一致
    assert_close(ch.contrastive_loss(x1, close, np.array([True, False])), good, atol=0)
    assert_close(ch.contrastive_loss(x1, close, torch.tensor([True, False])), good, atol=0)


# ---------------------------------------------------------------- batch_hard_triplet_loss


def _batch_hard_ref(E, labels, margin):
    D = torch.cdist(E.detach(), E.detach())
    terms = []
    for i in range(len(labels)):
        pos = [j for j in range(len(labels)) if labels[j] == labels[i] and j != i]
        neg = [k for k in range(len(labels)) if labels[k] != labels[i]]
        if pos and neg:
            jp = max(pos, key=lambda j: D[i, j])
            kn = min(neg, key=lambda k: D[i, k])
            terms.append(F.triplet_margin_loss(E[i], E[jp], E[kn], margin=margin, eps=0.0))
    return torch.stack(terms).mean()


LABELS = [
    np.array([0, 0, 1, 1, 2, 2]),
    np.array([0, 0, 0, 1, 1, 1, 1, 2]),  # 类 2 只有一个：不当锚点，但可以当负样本
    np.array([3, 1, 3, 1, 3, 1, 7, 7, 7]),
    np.array([0, 1]).repeat(5),
]


@pytest.mark.parametrize("labels", LABELS, ids=lambda x: str(list(x)))
def test_batch_hard_matches_brute_force(labels):
    for seed, margin in [(0, 0.3), (1, 1.0), (2, 5.0)]:
        E = seeded(seed).normal(size=(len(labels), 3))
        te, tr = t64(E, True), t64(E, True)
        ours, ref = ch.batch_hard_triplet_loss(te, labels, margin), _batch_hard_ref(tr, labels, margin)
        ours.backward()
        ref.backward()
        assert_close(ours, ref, atol=1e-15)
        assert_close(te.grad, tr.grad, atol=1e-15)


def test_batch_hard_duplicate_embeddings_have_finite_gradient():
    """重复的嵌入使非对角线距离也为 0：梯度不能是 nan。"""
    E = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    e = t64(E, True)
    loss = ch.batch_hard_triplet_loss(e, np.array([0, 0, 1, 1]), 3.0)
    loss.backward()
    assert_close(loss, 3.0 + 0.0 - np.sqrt(5.0), atol=1e-15)
    assert torch.isfinite(e.grad).all()
    # 全部坍缩到一点：损失为 margin，梯度为 0
    z = t64(np.zeros((4, 2)), True)
    loss = ch.batch_hard_triplet_loss(z, np.array([0, 0, 1, 1]), 0.7)
    loss.backward()
    assert_close(loss, 0.7, atol=0)
    assert_close(z.grad, np.zeros((4, 2)), atol=0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), n_cls=st.integers(2, 4), k=st.integers(2, 4), margin=st.floats(0.1, 3.0))
def test_batch_hard_properties(seed, n_cls, k, margin):
    """最难的三元组不小于平均三元组；对平移与正交变换不变。"""
    r = seeded(seed)
    labels = np.repeat(np.arange(n_cls), k)
    E = r.normal(size=(len(labels), 3))
    bh = ch.batch_hard_triplet_loss(E, labels, margin).item()
    D = np.linalg.norm(E[:, None] - E[None], axis=-1)
    per_anchor = []
    for i in range(len(labels)):
        pos = [j for j in range(len(labels)) if labels[j] == labels[i] and j != i]
        neg = [j for j in range(len(labels)) if labels[j] != labels[i]]
        per_anchor.append(np.mean([max(0.0, margin + D[i, j] - D[i, m]) for j in pos for m in neg]))
    assert bh >= np.mean(per_anchor) - 1e-12
    Q, _ = np.linalg.qr(r.normal(size=(3, 3)))
    moved = E @ Q + r.normal(size=3)
    assert_close(ch.batch_hard_triplet_loss(moved, labels, margin), bh, atol=1e-13)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), b=st.integers(1, 6), scale=st.floats(0.1, 10.0))
def test_triplet_loss_properties(seed, b, scale):
    """非负；≤ margin + d(a,p)；eps=0 时对平移不变、对缩放是 (margin 同比缩放时) 齐次的；swap 只会增大损失。"""
    r = seeded(seed)
    a, pos, neg = (r.normal(size=(b, 3)) for _ in range(3))
    loss = ch.triplet_margin_loss(a, pos, neg, eps=0.0, reduction="none").numpy()
    assert (loss >= 0).all()
    assert (loss <= 1.0 + np.linalg.norm(a - pos, axis=1) + 1e-12).all()
    shift = r.normal(size=3)
    moved = ch.triplet_margin_loss(a + shift, pos + shift, neg + shift, eps=0.0, reduction="none")
    assert_close(moved, loss, atol=1e-13)
    scaled = ch.triplet_margin_loss(scale * a, scale * pos, scale * neg, margin=scale, eps=0.0, reduction="none")
    assert_close(scaled, scale * loss, atol=1e-12, rtol=1e-12)
    swapped = ch.triplet_margin_loss(a, pos, neg, eps=0.0, swap=True, reduction="none").numpy()
    assert (swapped >= loss - 1e-15).all()


# ---------------------------------------------------------------- 坏输入

A3 = np.ones((4, 3))
S = np.ones(4)
LAB = np.array([0, 0, 1, 1])
BAD = [
    BadInput("不能广播", lambda: ch.pairwise_distance(np.ones((4, 3)), np.ones((5, 3))), "x1 的形状"),
    BadInput("标量输入", lambda: ch.pairwise_distance(1.0, 2.0), "至少要有一维"),
    BadInput("p 为 0", lambda: ch.pairwise_distance(A3, A3, p=0), "p"),
    BadInput("p 为 nan", lambda: ch.pairwise_distance(A3, A3, p=np.nan), "p"),
    BadInput("eps 为负", lambda: ch.pairwise_distance(A3, A3, eps=-1e-6), "eps"),
    BadInput("eps 是字符串", lambda: ch.pairwise_distance(A3, A3, eps="1e-6"), "eps", TypeError),
    BadInput("x1 含 nan", lambda: ch.pairwise_distance(A3 * np.nan, A3), "x1"),
    BadInput("x2 复数", lambda: ch.pairwise_distance(A3, A3 + 1j), "x2", TypeError),
    BadInput("x1 布尔张量", lambda: ch.pairwise_distance(torch.ones(2, 3, dtype=torch.bool), A3[:2]), "x1", TypeError),
    BadInput("target 取 0", lambda: ch.margin_ranking_loss(S, S, np.zeros(4)), "target"),
    BadInput("target 形状", lambda: ch.margin_ranking_loss(S, S, np.ones((4, 1))), "target"),
    BadInput("input2 形状", lambda: ch.margin_ranking_loss(S, np.ones(3), S), "input2"),
    BadInput("reduction 拼错", lambda: ch.margin_ranking_loss(S, S, S, reduction="avg"), "reduction"),
    BadInput("margin 为 inf", lambda: ch.margin_ranking_loss(S, S, S, margin=np.inf), "margin"),
    BadInput("triplet 三维", lambda: ch.triplet_margin_loss(A3[None], A3[None], A3[None]), "anchor"),
    BadInput("positive 形状", lambda: ch.triplet_margin_loss(A3, A3[:3], A3), "positive"),
    BadInput("negative 形状", lambda: ch.triplet_margin_loss(A3, A3, A3[:, :2]), "negative"),
    BadInput("triplet margin 为 0", lambda: ch.triplet_margin_loss(A3, A3, A3, margin=0.0), "margin"),
    BadInput("triplet margin 为负", lambda: ch.triplet_margin_loss(A3, A3, A3, margin=-1.0), "margin"),
    BadInput("swap 是字符串", lambda: ch.triplet_margin_loss(A3, A3, A3, swap="yes"), "swap", TypeError),
    BadInput("triplet reduction", lambda: ch.triplet_margin_loss(A3, A3, A3, reduction="batchmean"), "reduction"),
    BadInput("contrastive 一维", lambda: ch.contrastive_loss(S, S, LAB), "x1"),
    BadInput("contrastive x2 形状", lambda: ch.contrastive_loss(A3, A3[:3], LAB), "x2"),
    BadInput("y 形状 (B, 1)", lambda: ch.contrastive_loss(A3, A3, LAB[:, None]), "y"),
    BadInput("y 取 −1", lambda: ch.contrastive_loss(A3, A3, 2 * LAB - 1), "y"),
    BadInput("contrastive margin 为 0", lambda: ch.contrastive_loss(A3, A3, LAB, margin=0), "margin"),
    BadInput("embeddings 一维", lambda: ch.batch_hard_triplet_loss(S, LAB, 1.0), "embeddings"),
    BadInput("labels 浮点", lambda: ch.batch_hard_triplet_loss(A3, LAB * 1.0, 1.0), "labels", TypeError),
    BadInput("labels 长度", lambda: ch.batch_hard_triplet_loss(A3, LAB[:3], 1.0), "labels"),
    BadInput("只有一类", lambda: ch.batch_hard_triplet_loss(A3, 0 * LAB, 1.0), "labels"),
    BadInput("每类只有一个", lambda: ch.batch_hard_triplet_loss(A3, np.arange(4), 1.0), "labels"),
    BadInput("batch-hard margin 为 0", lambda: ch.batch_hard_triplet_loss(A3, LAB, 0.0), "margin"),
    BadInput("margin 是布尔", lambda: ch.batch_hard_triplet_loss(A3, LAB, True), "margin", TypeError),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()
