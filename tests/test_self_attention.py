"""自注意力：缩放点积注意力的前向与手推反向对照 F.scaled_dot_product_attention（float64），掩码、边界与坏输入。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mlbook
from mlbook.chapters import self_attention as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64


def _ref(q, k, v, **kw):
    kw = {n: (torch.as_tensor(x) if n == "attn_mask" else x) for n, x in kw.items()}
    return F.scaled_dot_product_attention(t64(q), t64(k), t64(v), **kw)


def _ref_grads(q, k, v, g, **kw):
    kw = {n: (torch.as_tensor(x) if n == "attn_mask" else x) for n, x in kw.items()}
    qt, kt, vt = t64(q, True), t64(k, True), t64(v, True)
    (F.scaled_dot_product_attention(qt, kt, vt, **kw) * t64(g)).sum().backward()
    return qt.grad, kt.grad, vt.grad


def _inputs(seed, lead, L, S, E, Ev):
    r = seeded(seed)
    return (r.normal(size=lead + (L, E)), r.normal(size=lead + (S, E)),
            r.normal(size=lead + (S, Ev)), r.normal(size=lead + (L, Ev)), r)


def _mask_kwargs(kind, r, lead, L, S):
    if kind == "none":
        return {}
    if kind == "bool":
        m = r.random((L, S)) < 0.6
        m[0] = False  # 一整行被屏蔽
        return {"attn_mask": m}
    if kind == "bool_batched":
        return {"attn_mask": r.random(lead[:1] + (1,) * (len(lead) - 1) + (L, S)) < 0.5}
    if kind == "float":
        m = r.normal(size=(L, S))
        m[r.random((L, S)) < 0.3] = -np.inf
        return {"attn_mask": m}
    if kind == "causal":
        return {"is_causal": True}
    if kind == "scale":
        return {"scale": 0.37}
    raise AssertionError(kind)


SHAPES = [((), 1, 1, 3, 2), ((2,), 4, 4, 8, 8), ((2, 3), 5, 7, 8, 6), ((1, 2), 9, 3, 5, 4)]
MASKS = ["none", "bool", "bool_batched", "float", "causal", "scale"]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask", MASKS)
def test_forward_and_backward_match_torch(seed, shape, mask):
    lead, L, S, E, Ev = shape
    q, k, v, g, r = _inputs(seed, lead, L, S, E, Ev)
    if mask == "bool_batched" and not lead:
        pytest.skip("无前导维时没有批维可广播")
    kw = _mask_kwargs(mask, r, lead, L, S)
    assert_close(ch.scaled_dot_product_attention(q, k, v, **kw), _ref(q, k, v, **kw), atol=1e-14)
    ours = ch.scaled_dot_product_attention_backward(g, q, k, v, **kw)
    for a, b in zip(ours, _ref_grads(q, k, v, g, **kw)):
        assert_close(a, b, atol=1e-14)


def test_naive_matches_reference_on_moderate_inputs():
    q, k, v, _, _ = _inputs(3, (2,), 4, 6, 8, 5)
    assert_close(ch.attention_naive(q, k, v), _ref(q, k, v), atol=1e-14)


def test_gradient_matches_finite_differences():
    q, k, v, g, _ = _inputs(5, (), 3, 4, 3, 2)
    m = np.array([[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 0, 0]], dtype=bool)
    dq, dk, dv = ch.scaled_dot_product_attention_backward(g, q, k, v, attn_mask=m)

    def loss_of(which):
        def f(x):
            args = [q, k, v]
            args[which] = x
            return (ch.scaled_dot_product_attention(*args, attn_mask=m) * g).sum()
        return f

    for i, (ours, x) in enumerate([(dq, q), (dk, k), (dv, v)]):
        assert_close(ours, mlbook.numeric_grad(loss_of(i), x), atol=1e-8)


def test_fully_blocked_rows_give_zero_output_and_zero_gradient_like_torch():
    q, k, v, g, _ = _inputs(1, (2,), 3, 4, 5, 2)
    m = np.ones((3, 4), dtype=bool)
    m[1] = False
    out = ch.scaled_dot_product_attention(q, k, v, attn_mask=m)
    assert np.all(out[:, 1] == 0) and np.isfinite(out).all()
    assert_close(out, _ref(q, k, v, attn_mask=m), atol=1e-14)
    dq, dk, dv = ch.scaled_dot_product_attention_backward(g, q, k, v, attn_mask=m)
    assert np.all(dq[:, 1] == 0)
    fm = np.where(m, 0.0, -np.inf)  # 同样的掩码写成加性
    assert_close(ch.scaled_dot_product_attention(q, k, v, attn_mask=fm), out, atol=0)


def test_causal_with_more_keys_than_queries_is_top_left_aligned():
    q, k, v, _, _ = _inputs(2, (), 3, 6, 4, 2)
    p = ch.scaled_dot_product_attention_weights(q, k, is_causal=True)
    assert np.all(p[np.triu_indices(3, k=1, m=6)] == 0)
    assert p[0, 0] == 1.0
    assert_close(ch.scaled_dot_product_attention(q, k, v, is_causal=True),
                 _ref(q, k, v, is_causal=True), atol=1e-14)


def test_extreme_scores_and_ties():
    q, k, v, _, _ = _inputs(4, (2,), 4, 5, 6, 3)
    for qq, kk in [(1e3 * q, k), (q, np.repeat(k[:, :1], 5, axis=1)), (-1e4 * q, k)]:
        assert_close(ch.scaled_dot_product_attention(qq, kk, v), _ref(qq, kk, v), atol=1e-13)
    p = ch.scaled_dot_product_attention_weights(q, np.repeat(k[:, :1], 5, axis=1))
    assert_close(p, np.full(p.shape, 0.2), atol=1e-15)


def test_bool_mask_equals_additive_mask():
    q, k, v, _, r = _inputs(6, (3,), 4, 4, 5, 5)
    m = r.random((4, 4)) < 0.5
    fm = np.where(m, 0.0, -np.inf)
    assert_close(ch.scaled_dot_product_attention(q, k, v, attn_mask=m),
                 ch.scaled_dot_product_attention(q, k, v, attn_mask=fm), atol=0)


Q, K, V = np.zeros((2, 3, 4)), np.zeros((2, 5, 4)), np.zeros((2, 5, 6))
BAD = [
    BadInput("E 不一致", lambda: ch.scaled_dot_product_attention(Q, K[..., :3], V), "query 与 key"),
    BadInput("S 不一致", lambda: ch.scaled_dot_product_attention(Q, K, V[:, :4]), "key 与 value"),
    BadInput("一维 query", lambda: ch.scaled_dot_product_attention(Q[0, 0], K, V), "query"),
    BadInput("一维 value", lambda: ch.scaled_dot_product_attention(Q, K, V[0, 0]), "value"),
    BadInput("前导维不同", lambda: ch.scaled_dot_product_attention(Q[:1], K, V), "前导维"),
    BadInput("E = 0", lambda: ch.scaled_dot_product_attention(Q[..., :0], K[..., :0], V), "特征维"),
    BadInput("掩码形状", lambda: ch.scaled_dot_product_attention(
        Q, K, V, attn_mask=np.ones((3, 4), bool)), "attn_mask"),
    BadInput("整数掩码", lambda: ch.scaled_dot_product_attention(
        Q, K, V, attn_mask=np.ones((3, 5), int)), "attn_mask", TypeError),
    BadInput("掩码含 +inf", lambda: ch.scaled_dot_product_attention(
        Q, K, V, attn_mask=np.full((3, 5), np.inf)), "attn_mask"),
    BadInput("掩码含 nan", lambda: ch.scaled_dot_product_attention(
        Q, K, V, attn_mask=np.full((3, 5), np.nan)), "attn_mask"),
    BadInput("掩码与因果同时给", lambda: ch.scaled_dot_product_attention(
        Q, K, V, attn_mask=np.ones((3, 5), bool), is_causal=True), "is_causal"),
    BadInput("dropout", lambda: ch.scaled_dot_product_attention(Q, K, V, dropout_p=0.5), "dropout_p"),
    BadInput("scale 为 nan", lambda: ch.scaled_dot_product_attention(Q, K, V, scale=np.nan), "scale"),
    BadInput("query 含 nan", lambda: ch.scaled_dot_product_attention(Q * np.nan, K, V), "query"),
    BadInput("key 含 inf", lambda: ch.scaled_dot_product_attention(Q, K + np.inf, V), "key"),
    BadInput("复数 query", lambda: ch.scaled_dot_product_attention(Q + 1j, K, V), "query", TypeError),
    BadInput("字符串 value", lambda: ch.scaled_dot_product_attention(Q, K, V.astype(str)), "value", TypeError),
    BadInput("grad_output 形状", lambda: ch.scaled_dot_product_attention_backward(
        np.zeros((2, 3, 4)), Q, K, V), "grad_output"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**16), L=st.integers(1, 6), S=st.integers(1, 6), c=st.floats(-50, 50))
def test_rows_are_distributions_and_shift_invariant(seed, L, S, c):
    """每行权重和为 1（未整行屏蔽时）；给分数同加一个常数（浮点掩码整体平移）不改变输出。"""
    q, k, v, _, r = _inputs(seed, (2,), L, S, 3, 2)
    p = ch.scaled_dot_product_attention_weights(q, k)
    assert_close(p.sum(axis=-1), np.ones((2, L)), atol=1e-14)
    m = r.normal(size=(L, S))
    a = ch.scaled_dot_product_attention(q, k, v, attn_mask=m)
    b = ch.scaled_dot_product_attention(q, k, v, attn_mask=m + c)
    assert_close(a, b, atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**16), L=st.integers(1, 5))
def test_permutation_equivariance(seed, L):
    """无掩码的自注意力对输入序列的置换等变：打乱 X 的行，输出同样被打乱。"""
    r = seeded(seed)
    x = r.normal(size=(L, 4))
    perm = r.permutation(L)
    out = ch.scaled_dot_product_attention(x, x, x)
    assert_close(ch.scaled_dot_product_attention(x[perm], x[perm], x[perm]), out[perm], atol=1e-14)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_dS_rows_sum_to_zero(seed):
    """所有键加同一向量 = 每行分数同加常数，输出不变；所以 dK 沿键求和为 0（式 eq-attn-grad-s 行和为 0）。"""
    q, k, v, g, _ = _inputs(seed, (), 4, 5, 3, 2)
    _, dk, _ = ch.scaled_dot_product_attention_backward(g, q, k, v)
    assert_close(dk.sum(axis=0), np.zeros(3), atol=1e-13)
