"""FlashAttention：在线 Softmax、分块前向（输出与 lse）、重计算反向对照 PyTorch（float64）。

覆盖掩码、不整除的块、极端分数、峰值内存与坏输入。
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from mlbook.chapters.self_attention import attention_naive

from mlbook.chapters import flash_attention as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, extreme_logits, seeded, t64


def _torch_kw(kw):
    return {n: (torch.as_tensor(x) if n == "attn_mask" else x) for n, x in kw.items()}


def _ref_out_lse_grads(q, k, v, g, **kw):
    """PyTorch 参考：SDPA 的输出与 autograd 梯度，以及显式分数矩阵的 logsumexp。"""
    qt, kt, vt = t64(q, True), t64(k, True), t64(v, True)
    out = F.scaled_dot_product_attention(qt, kt, vt, **_torch_kw(kw))
    (out * t64(g)).sum().backward()
    scale = kw.get("scale") or 1 / np.sqrt(q.shape[-1])
    s = scale * t64(q) @ t64(k).transpose(-1, -2)
    if kw.get("is_causal"):
        L, S = s.shape[-2:]
        s = s.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(), -torch.inf)
    m = kw.get("attn_mask")
    if m is not None:
        m = torch.as_tensor(m)
        s = s + (torch.where(m, 0.0, -torch.inf) if m.dtype == torch.bool else m)
    return out.detach(), torch.logsumexp(s, dim=-1), (qt.grad, kt.grad, vt.grad)


def _mask_kwargs(kind, r, lead, L, S):
    if kind == "none":
        return {}
    if kind == "causal":
        return {"is_causal": True}
    if kind == "bool":
        m = r.random((L, S)) < 0.5
        m[L // 2] = False  # 一整行被屏蔽
        return {"attn_mask": m}
    if kind == "bool_batched":
        m = r.random(lead[:1] + (1,) * (len(lead) - 1) + (L, S)) < 0.5
        return {"attn_mask": m}
    if kind == "left_pad":  # 前几个键被屏蔽：第一块可能整块是 -inf
        return {"attn_mask": (np.arange(S) >= min(3, S - 1))[None, :]}
    if kind == "float":
        m = 2 * r.normal(size=(L, S))
        m[r.random((L, S)) < 0.3] = -np.inf
        return {"attn_mask": m}
    if kind == "scale":
        return {"scale": 0.41}
    raise AssertionError(kind)


# (lead, L, S, E, Ev, block_size_q, block_size_k)：块大小大多不整除 L、S
SHAPES = [
    ((), 1, 1, 3, 2, 4, 4),
    ((2,), 13, 13, 8, 5, 4, 5),
    ((2, 3), 11, 17, 6, 4, 3, 7),
    ((1, 2), 9, 4, 5, 3, 16, 1),
    ((2,), 20, 12, 4, 4, 7, 3),
]
MASKS = ["none", "causal", "bool", "bool_batched", "left_pad", "float", "scale"]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:-2] + (s[-2], s[-1]))))
@pytest.mark.parametrize("mask", MASKS)
def test_forward_lse_and_backward_match_torch(shape, mask):
    lead, L, S, E, Ev, bq, bk = shape
    if mask == "bool_batched" and not lead:
        pytest.skip("无前导维时没有批维可广播")
    r = seeded(10 * SHAPES.index(shape) + MASKS.index(mask))  # 每个组合一个种子
    q, k, v = r.normal(size=lead + (L, E)), r.normal(size=lead + (S, E)), r.normal(size=lead + (S, Ev))
    g = r.normal(size=lead + (L, Ev))
    kw = _mask_kwargs(mask, r, lead, L, S)
    out, lse = ch.flash_attention_forward(q, k, v, **kw, block_size_q=bq, block_size_k=bk)
    ref_out, ref_lse, ref_grads = _ref_out_lse_grads(q, k, v, g, **kw)
    assert_close(out, ref_out, atol=1e-14)
    assert_close(lse, ref_lse, atol=1e-14)
    grads = ch.flash_attention_backward(g, q, k, v, out, lse, **kw, block_size_q=bq, block_size_k=bk)
    for ours, ref in zip(grads, ref_grads):
        assert_close(ours, ref, atol=1e-14)


def test_fully_masked_rows_give_zero_output_neginf_lse_and_zero_gradients():
    r = seeded(3)
    q, k, v, g = r.normal(size=(2, 6, 4)), r.normal(size=(2, 9, 4)), r.normal(size=(2, 9, 3)), r.normal(size=(2, 6, 3))
    m = r.random((6, 9)) < 0.6
    m[[0, 4]] = False
    out, lse = ch.flash_attention_forward(q, k, v, attn_mask=m, block_size_q=4, block_size_k=2)
    assert np.all(out[:, [0, 4]] == 0) and np.all(np.isneginf(lse[:, [0, 4]]))
    assert np.isfinite(out).all()
    dq, dk, dv = ch.flash_attention_backward(g, q, k, v, out, lse, attn_mask=m, block_size_q=4, block_size_k=2)
    assert np.all(dq[:, [0, 4]] == 0)
    assert all(np.isfinite(x).all() for x in (dq, dk, dv))
    # 同一个掩码写成加性 -inf 完全相同
    fm = np.where(m, 0.0, -np.inf)
    out_f, _ = ch.flash_attention_forward(q, k, v, attn_mask=fm, block_size_q=4, block_size_k=2)
    assert_close(out_f, out, atol=0)


@pytest.mark.parametrize("scale", [300.0, -300.0, 1e-8])
def test_extreme_scores(scale):
    r = seeded(4)
    q, k, v = r.normal(size=(2, 10, 8)), r.normal(size=(2, 14, 8)), r.normal(size=(2, 14, 3))
    for kw in [{}, {"is_causal": True}]:
        out, lse = ch.flash_attention_forward(scale * q, k, v, **kw, block_size_q=3, block_size_k=4)
        ref = F.scaled_dot_product_attention(t64(scale * q), t64(k), t64(v), **kw)
        assert_close(out, ref, atol=1e-12)
        assert np.isfinite(lse).all()


def test_ties_give_uniform_average():
    r = seeded(5)
    q, v = r.normal(size=(5, 4)), r.normal(size=(9, 3))
    k = np.repeat(r.normal(size=(1, 4)), 9, axis=0)  # 所有键相同 → 权重都是 1/9
    out, lse = ch.flash_attention_forward(q, k, v, block_size_q=2, block_size_k=4)
    assert_close(out, np.broadcast_to(v.mean(axis=0), (5, 3)), atol=1e-15)
    assert_close(lse, q @ k[0] / 2 + np.log(9), atol=1e-14)


@pytest.mark.parametrize("b", [1, 3, 16, 100])
def test_simple_version_matches_naive(b):
    r = seeded(6)
    q, k, v = r.normal(size=(13, 8)), r.normal(size=(21, 8)), r.normal(size=(21, 5))
    assert_close(ch.flash_attention_simple(q, k, v, block_size=b), attention_naive(q, k, v), atol=1e-14)


@pytest.mark.parametrize("name", list(extreme_logits()))
@pytest.mark.parametrize("block_size", [1, 2, 5])
def test_online_softmax_matches_torch_on_extreme_logits(name, block_size):
    z = extreme_logits()[name]
    assert_close(ch.online_softmax(z, block_size=block_size), torch.softmax(t64(z), dim=-1), atol=1e-15)


def test_online_softmax_other_dims_and_all_neginf_row():
    r = seeded(7)
    x = 10 * r.normal(size=(3, 7, 5))
    for dim in [0, 1, -1, -3]:
        assert_close(ch.online_softmax(x, dim=dim, block_size=2), torch.softmax(t64(x), dim=dim), atol=2e-15)
    z = np.array([[-np.inf, -np.inf], [0.0, -np.inf]])
    ours, ref = ch.online_softmax(z), torch.softmax(t64(z), dim=-1)
    assert np.isnan(ours[0]).all() and torch.isnan(ref[0]).all()
    assert_close(ours[1], ref[1], atol=0)


def test_tiled_forward_needs_10x_less_peak_memory_than_naive():
    """内存论证：T = 1024、d = 64 时分块前向的峰值分配远小于朴素实现（朴素 ∝ T²，分块 ∝ T）。"""
    r = seeded(8)
    qkv = [r.normal(size=(1024, 64)) for _ in range(3)]
    peaks = []
    for fn, kw in [(attention_naive, {}), (ch.flash_attention_forward, {"block_size_q": 128, "block_size_k": 128})]:
        tracemalloc.start()
        fn(*qkv, **kw)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    naive, tiled = peaks
    assert naive >= 2 * 1024 * 1024 * 8  # 至少两个 T×T 的 float64 矩阵
    assert tiled <= 2 * 1024 * 64 * 8 + 8 * 128 * 128 * 8  # 输出 + 几块 128×128
    assert naive >= 10 * tiled


Q, K, V = np.zeros((2, 3, 4)), np.zeros((2, 5, 4)), np.zeros((2, 5, 6))
O, LSE, G = np.zeros((2, 3, 6)), np.zeros((2, 3)), np.zeros((2, 3, 6))
BAD = [
    BadInput("E 不一致", lambda: ch.flash_attention_forward(Q, K[..., :3], V), "query 与 key"),
    BadInput("E = 0", lambda: ch.flash_attention_forward(Q[..., :0], K[..., :0], V), "query 与 key"),
    BadInput("S 不一致", lambda: ch.flash_attention_forward(Q, K, V[:, :4]), "key 与 value"),
    BadInput("一维 query", lambda: ch.flash_attention_forward(Q[0, 0], K, V), "query"),
    BadInput("一维 value", lambda: ch.flash_attention_forward(Q, K, V[0, 0]), "value"),
    BadInput("前导维不同", lambda: ch.flash_attention_forward(Q[:1], K, V), "前导维"),
    BadInput("block_size_q = 0", lambda: ch.flash_attention_forward(Q, K, V, block_size_q=0), "block_size_q"),
    BadInput("block_size_k 浮点", lambda: ch.flash_attention_forward(Q, K, V, block_size_k=2.0), "block_size_k"),
    BadInput("block_size_k 布尔", lambda: ch.flash_attention_forward(Q, K, V, block_size_k=True), "block_size_k"),
    BadInput("掩码形状", lambda: ch.flash_attention_forward(Q, K, V, attn_mask=np.ones((3, 4), bool)), "attn_mask"),
    BadInput("整数掩码", lambda: ch.flash_attention_forward(
        Q, K, V, attn_mask=np.ones((3, 5), int)), "attn_mask", TypeError),
    BadInput("掩码含 +inf", lambda: ch.flash_attention_forward(
        Q, K, V, attn_mask=np.full((3, 5), np.inf)), "attn_mask"),
    BadInput("掩码与因果同时给", lambda: ch.flash_attention_forward(
        Q, K, V, attn_mask=np.ones((3, 5), bool), is_causal=True), "is_causal"),
    BadInput("dropout", lambda: ch.flash_attention_forward(Q, K, V, dropout_p=0.5), "dropout_p"),
    BadInput("scale 为 inf", lambda: ch.flash_attention_forward(Q, K, V, scale=np.inf), "scale"),
    BadInput("query 含 nan", lambda: ch.flash_attention_forward(Q * np.nan, K, V), "query"),
    BadInput("key 含 -inf", lambda: ch.flash_attention_forward(Q, K - np.inf, V), "key"),
    BadInput("复数 value", lambda: ch.flash_attention_forward(Q, K, V + 1j), "value", TypeError),
    BadInput("grad_output 形状", lambda: ch.flash_attention_backward(G[..., :2], Q, K, V, O, LSE), "grad_output"),
    BadInput("output 形状", lambda: ch.flash_attention_backward(G, Q, K, V, O[:1], LSE), "output"),
    BadInput("logsumexp 形状", lambda: ch.flash_attention_backward(G, Q, K, V, O, LSE[..., None]), "logsumexp"),
    BadInput("logsumexp 含 nan", lambda: ch.flash_attention_backward(G, Q, K, V, O, LSE * np.nan), "logsumexp"),
    BadInput("softmax dim 越界", lambda: ch.online_softmax(np.zeros((2, 3)), dim=2), "dim"),
    BadInput("softmax 零维", lambda: ch.online_softmax(np.float64(1.0)), "dim"),
    BadInput("softmax 含 +inf", lambda: ch.online_softmax(np.array([0.0, np.inf])), "input"),
    BadInput("softmax block_size", lambda: ch.online_softmax(np.zeros(3), block_size=0), "block_size"),
    BadInput("softmax 字符串", lambda: ch.online_softmax(np.array(["a"])), "input", TypeError),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), L=st.integers(1, 9), S=st.integers(1, 9),
       bq=st.integers(1, 10), bk=st.integers(1, 10), causal=st.booleans())
def test_result_does_not_depend_on_block_sizes(seed, L, S, bq, bk, causal):
    """任何块大小都给出同一个结果（与一整块、即标准算法相同）：分块只改变计算顺序。"""
    r = seeded(seed)
    q, k, v = r.normal(size=(2, L, 3)), r.normal(size=(2, S, 3)), r.normal(size=(2, S, 2))
    out, lse = ch.flash_attention_forward(q, k, v, is_causal=causal, block_size_q=bq, block_size_k=bk)
    one_out, one_lse = ch.flash_attention_forward(q, k, v, is_causal=causal, block_size_q=L, block_size_k=S)
    assert_close(out, one_out, atol=1e-14)
    assert_close(lse, one_lse, atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 12), b=st.integers(1, 13), c=st.floats(-500, 500))
def test_online_softmax_is_shift_invariant_and_normalised(seed, n, b, c):
    x = 3 * seeded(seed).normal(size=(4, n))
    p = ch.online_softmax(x, block_size=b)
    assert_close(p.sum(axis=-1), np.ones(4), atol=1e-14)
    assert_close(ch.online_softmax(x + c, block_size=b), p, atol=1e-13)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), L=st.integers(1, 7), b=st.integers(1, 8))
def test_scaling_q_or_k_has_the_same_effect_on_the_loss(seed, L, b):
    """把 Q 放大 (1+ε) 与把 K 放大 (1+ε) 对分数的作用相同，故 Σ q⊙dQ = Σ k⊙dK（都等于 α Σ dS⊙QKᵀ）。"""
    r = seeded(seed)
    q, k, v, g = r.normal(size=(L, 3)), r.normal(size=(L + 2, 3)), r.normal(size=(L + 2, 2)), r.normal(size=(L, 2))
    out, lse = ch.flash_attention_forward(q, k, v, block_size_q=b, block_size_k=b)
    dq, dk, _ = ch.flash_attention_backward(g, q, k, v, out, lse, block_size_q=b, block_size_k=b)
    assert_close(np.sum(q * dq), np.sum(k * dk), atol=1e-12)
