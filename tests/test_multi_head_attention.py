"""多头注意力与掩码：multi_head_attention 对照 nn.MultiheadAttention(batch_first=True)。

float64、复制的参数；三种掩码约定、整行屏蔽与坏输入。
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlbook.chapters import multi_head_attention as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64


def _params(r, E, bias=True):
    return {
        "in_proj_weight": r.normal(size=(3 * E, E)) / np.sqrt(E),
        "in_proj_bias": r.normal(size=3 * E) if bias else None,
        "out_proj_weight": r.normal(size=(E, E)) / np.sqrt(E),
        "out_proj_bias": r.normal(size=E) if bias else None,
    }


def _torch_mha(p, E, H):
    bias = p["in_proj_bias"] is not None
    m = nn.MultiheadAttention(E, H, batch_first=True, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        m.in_proj_weight.copy_(t64(p["in_proj_weight"]))
        m.out_proj.weight.copy_(t64(p["out_proj_weight"]))
        if bias:
            m.in_proj_bias.copy_(t64(p["in_proj_bias"]))
            m.out_proj.bias.copy_(t64(p["out_proj_bias"]))
    return m.eval()


def _run_both(p, E, H, q, k, v, module=None, **kw):
    ref_kw = {n: (torch.as_tensor(x) if isinstance(x, np.ndarray) else x) for n, x in kw.items()}
    ours = ch.multi_head_attention(q, k, v, **p, num_heads=H, **kw)
    module = module or _torch_mha(p, E, H)
    ref = module(t64(q), t64(k), t64(v), **ref_kw)
    return ours, ref


def _inputs(seed, B, L, S, E):
    r = seeded(seed)
    return r.normal(size=(B, L, E)), r.normal(size=(B, S, E)), r.normal(size=(B, S, E)), r


def _masks(kind, r, B, L, S, H):
    pad = r.random((B, S)) < 0.4
    pad[:, 0] = False  # 每个样本至少一个真实的键
    if kind == "none":
        return {}
    if kind == "pad_bool":
        return {"key_padding_mask": pad}
    if kind == "pad_float":
        return {"key_padding_mask": np.where(pad, -np.inf, r.normal(size=(B, S)))}
    if kind == "attn_bool_2d":
        m = r.random((L, S)) < 0.4
        m[:, 0] = False
        return {"attn_mask": m}
    if kind == "attn_float_3d":
        return {"attn_mask": r.normal(size=(B * H, L, S))}
    if kind == "attn_bool_3d_and_pad":
        m = r.random((B * H, L, S)) < 0.4
        m[..., 0] = False
        return {"attn_mask": m, "key_padding_mask": pad}
    if kind == "causal_and_pad":
        return {"attn_mask": np.triu(np.ones((L, S), bool), k=1), "key_padding_mask": pad}
    raise AssertionError(kind)


SHAPES = [(1, 1, 1, 4, 1), (2, 5, 7, 8, 2), (3, 4, 4, 12, 3), (2, 6, 3, 16, 4)]
MASKS = ["none", "pad_bool", "pad_float", "attn_bool_2d", "attn_float_3d", "attn_bool_3d_and_pad", "causal_and_pad"]


@pytest.mark.parametrize("seed, shape", list(enumerate(SHAPES)))
@pytest.mark.parametrize("mask", MASKS)
def test_outputs_and_weights_match_torch(seed, shape, mask):
    B, L, S, E, H = shape
    q, k, v, r = _inputs(seed, B, L, S, E)
    p = _params(r, E)
    m = _torch_mha(p, E, H)
    kw = _masks(mask, r, B, L, S, H)
    for avg in (True, False):
        (out, w), (out_ref, w_ref) = _run_both(p, E, H, q, k, v, m, average_attn_weights=avg, **kw)
        assert_close(out, out_ref, atol=1e-14)
        assert_close(w, w_ref, atol=1e-15)
        assert w.shape == ((B, L, S) if avg else (B, H, L, S))
    (out, w), (out_ref, w_ref) = _run_both(p, E, H, q, k, v, m, need_weights=False, **kw)
    assert w is None and w_ref is None
    assert_close(out, out_ref, atol=1e-14)


def test_no_bias_and_unbatched_inputs():
    q, k, v, r = _inputs(3, 1, 4, 6, 8)
    p = _params(r, 8, bias=False)
    pad = np.array([False, False, True, False, True, False])
    (out, w), (out_ref, w_ref) = _run_both(p, 8, 2, q[0], k[0], v[0], key_padding_mask=pad, average_attn_weights=False)
    assert out.shape == (4, 8) and w.shape == (2, 4, 6)
    assert_close(out, out_ref, atol=1e-14)
    assert_close(w, w_ref, atol=1e-15)
    m3 = r.normal(size=(2, 4, 6))  # 无批维时 3 维 attn_mask 是 (H, L, S)
    (out, _), (out_ref, _) = _run_both(p, 8, 2, q[0], k[0], v[0], attn_mask=m3)
    assert_close(out, out_ref, atol=1e-14)


def test_is_causal_hint_with_square_subsequent_mask():
    x, _, _, r = _inputs(4, 2, 5, 5, 8)
    p = _params(r, 8)
    mask = ch.generate_square_subsequent_mask(5)
    assert_close(mask, nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64), atol=0)
    for nw in (True, False):
        (out, _), (out_ref, _) = _run_both(p, 8, 2, x, x, x, attn_mask=mask, is_causal=True, need_weights=nw)
        assert_close(out, out_ref, atol=1e-14)
    # 因果：第 i 个输出只依赖前 i 个位置
    x2 = x.copy()
    x2[:, 3:] += 1.0
    a, _ = ch.multi_head_attention(x, x, x, **p, num_heads=2, attn_mask=mask)
    b, _ = ch.multi_head_attention(x2, x2, x2, **p, num_heads=2, attn_mask=mask)
    assert_close(a[:, :3], b[:, :3], atol=1e-14)


def test_naive_matches_torch():
    q, k, v, r = _inputs(5, 2, 3, 6, 12)
    p = _params(r, 12)
    out = ch.multi_head_attention_naive(q, k, v, *p.values(), 3)
    assert_close(out, _run_both(p, 12, 3, q, k, v)[1][0], atol=1e-14)


def test_three_mask_conventions_agree():
    """同一掩码：SDPA 布尔 True = 可以看、nn.MultiheadAttention 布尔 True = 屏蔽、加性 -inf，结果相同。"""
    B, S, E, H = 2, 6, 8, 2
    x, _, _, r = _inputs(6, B, S, S, E)
    p = _params(r, E)
    blocked = np.triu(np.ones((S, S), bool), 1) | (r.random((B, 1, 1, S)) < 0.3)
    blocked[..., 0] = False
    ours_bool, _ = ch.multi_head_attention(
        x, x, x, **p, num_heads=H, attn_mask=np.repeat(blocked, H, 1).reshape(B * H, S, S)
    )
    ours_add, _ = ch.multi_head_attention(
        x, x, x, **p, num_heads=H, attn_mask=np.where(blocked, -np.inf, 0.0)[:, 0].repeat(H, 0)
    )
    w_q, w_k, w_v = np.split(p["in_proj_weight"], 3)
    b_q, b_k, b_v = np.split(p["in_proj_bias"], 3)
    heads = [
        t64((x @ w.T + b).reshape(B, S, H, E // H)).transpose(1, 2) for w, b in [(w_q, b_q), (w_k, b_k), (w_v, b_v)]
    ]
    ctx = F.scaled_dot_product_attention(*heads, attn_mask=torch.as_tensor(~blocked))
    ref = ctx.transpose(1, 2).reshape(B, S, E).numpy() @ p["out_proj_weight"].T + p["out_proj_bias"]
    assert_close(ours_bool, ref, atol=1e-14)
    assert_close(ours_add, ref, atol=1e-14)


def test_fully_blocked_rows_are_handled_not_nan():
    """整行被屏蔽：PyTorch（need_weights=True）给 NaN；本章给权重 0、输出 b_O，与 PyTorch 的 SDPA 路径一致。"""
    B, L, S, E, H = 3, 4, 5, 8, 2
    q, k, v, r = _inputs(7, B, L, S, E)
    p = _params(r, E)
    pad = np.zeros((B, S), bool)
    pad[1] = True
    am = np.zeros((L, S), bool)
    am[2] = True  # 每个样本的第 2 个查询也被整行屏蔽
    (out, w), (out_ref, w_ref) = _run_both(
        p, E, H, q, k, v, key_padding_mask=pad, attn_mask=am, average_attn_weights=False
    )
    assert torch.isnan(out_ref[1]).all() and torch.isnan(w_ref[:, :, 2]).all()
    assert np.isfinite(out).all() and np.all(w[1] == 0) and np.all(w[:, :, 2] == 0)
    assert_close(out[1], np.broadcast_to(p["out_proj_bias"], (L, E)), atol=0)
    ok = np.ones(L, bool)
    ok[2] = False
    assert_close(out[[0, 2]][:, ok], out_ref[[0, 2]][:, ok], atol=1e-14)
    assert_close(w[[0, 2]][:, :, ok], w_ref[[0, 2]][:, :, ok], atol=1e-15)
    (_, _), (out_fast, _) = _run_both(p, E, H, q, k, v, key_padding_mask=pad, attn_mask=am, need_weights=False)
    assert_close(out, out_fast, atol=1e-14)


def test_left_padding_equals_trimmed_sequence():
    E, H, T, n_pad = 8, 2, 6, 2
    x, _, _, r = _inputs(8, 1, T, T, E)
    p = _params(r, E)
    pad = np.zeros((1, T), bool)
    pad[0, :n_pad] = True
    out, _ = ch.multi_head_attention(
        x, x, x, **p, num_heads=H, key_padding_mask=pad, attn_mask=ch.generate_square_subsequent_mask(T)
    )
    t = x[:, n_pad:]
    ref, _ = ch.multi_head_attention(t, t, t, **p, num_heads=H, attn_mask=ch.generate_square_subsequent_mask(T - n_pad))
    assert np.isfinite(out).all()
    assert_close(out[:, n_pad:], ref, atol=1e-14)


def test_extreme_inputs():
    q, k, v, r = _inputs(9, 2, 4, 5, 8)
    p = _params(r, 8)
    for qq, kk in [(1e3 * q, k), (q, np.repeat(k[:, :1], 5, axis=1))]:
        (out, w), (out_ref, w_ref) = _run_both(p, 8, 2, qq, kk, v)
        assert_close(out, out_ref, atol=1e-11)
        assert_close(w, w_ref, atol=1e-14)


Q = np.zeros((2, 3, 8))
KV = np.zeros((2, 5, 8))
P = _params(seeded(0), 8)


def _call(**change):
    base = {"query": Q, "key": KV, "value": KV, **P, "num_heads": 2}
    return lambda: ch.multi_head_attention(**{**base, **change})


BAD = [
    BadInput("num_heads 浮点", _call(num_heads=2.0), "num_heads", TypeError),
    BadInput("num_heads 布尔", _call(num_heads=True), "num_heads", TypeError),
    BadInput("num_heads 不整除", _call(num_heads=3), "num_heads"),
    BadInput("num_heads 为 0", _call(num_heads=0), "num_heads"),
    BadInput("query 一维", _call(query=Q[0, 0]), "query"),
    BadInput("query 四维", _call(query=Q[None]), "query"),
    BadInput("维数不同", _call(query=Q[0]), "维数"),
    BadInput("key 的 E", _call(key=KV[..., :4]), "key"),
    BadInput("value 长度", _call(value=KV[:, :2]), "value"),
    BadInput("批大小不同", _call(key=KV[:1]), "key"),
    BadInput("in_proj_weight 形状", _call(in_proj_weight=P["in_proj_weight"][:8]), "in_proj_weight"),
    BadInput("in_proj_bias 形状", _call(in_proj_bias=P["in_proj_bias"][:8]), "in_proj_bias"),
    BadInput("out_proj_weight 形状", _call(out_proj_weight=P["out_proj_weight"][:4]), "out_proj_weight"),
    BadInput("out_proj_bias 形状", _call(out_proj_bias=np.zeros(3)), "out_proj_bias"),
    BadInput("key_padding_mask 形状", _call(key_padding_mask=np.zeros((2, 3), bool)), "key_padding_mask"),
    BadInput("attn_mask 形状", _call(attn_mask=np.zeros((2, 3, 5), bool)), "attn_mask"),
    BadInput("整数掩码", _call(attn_mask=np.zeros((3, 5), int)), "attn_mask", TypeError),
    BadInput("掩码含 nan", _call(key_padding_mask=np.full((2, 5), np.nan)), "key_padding_mask"),
    BadInput("掩码含 +inf", _call(attn_mask=np.full((3, 5), np.inf)), "attn_mask"),
    BadInput("is_causal 无掩码", _call(is_causal=True), "is_causal"),
    BadInput("query 含 nan", _call(query=Q * np.nan), "query"),
    BadInput("复数 key", _call(key=KV + 1j), "key", TypeError),
    BadInput("权重含 inf", _call(out_proj_weight=P["out_proj_weight"] + np.inf), "out_proj_weight"),
    BadInput("sz 为负", lambda: ch.generate_square_subsequent_mask(-1), "sz"),
    BadInput("sz 为浮点", lambda: ch.generate_square_subsequent_mask(3.0), "sz"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), L=st.integers(1, 5), H=st.sampled_from([1, 2, 4]))
def test_permutation_equivariance_and_row_sums(seed, L, H):
    """无掩码的多头自注意力对序列置换等变；未被整行屏蔽的权重每行和为 1。"""
    r = seeded(seed)
    x = r.normal(size=(2, L, 8))
    p = _params(r, 8)
    perm = r.permutation(L)
    out, w = ch.multi_head_attention(x, x, x, **p, num_heads=H, average_attn_weights=False)
    out_p, _ = ch.multi_head_attention(x[:, perm], x[:, perm], x[:, perm], **p, num_heads=H)
    assert_close(out_p, out[:, perm], atol=1e-13)
    assert_close(w.sum(-1), np.ones((2, H, L)), atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), S=st.integers(2, 6))
def test_padded_keys_do_not_matter(seed, S):
    """被 key_padding_mask 屏蔽的键与值可以换成任何数，输出不变。"""
    r = seeded(seed)
    q, k, v = r.normal(size=(1, 3, 8)), r.normal(size=(1, S, 8)), r.normal(size=(1, S, 8))
    p = _params(r, 8)
    pad = np.zeros((1, S), bool)
    pad[0, r.integers(1, S) :] = True
    k2, v2 = k.copy(), v.copy()
    k2[pad], v2[pad] = 1e3 * r.normal(size=(pad.sum(), 8)), r.normal(size=(pad.sum(), 8))
    a, _ = ch.multi_head_attention(q, k, v, **p, num_heads=2, key_padding_mask=pad)
    b, _ = ch.multi_head_attention(q, k2, v2, **p, num_heads=2, key_padding_mask=pad)
    assert_close(a, b, atol=1e-14)
