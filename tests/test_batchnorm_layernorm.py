"""BatchNorm 与 LayerNorm：前向、滑动统计量、手推反向对照 PyTorch（float64），边界与坏输入。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mlbook
from mlbook.chapters import batchnorm_layernorm as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64

BN_SHAPES = [(5, 3), (2, 4), (3, 2, 6), (2, 3, 4, 4), (1, 2, 3, 3), (2, 2, 2, 3, 2)]


def _bn_module(shape):
    C = shape[1]
    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}
    return cls[len(shape)](C).double()


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_training_steps_then_eval_match_torch_module(seed, shape):
    r = seeded(seed)
    C = shape[1]
    ref = _bn_module(shape)
    mine = ch.BatchNorm(C).double()
    w, b = r.normal(size=C), r.normal(size=C)
    with torch.no_grad():
        for mod in (ref, mine):
            mod.weight.copy_(t64(w))
            mod.bias.copy_(t64(b))
    r_mean, r_var = np.zeros(C), np.ones(C)
    for _ in range(4):
        x = 3 * r.normal(size=shape) + r.normal()
        out_ref = ref(t64(x))
        assert_close(ch.batch_norm(x, r_mean, r_var, w, b, training=True), out_ref, atol=1e-13)
        assert_close(mine(t64(x)), out_ref, atol=1e-13)
        assert_close(r_mean, ref.running_mean, atol=1e-14)
        assert_close(r_var, ref.running_var, atol=1e-13)
        assert_close(mine.running_var, ref.running_var, atol=1e-13)
    ref.eval()
    mine.eval()
    x = r.normal(size=shape)
    out_ref = ref(t64(x))
    before = r_var.copy()
    assert_close(ch.batch_norm(x, r_mean, r_var, w, b), out_ref, atol=1e-13)
    assert_close(mine(t64(x)), out_ref, atol=1e-13)
    assert np.array_equal(r_var, before), "推理模式不应更新滑动统计量"


@pytest.mark.parametrize("momentum", [0.0, 0.3, 1.0])
def test_batch_norm_functional_momentum_and_no_affine(momentum):
    r = seeded(3)
    x = r.normal(size=(4, 3, 5))
    rm, rv = r.normal(size=3), r.random(3) + 0.5
    rm_t, rv_t = t64(rm), t64(rv)
    ref = F.batch_norm(t64(x), rm_t, rv_t, training=True, momentum=momentum, eps=1e-3)
    assert_close(ch.batch_norm(x, rm, rv, training=True, momentum=momentum, eps=1e-3), ref, atol=1e-14)
    assert_close(rm, rm_t, atol=1e-15)
    assert_close(rv, rv_t, atol=1e-14)
    # running 统计量为 None 时只用批统计量、不更新
    assert_close(ch.batch_norm(x, None, None, training=True), F.batch_norm(t64(x), None, None, training=True),
                 atol=1e-14)


def test_batch_norm_updates_float32_buffers_in_place():
    x = seeded(4).normal(size=(6, 2))
    rm, rv = np.zeros(2, dtype=np.float32), np.ones(2, dtype=np.float32)
    ch.batch_norm(x, rm, rv, training=True)
    assert rm.dtype == np.float32
    assert_close(rm, 0.1 * x.mean(0), atol=1e-7)
    assert_close(rv, 0.9 + 0.1 * x.var(0, ddof=1), atol=1e-6)


LN_CASES = [((6, 5), (5,)), ((2, 3, 4), 4), ((2, 3, 4), (3, 4)), ((2, 3, 4, 4), (3, 4, 4)),
            ((2, 3, 4, 4), (4,)), ((0, 4), (4,)), ((3, 1), (1,))]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("shape,ns", LN_CASES)
def test_layer_norm_matches_torch(seed, shape, ns):
    r = seeded(seed)
    nst = (ns,) if isinstance(ns, int) else ns
    x = 4 * r.normal(size=shape) - 1
    w, b = r.normal(size=nst), r.normal(size=nst)
    ref = F.layer_norm(t64(x), nst, t64(w), t64(b))
    assert_close(ch.layer_norm(x, ns, w, b), ref, atol=1e-13)
    assert_close(ch.layer_norm(x, ns), F.layer_norm(t64(x), nst), atol=1e-13)
    if x.size == 0:
        return  # torch 的 var 在空张量上会警告
    mod = torch.nn.LayerNorm(nst).double()
    mine = ch.LayerNorm(ns).double()
    with torch.no_grad():
        mod.weight.copy_(t64(w))
        mod.bias.copy_(t64(b))
    mine.load_state_dict(mod.state_dict())
    assert_close(mine(t64(x)), mod(t64(x)), atol=1e-13)


def test_naive_versions_match_reference_on_2d():
    x = seeded(5).normal(size=(7, 3))
    g, b = np.array([1.0, 2.0, -0.5]), np.array([0.1, 0.0, 3.0])
    assert_close(ch.batch_norm_naive(x, g, b), F.batch_norm(t64(x), None, None, t64(g), t64(b), True), atol=1e-14)
    assert_close(ch.layer_norm_naive(x, g, b), F.layer_norm(t64(x), (3,), t64(g), t64(b)), atol=1e-14)


def _autograd(fn, x, w, b, G):
    xt, wt, bt = t64(x, True), t64(w, True), t64(b, True)
    (fn(xt, wt, bt) * t64(G)).sum().backward()
    return xt.grad, wt.grad, bt.grad


@pytest.mark.parametrize("seed", [1])
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_backward_matches_autograd(seed, shape, training):
    r = seeded(seed)
    C = shape[1]
    x, G = r.normal(size=shape), r.normal(size=shape)
    w, b = r.normal(size=C), r.normal(size=C)
    rm, rv = r.normal(size=C), r.random(C) + 0.2
    ours = ch.batch_norm_backward(G, x, rm, rv, w, training=training)
    ref = _autograd(lambda xt, wt, bt: F.batch_norm(xt, t64(rm), t64(rv), wt, bt, training), x, w, b, G)
    for a, e in zip(ours, ref):
        assert_close(a, e, atol=1e-12)
    # 不给 weight 时按 γ = 1
    dx1 = ch.batch_norm_backward(G, x, rm, rv, None, training=training)[0]
    dx_ref = ch.batch_norm_backward(G, x, rm, rv, np.ones(C), training=training)[0]
    assert_close(dx1, dx_ref, atol=0)


@pytest.mark.parametrize("seed", [1])
@pytest.mark.parametrize("shape,ns", LN_CASES)
def test_layer_norm_backward_matches_autograd(seed, shape, ns):
    r = seeded(seed)
    nst = (ns,) if isinstance(ns, int) else ns
    x, G = r.normal(size=shape), r.normal(size=shape)
    w, b = r.normal(size=nst), r.normal(size=nst)
    ours = ch.layer_norm_backward(G, x, ns, w)
    ref = _autograd(lambda xt, wt, bt: F.layer_norm(xt, nst, wt, bt), x, w, b, G)
    for a, e in zip(ours, ref):
        assert_close(a, e, atol=1e-12)


def test_backward_matches_finite_differences():
    r = seeded(6)
    x, G, w = r.normal(size=(3, 2, 2)), r.normal(size=(3, 2, 2)), r.normal(size=2)
    dx = ch.batch_norm_backward(G, x, None, None, w, training=True)[0]
    num = mlbook.numeric_grad(lambda z: (ch.batch_norm(z, None, None, w, training=True) * G).sum(), x)
    assert_close(dx, num, atol=1e-8)
    wl = r.normal(size=(2, 2))
    dx = ch.layer_norm_backward(G, x, (2, 2), wl)[0]
    num = mlbook.numeric_grad(lambda z: (ch.layer_norm(z, (2, 2), wl) * G).sum(), x)
    assert_close(dx, num, atol=1e-8)


def test_torch_module_buffers_do_not_track_gradients():
    bn = ch.BatchNorm(3).double()
    x = t64(seeded(7).normal(size=(4, 3)), True)
    bn(x).sum().backward()
    assert not bn.running_mean.requires_grad and bn.running_mean.grad_fn is None
    assert set(dict(bn.named_buffers())) == {"running_mean", "running_var"}


def test_edge_cases_constant_input_two_samples_and_extreme_scale():
    # 常数输入：方差 0，输出 0（eps 防止 0/0），梯度有限
    x = np.full((4, 3), 7.0)
    assert_close(ch.batch_norm(x, None, None, training=True), np.zeros((4, 3)), atol=0)
    assert_close(ch.layer_norm(x, 3), F.layer_norm(t64(x), (3,)), atol=0)
    assert np.isfinite(ch.layer_norm_backward(np.ones_like(x), x, 3)[0]).all()
    # N = 2：每列只能是 ±√(v/(v+eps))
    x2 = seeded(8).normal(size=(2, 5))
    y = ch.batch_norm(x2, None, None, training=True)
    assert_close(np.abs(y), np.abs(F.batch_norm(t64(x2), None, None, training=True).numpy()), atol=1e-14)
    assert np.all(np.abs(np.abs(y) - 1) < 1e-3)
    # 大尺度、大偏移
    for scale, shift in [(1e6, 0.0), (1e-3, 0.0), (1.0, 1e4)]:
        xs = scale * seeded(9).normal(size=(8, 3, 4)) + shift
        assert_close(ch.layer_norm(xs, 4), F.layer_norm(t64(xs), (4,)), atol=1e-9)
        assert_close(ch.batch_norm(xs, None, None, training=True),
                     F.batch_norm(t64(xs), None, None, training=True), atol=1e-9)


def test_ln_is_independent_of_batch_and_bn_is_not():
    r = seeded(10)
    x = r.normal(size=(6, 4))
    assert_close(ch.layer_norm(x, 4)[:1], ch.layer_norm(x[:1], 4), atol=0)
    assert not np.allclose(ch.batch_norm(x, None, None, training=True)[:2],
                           ch.batch_norm(x[:2], None, None, training=True))


Z, C3 = np.zeros((2, 3, 4, 4)), np.zeros(3)
BAD = [
    BadInput("一维 input", lambda: ch.batch_norm(np.zeros(3), C3, C3 + 1), "input"),
    BadInput("running_mean 形状", lambda: ch.batch_norm(Z, np.zeros(4), C3 + 1), "running_mean"),
    BadInput("running_var 形状", lambda: ch.batch_norm(Z, C3, np.ones(2)), "running_var"),
    BadInput("只给一个缓冲区", lambda: ch.batch_norm(Z, C3, None), "running_var"),
    BadInput("缓冲区是列表", lambda: ch.batch_norm(Z, [0.0] * 3, C3 + 1), "running_mean", TypeError),
    BadInput("缓冲区是整数", lambda: ch.batch_norm(Z, C3.astype(int), C3 + 1), "running_mean", TypeError),
    BadInput("负的滑动方差", lambda: ch.batch_norm(Z, C3, C3 - 1), "running_var"),
    BadInput("BN weight 形状", lambda: ch.batch_norm(Z, C3, C3 + 1, np.ones(4)), "weight"),
    BadInput("BN bias 形状", lambda: ch.batch_norm(Z, C3, C3 + 1, None, np.ones((3, 1))), "bias"),
    BadInput("训练时每通道 1 个值", lambda: ch.batch_norm(np.zeros((1, 3)), None, None, training=True), "input"),
    BadInput("推理无统计量", lambda: ch.batch_norm(Z, None, None), "running_mean"),
    BadInput("momentum 越界", lambda: ch.batch_norm(Z, C3, C3 + 1, momentum=-0.1), "momentum"),
    BadInput("momentum 为 None", lambda: ch.batch_norm(Z, C3, C3 + 1, momentum=None), "momentum"),
    BadInput("eps 为 0", lambda: ch.batch_norm(Z, C3, C3 + 1, eps=0.0), "eps"),
    BadInput("input 含 nan", lambda: ch.batch_norm(Z * np.nan, C3, C3 + 1), "input"),
    BadInput("复数 input", lambda: ch.layer_norm(Z + 1j, 4), "input", TypeError),
    BadInput("normalized_shape 不符", lambda: ch.layer_norm(Z, (3, 4)), "normalized_shape"),
    BadInput("normalized_shape 太长", lambda: ch.layer_norm(np.zeros((3, 4)), (1, 3, 4)), "normalized_shape"),
    BadInput("normalized_shape 为空", lambda: ch.layer_norm(Z, ()), "normalized_shape"),
    BadInput("normalized_shape 非整数", lambda: ch.layer_norm(Z, 4.0), "normalized_shape"),
    BadInput("LN weight 形状", lambda: ch.layer_norm(Z, (4, 4), np.ones(4)), "weight"),
    BadInput("LN bias 形状", lambda: ch.layer_norm(Z, 4, None, np.ones(3)), "bias"),
    BadInput("LN eps 为负", lambda: ch.layer_norm(Z, 4, eps=-1e-5), "eps"),
    BadInput("BN grad_output 形状", lambda: ch.batch_norm_backward(C3, Z, C3, C3 + 1), "grad_output"),
    BadInput("LN grad_output 形状", lambda: ch.layer_norm_backward(Z[0], Z, 4), "grad_output"),
    BadInput("BN 反向 batch 为 1", lambda: ch.batch_norm_backward(
        np.zeros((1, 3)), np.zeros((1, 3)), None, None, training=True), "input"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


def test_bad_input_does_not_touch_buffers():
    rm, rv = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match="weight"):
        ch.batch_norm(Z, rm, rv, np.ones(4), training=True)
    assert np.array_equal(rm, np.zeros(3)) and np.array_equal(rv, np.ones(3))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), a=st.floats(0.1, 100), c=st.floats(-100, 100))
def test_affine_invariance(seed, a, c):
    """LN 对每个样本的 x → a·x + c（a > 0）不变，BN 对每个通道的同样变换不变（eps 取很小）。"""
    r = seeded(seed)
    x = r.normal(size=(5, 3, 4))
    eps = 1e-12
    assert_close(ch.layer_norm(a * x + c, 4, eps=eps), ch.layer_norm(x, 4, eps=eps), atol=1e-7)
    assert_close(ch.batch_norm(a * x + c, None, None, training=True, eps=eps),
                 ch.batch_norm(x, None, None, training=True, eps=eps), atol=1e-7)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 6), k=st.integers(1, 5))
def test_grad_sums_to_zero_in_each_group(seed, n, k):
    """式 (eq-norm-grad-x)：组内 dx 之和为 0（平移不变性）。"""
    r = seeded(seed)
    x, G = 3 * r.normal(size=(n, k + 1)), r.normal(size=(n, k + 1))
    dx = ch.layer_norm_backward(G, x, k + 1)[0]
    # 组内方差很小时 1/σ̃ 放大舍入误差，容差按 |G|/σ̃ 的量级取
    tol = 1e-14 * (k + 1) * n * np.abs(G).max()
    assert_close(dx.sum(axis=-1), np.zeros(n), atol=tol / np.sqrt(x.var(-1) + 1e-5).min())
    dxb = ch.batch_norm_backward(G, x, None, None, training=True)[0]
    assert_close(dxb.sum(axis=0), np.zeros(k + 1), atol=tol / np.sqrt(x.var(0) + 1e-5).min())
