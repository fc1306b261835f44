"""InfoNCE：info_nce / nt_xent_loss / clip_loss 对照由 F.normalize + F.cross_entropy 搭的参考实现（float64），
手推梯度对照自动求导，逐锚点循环、边界情形、坏输入与性质测试。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mlbook
from mlbook.chapters import infonce as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64


def _ref_nt_xent(z1, z2, temperature):
    """SimCLR 论文的写法：拼成 2N 行，余弦矩阵除以 τ，对角线用布尔掩码填 -inf。"""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(logits, target)


def _ref_nt_xent_dropped(z1, z2, temperature):
    """另一种独立写法：把对角线从矩阵里删掉，变成 2N × (2N-1)，正样本的列下标相应减一。"""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n2 = len(z)
    sim = z @ z.T / temperature
    keep = ~torch.eye(n2, dtype=torch.bool)
    logits = sim[keep].reshape(n2, n2 - 1)
    pos = torch.cat([torch.arange(n2 // 2, n2), torch.arange(n2 // 2)])
    target = pos - (pos > torch.arange(n2)).long()
    return F.cross_entropy(logits, target)


def _ref_clip(img, txt, logit_scale):
    img, txt = F.normalize(img, dim=1), F.normalize(txt, dim=1)
    logits = logit_scale * img @ txt.T
    labels = torch.arange(len(img))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _ref_info_nce(q, k, neg=None, temperature=0.1, reduction="mean", negative_mode="unpaired"):
    """info-nce-pytorch 的 info_nce 的语义（那个包不在环境里，这里按它的定义用 torch 重写）。"""
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    if neg is None:
        logits, labels = q @ k.T, torch.arange(len(q))
    else:
        neg = F.normalize(neg, dim=-1)
        if negative_mode == "unpaired":
            negs = q @ neg.T
        else:
            negs = (q.unsqueeze(1) @ neg.transpose(-2, -1)).squeeze(1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), negs], dim=1)
        labels = torch.zeros(len(q), dtype=torch.long)
    return F.cross_entropy(logits / temperature, labels, reduction=reduction)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("n,d", [(1, 3), (2, 2), (5, 8), (16, 4)])
@pytest.mark.parametrize("tau", [0.05, 0.5, 3.0])
def test_nt_xent_matches_two_torch_references(seed, n, d, tau):
    r = seeded(seed)
    z1, z2 = r.normal(size=(n, d)), 5 * r.normal(size=(n, d))
    ref = _ref_nt_xent(t64(z1), t64(z2), tau)
    assert_close(ch.nt_xent_loss(z1, z2, tau), ref, atol=1e-14)
    assert_close(ch.nt_xent_loss(z1, z2, tau), _ref_nt_xent_dropped(t64(z1), t64(z2), tau), atol=1e-14)
    assert_close(ch.nt_xent_loss_loop(z1, z2, tau), ref, atol=1e-13)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("n,d", [(1, 3), (4, 6), (9, 2)])
@pytest.mark.parametrize("tau", [0.05, 0.3])
def test_nt_xent_gradient_matches_autograd(seed, n, d, tau):
    r = seeded(seed)
    z1, z2 = r.normal(size=(n, d)), r.normal(size=(n, d))
    a, b = t64(z1, True), t64(z2, True)
    _ref_nt_xent(a, b, tau).backward()
    dz1, dz2 = ch.nt_xent_loss_backward(z1, z2, tau)
    assert dz1.shape == z1.shape and dz2.shape == z2.shape
    assert_close(dz1, a.grad, atol=1e-14)
    assert_close(dz2, b.grad, atol=1e-14)


def test_nt_xent_gradient_with_zero_and_tiny_rows_matches_autograd():
    r = seeded(11)
    z1, z2 = r.normal(size=(4, 3)), r.normal(size=(4, 3))
    z1[1] = 0.0
    z2[2] *= 1e-14  # 范数小于 normalize 的 eps=1e-12
    a, b = t64(z1, True), t64(z2, True)
    _ref_nt_xent(a, b, 0.2).backward()
    for ours, ref in zip(ch.nt_xent_loss_backward(z1, z2, 0.2), [a.grad, b.grad]):
        assert_close(ours, ref, atol=1e-15, rtol=1e-13)
    assert_close(ch.nt_xent_loss(z1, z2, 0.2), _ref_nt_xent(t64(z1), t64(z2), 0.2), atol=1e-14)


def test_nt_xent_gradient_matches_finite_differences():
    r = seeded(4)
    z1, z2 = r.normal(size=(3, 4)), r.normal(size=(3, 4))
    num = mlbook.numeric_grad(lambda x: ch.nt_xent_loss(z1, x, 0.4), z2)
    assert_close(ch.nt_xent_loss_backward(z1, z2, 0.4)[1], num, atol=1e-9)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("n,d", [(1, 4), (3, 3), (12, 7)])
@pytest.mark.parametrize("scale", [0.5, 1 / 0.07, 100.0])
def test_clip_loss_and_gradients_match_torch(seed, n, d, scale):
    r = seeded(seed)
    img, txt = r.normal(size=(n, d)), r.normal(size=(n, d))
    a, b, s = t64(img, True), t64(txt, True), t64(scale, True)
    ref = _ref_clip(a, b, s)
    assert_close(ch.clip_loss(img, txt, scale), ref, atol=1e-13)
    ref.backward()
    d_img, d_txt, d_s = ch.clip_loss_backward(img, txt, scale)
    assert_close(d_img, a.grad, atol=1e-14, rtol=1e-14)  # s = 100 时梯度约 60
    assert_close(d_txt, b.grad, atol=1e-14, rtol=1e-14)
    assert_close(d_s, s.grad, atol=1e-15)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("mode", ["in-batch", "unpaired", "paired"])
def test_info_nce_matches_reference(seed, reduction, mode):
    r = seeded(seed)
    n, m, d = 6, 5, 4
    q, k = r.normal(size=(n, d)), r.normal(size=(n, d))
    neg = {"in-batch": None, "unpaired": r.normal(size=(m, d)), "paired": r.normal(size=(n, m, d))}[mode]
    neg_mode = "paired" if mode == "paired" else "unpaired"
    ours = ch.info_nce(q, k, neg, temperature=0.3, reduction=reduction, negative_mode=neg_mode)
    ref = _ref_info_nce(t64(q), t64(k), None if neg is None else t64(neg), 0.3, reduction, neg_mode)
    assert np.shape(ours) == tuple(ref.shape)
    assert_close(ours, ref, atol=1e-14)


def test_info_nce_default_temperature_is_0_1():
    r = seeded(2)
    q, k = r.normal(size=(4, 3)), r.normal(size=(4, 3))
    assert_close(ch.info_nce(q, k), _ref_info_nce(t64(q), t64(k), temperature=0.1), atol=1e-14)


def test_paired_with_shared_negatives_equals_unpaired():
    r = seeded(3)
    q, k, neg = r.normal(size=(5, 4)), r.normal(size=(5, 4)), r.normal(size=(3, 4))
    paired = ch.info_nce(q, k, np.broadcast_to(neg, (5, 3, 4)), negative_mode="paired")
    assert_close(paired, ch.info_nce(q, k, neg), atol=1e-15)


def test_clip_is_mean_of_two_in_batch_info_nce_directions():
    """CLIP = ½(info_nce(I, T) + info_nce(T, I))，温度 1/logit_scale。"""
    r = seeded(5)
    img, txt = r.normal(size=(7, 3)), r.normal(size=(7, 3))
    both = 0.5 * (ch.info_nce(img, txt, temperature=0.05) + ch.info_nce(txt, img, temperature=0.05))
    assert_close(ch.clip_loss(img, txt, 20.0), both, atol=1e-14)


def test_nt_xent_denominator_includes_negatives_and_excludes_self():
    """两个视图相同、N 个方向正交：ℓ = -log(e^{1/τ} / (e^{1/τ} + 2N - 2))，不是 0，也不含 e^{1/τ} 的自身项。"""
    n, tau = 5, 0.3
    e = np.eye(n)
    expect = -np.log(np.exp(1 / tau) / (np.exp(1 / tau) + 2 * n - 2))
    assert_close(ch.nt_xent_loss(e, e, tau), expect, atol=1e-15)


def test_degenerate_and_extreme_inputs():
    r = seeded(6)
    one = r.normal(size=(1, 5))
    assert ch.nt_xent_loss(one, -3 * one) == pytest.approx(0.0, abs=1e-15)  # 唯一的候选就是正样本
    assert ch.clip_loss(one, r.normal(size=(1, 5)), 50.0) == pytest.approx(0.0, abs=1e-15)
    same = np.ones((4, 3))
    assert_close(ch.nt_xent_loss(same, same), np.log(7), atol=1e-15)  # 全部并列
    z1, z2 = r.normal(size=(6, 5)), r.normal(size=(6, 5))
    for tau in [1e-3, 1e-4]:  # logit 达 1e4，仍然有限、与参考一致
        ours = ch.nt_xent_loss(z1, z2, tau)
        assert np.isfinite(ours)
        assert_close(ours, _ref_nt_xent(t64(z1), t64(z2), tau), atol=1e-10)
    big = 1e200 * z1  # normalize 先除以最大绝对值，不溢出
    assert_close(ch.nt_xent_loss(big, z2), ch.nt_xent_loss(z1, z2), atol=1e-14)
    ints = np.arange(12).reshape(4, 3)  # 整数输入按 float64 处理
    assert_close(ch.nt_xent_loss(ints, ints[::-1]), _ref_nt_xent(t64(ints), t64(ints[::-1]), 0.5), atol=1e-14)


def test_infonce_lower_bound_on_gaussian_toy():
    """log N - InfoNCE（最优打分）≤ I(X;Y) 且 ≤ log N（留出蒙特卡洛余量）；N 大时接近 I。"""
    gen = np.random.default_rng(0)
    d, rho = 2, 0.8
    mi = -d / 2 * np.log(1 - rho**2)
    for n in [4, 256]:
        bounds = []
        for _ in range(4096 // n):
            x = gen.normal(size=(n, d))
            y = rho * x + np.sqrt(1 - rho**2) * gen.normal(size=(n, d))
            diff = y[None] - rho * x[:, None]
            scores = -(diff**2).sum(-1) / (2 * (1 - rho**2)) + (y**2).sum(-1)[None] / 2
            bounds.append(np.log(n) - F.cross_entropy(t64(scores), torch.arange(n)).item())
        b = np.mean(bounds)
        assert b <= min(mi, np.log(n)) + 0.05
        if n == 256:
            assert b > mi - 0.1


Z = np.zeros((3, 4)) + 1.0
BAD = [
    BadInput("视图形状不同", lambda: ch.nt_xent_loss(Z, Z[:2]), "z1 与 z2"),
    BadInput("z1 一维", lambda: ch.nt_xent_loss(Z[0], Z[0]), "z1"),
    BadInput("z2 三维", lambda: ch.nt_xent_loss(Z, Z[None]), "z2"),
    BadInput("空批次", lambda: ch.nt_xent_loss(Z[:0], Z[:0]), "z1"),
    BadInput("特征维为 0", lambda: ch.nt_xent_loss(Z[:, :0], Z[:, :0]), "z1"),
    BadInput("温度为 0", lambda: ch.nt_xent_loss(Z, Z, 0.0), "temperature"),
    BadInput("温度为 nan", lambda: ch.nt_xent_loss(Z, Z, float("nan")), "temperature"),
    BadInput("温度为 inf", lambda: ch.info_nce(Z, Z, temperature=np.inf), "temperature"),
    BadInput("温度是字符串", lambda: ch.info_nce(Z, Z, temperature="0.1"), "temperature", TypeError),
    BadInput("温度是布尔", lambda: ch.nt_xent_loss(Z, Z, True), "temperature", TypeError),
    BadInput("z1 含 nan", lambda: ch.nt_xent_loss(Z * np.nan, Z), "z1"),
    BadInput("z2 复数", lambda: ch.nt_xent_loss(Z, Z + 1j), "z2", TypeError),
    BadInput("query 一维", lambda: ch.info_nce(Z[0], Z), "query"),
    BadInput("positive_key 行数不同", lambda: ch.info_nce(Z, Z[:2]), "positive_key"),
    BadInput("positive_key 含 inf", lambda: ch.info_nce(Z, Z + np.inf), "positive_key"),
    BadInput("unpaired 给三维", lambda: ch.info_nce(Z, Z, np.ones((3, 2, 4))), "negative_keys"),
    BadInput("paired 给二维", lambda: ch.info_nce(Z, Z, np.ones((2, 4)), negative_mode="paired"), "negative_keys"),
    BadInput("负样本特征维", lambda: ch.info_nce(Z, Z, np.ones((5, 3))), "negative_keys"),
    BadInput("paired 行数", lambda: ch.info_nce(Z, Z, np.ones((2, 5, 4)), negative_mode="paired"), "negative_keys"),
    BadInput("negative_mode", lambda: ch.info_nce(Z, Z, negative_mode="pair"), "negative_mode"),
    BadInput("reduction", lambda: ch.info_nce(Z, Z, reduction="avg"), "reduction"),
    BadInput("logit_scale 为负", lambda: ch.clip_loss(Z, Z, -1.0), "logit_scale"),
    BadInput("logit_scale 是数组", lambda: ch.clip_loss(Z, Z, np.ones(2)), "logit_scale", TypeError),
    BadInput("图文形状不同", lambda: ch.clip_loss(Z, Z[:, :3], 10.0), "image_features 与 text_features"),
    BadInput("text_features 字符串", lambda: ch.clip_loss(Z, Z.astype(str), 10.0), "text_features", TypeError),
    BadInput("反向：温度为负", lambda: ch.nt_xent_loss_backward(Z, Z, -0.5), "temperature"),
    BadInput("反向：logit_scale 为 0", lambda: ch.clip_loss_backward(Z, Z, 0.0), "logit_scale"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 6), scale=st.floats(0.01, 100.0))
def test_invariances(seed, n, scale):
    """只看方向：每行乘正数不变；同时打乱样本顺序不变；交换两个视图不变；CLIP 交换图文不变。"""
    r = seeded(seed)
    z1, z2 = r.normal(size=(n, 3)), r.normal(size=(n, 3))
    base = ch.nt_xent_loss(z1, z2, 0.3)
    pos = r.uniform(0.1, 10.0, size=(n, 1))
    perm = r.permutation(n)
    assert_close(ch.nt_xent_loss(z1 * pos, z2 * scale, 0.3), base, atol=1e-13)
    assert_close(ch.nt_xent_loss(z1[perm], z2[perm], 0.3), base, atol=1e-13)
    assert_close(ch.nt_xent_loss(z2, z1, 0.3), base, atol=1e-13)
    assert_close(ch.clip_loss(z1, z2, scale), ch.clip_loss(z2, z1, scale), atol=1e-13)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 6))
def test_loss_bounds_and_gradient_properties(seed, n):
    """0 ≤ NT-Xent；每个嵌入的梯度与它自己正交（归一化后只看方向）；τ → ∞ 时趋于 log(2N-1)。"""
    r = seeded(seed)
    z1, z2 = r.normal(size=(n, 4)), r.normal(size=(n, 4))
    assert ch.nt_xent_loss(z1, z2, 0.2) >= 0
    dz1, dz2 = ch.nt_xent_loss_backward(z1, z2, 0.2)
    assert_close((dz1 * z1).sum(1), np.zeros(n), atol=1e-13)
    assert_close((dz2 * z2).sum(1), np.zeros(n), atol=1e-13)
    assert_close(ch.nt_xent_loss(z1, z2, 1e6), np.log(2 * n - 1), atol=1e-5)
