"""优化器：SGD / RMSprop / Adam / AdamW 与 torch.optim 逐步对照（float64），状态、边界与坏输入。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlbook.chapters import optimizers as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded

PAIRS = {
    "SGD": (ch.SGD, torch.optim.SGD),
    "RMSprop": (ch.RMSprop, torch.optim.RMSprop),
    "Adam": (ch.Adam, torch.optim.Adam),
    "AdamW": (ch.AdamW, torch.optim.AdamW),
}

CONFIGS = [
    ("SGD", {}),
    ("SGD", dict(lr=0.01, momentum=0.9)),
    ("SGD", dict(lr=0.01, momentum=0.7, dampening=0.3, weight_decay=0.05)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.01, momentum=0.5, maximize=True)),
    ("RMSprop", {}),
    ("RMSprop", dict(lr=0.005, alpha=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.005, momentum=0.8, centered=True)),
    ("RMSprop", dict(lr=0.005, alpha=1.0, eps=1e-3)),
    ("Adam", {}),
    ("Adam", dict(lr=0.05, betas=(0.5, 0.9), eps=1e-6)),
    ("Adam", dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    ("Adam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)),
    ("Adam", dict(lr=0.02, betas=(0.0, 0.0), maximize=True)),
    ("AdamW", {}),
    ("AdamW", dict(lr=0.05, weight_decay=0.3)),
    ("AdamW", dict(lr=0.05, betas=(0.8, 0.95), weight_decay=0.1, amsgrad=True)),
]


def _problem(seed, shapes):
    """随机二次损失 Σ_k ½‖A_k p_k − y_k‖² + 一个非凸项；返回 (初值, 梯度函数, torch 损失)。"""
    r = seeded(seed)
    mats = [r.normal(size=(max(int(np.prod(s)), 1) + 2, int(np.prod(s)))) for s in shapes]
    ys = [r.normal(size=m.shape[0]) for m in mats]
    # 起点离最优点约 10：100 步内自适应方法还在下坡，不在最优点附近
    # 来回摆动（那里 m/√v 对舍入误差敏感，两边的轨迹会分开）
    init = [np.asarray(10.0 + r.normal(size=s)) for s in shapes]

    def grads(params):
        out = []
        for p, A, y in zip(params, mats, ys):
            x = p.reshape(-1)
            g = A.T @ (A @ x - y) + 0.5 * np.cos(x)
            out.append(g.reshape(p.shape))
        return out

    mats_t = [torch.tensor(A) for A in mats]
    ys_t = [torch.tensor(y) for y in ys]

    def torch_loss(params):
        total = 0.0
        for p, A, y in zip(params, mats_t, ys_t):
            x = p.reshape(-1)
            res = A @ x - y
            total = total + 0.5 * (res @ res) + 0.5 * torch.sin(x).sum()
        return total

    return init, grads, torch_loss


def _run_both(name, kw, seed=0, shapes=((3,), (2, 4), ()), n_steps=100):
    ours_cls, ref_cls = PAIRS[name]
    init, grads, torch_loss = _problem(seed, shapes)
    ours = [x.copy() for x in init]
    opt = ours_cls(ours, **kw)
    theirs = [torch.tensor(x, requires_grad=True) for x in init]
    ref = ref_cls(theirs, **kw)
    for _ in range(n_steps):
        opt.step(grads(ours))
        ref.zero_grad()
        torch_loss(theirs).backward()
        ref.step()
    for a, b in zip(ours, theirs):
        assert_close(a, b, atol=1e-12, rtol=1e-12)
    return opt, ref, ours, theirs


@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_matches_torch_optim_step_by_step(name, kw):
    seed = CONFIGS.index((name, kw))  # 每个配置一组不同的随机问题
    opt, ref, ours, theirs = _run_both(name, kw, seed=seed, n_steps=100)
    for i, pt in enumerate(theirs):
        st_ref = ref.state[pt]
        assert set(opt.state[i]) == set(st_ref), (opt.state[i].keys(), st_ref.keys())
        for key, val in st_ref.items():
            assert_close(opt.state[i][key], val, atol=1e-12, rtol=1e-10, name=key)


def test_gradient_of_the_test_problem_matches_autograd():
    init, grads, torch_loss = _problem(3, [(4,), (2, 2)])
    init = [np.asarray(x - 10.0) for x in init]
    ts = [torch.tensor(x, requires_grad=True) for x in init]
    torch_loss(ts).backward()
    for g, t in zip(grads(init), ts):
        assert_close(g, t.grad, atol=1e-12)


def test_adam_weight_decay_differs_from_adamw():
    """同一个 weight_decay：L2 进梯度与解耦衰减走出不同的轨迹。"""
    _, _, a, _ = _run_both("Adam", dict(lr=0.05, weight_decay=0.5), n_steps=30)
    _, _, w, _ = _run_both("AdamW", dict(lr=0.05, weight_decay=0.5), n_steps=30)
    assert max(np.abs(x - y).max() for x, y in zip(a, w)) > 1e-3


def test_adam_first_step_is_lr_times_sign():
    g = np.array([3.0, -1e-3, 0.0, 250.0])
    p = np.zeros(4)
    ch.Adam([p], lr=0.1, eps=0.0 + 1e-30).step([g])
    assert_close(p, -0.1 * np.sign(g), atol=1e-15)


def test_fixed_points_match_the_derivation():
    """确定性二次函数：Adam + L2 → 岭解；AdamW → 截断到 |θ| ≤ 1/λ。"""
    h, c, lam = np.array([10.0, 0.1]), np.array([3.0, 1.0]), 0.5
    ends = {}
    for cls in (ch.Adam, ch.AdamW):
        th = np.zeros(2)
        opt = cls([th], lr=0.02, weight_decay=lam)
        for _ in range(6000):
            opt.step([h * (th - c)])
        ends[cls.__name__] = th
    assert_close(ends["Adam"], h * c / (h + lam), atol=1e-6)
    assert_close(ends["AdamW"], np.clip(c, -1 / lam, 1 / lam), atol=0.06)


def test_updates_in_place_and_keeps_grads():
    w = np.ones(3)
    g = np.array([1.0, 2.0, 3.0])
    alias = w
    ch.SGD([w], lr=0.1, momentum=0.9).step([g])
    assert alias is w
    assert_close(w, 1 - 0.1 * np.array([1.0, 2.0, 3.0]), atol=1e-15)
    assert_close(g, [1.0, 2.0, 3.0], atol=0)  # 梯度数组没有被改


def test_scalar_param_momentum_buffer_is_updated_in_place():
    """0 维参数 + weight_decay：动量缓冲必须是数组而不是 NumPy 标量。"""
    opt, ref, ours, theirs = _run_both("SGD", dict(lr=0.01, momentum=0.9, weight_decay=0.1),
                                       shapes=((),), n_steps=20)
    assert isinstance(opt.state[0]["momentum_buffer"], np.ndarray)


def test_float32_params_stay_float32():
    p = np.zeros(3, dtype=np.float32)
    ch.Adam([p], lr=0.1).step([np.ones(3)])
    assert p.dtype == np.float32
    assert_close(p, -0.1 * np.ones(3), atol=1e-6)


def test_zero_lr_and_zero_grad():
    p = seeded(0).normal(size=5)
    p0 = p.copy()
    ch.Adam([p], lr=0.0).step([np.ones(5)])
    ch.SGD([p], lr=0.5, momentum=0.9).step([np.zeros(5)])
    ch.RMSprop([p], lr=0.5).step([np.zeros(5)])
    assert_close(p, p0, atol=0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(1e-3, 1e3))
def test_adam_is_invariant_to_gradient_scale(seed, scale):
    """eps = 0 时 Adam 的更新对梯度乘以正数不变（式 eq-optim-adam）。"""
    r = seeded(seed)
    grads = r.normal(size=(10, 4))
    p1, p2 = np.zeros(4), np.zeros(4)
    o1, o2 = ch.Adam([p1], lr=0.01, eps=0.0), ch.Adam([p2], lr=0.01, eps=0.0)
    for g in grads:
        o1.step([g])
        o2.step([scale * g])
    assert_close(p1, p2, atol=1e-13, rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), mu=st.floats(0.0, 0.95))
def test_momentum_equals_polyak_heavy_ball(seed, mu):
    """dampening = 0 时 PyTorch 的写法与 Polyak 的 v ← μv − ηg、θ ← θ + v 等价。"""
    r = seeded(seed)
    grads = r.normal(size=(12, 3))
    p = np.zeros(3)
    opt = ch.SGD([p], lr=0.1, momentum=mu)
    theta, v = np.zeros(3), np.zeros(3)
    for g in grads:
        opt.step([g])
        v = mu * v - 0.1 * g
        theta = theta + v
    assert_close(p, theta, atol=1e-13)


WB = [np.zeros(3), np.zeros(())]
BAD_INPUTS = [
    BadInput("负学习率", lambda: ch.SGD(WB, lr=-1.0), match="lr"),
    BadInput("inf 学习率", lambda: ch.Adam(WB, lr=np.inf), match="lr"),
    BadInput("负动量", lambda: ch.SGD(WB, momentum=-0.1), match="momentum"),
    BadInput("负 dampening", lambda: ch.SGD(WB, momentum=0.9, dampening=-1), match="dampening"),
    BadInput("nesterov 无动量", lambda: ch.SGD(WB, nesterov=True), match="nesterov"),
    BadInput("nesterov 带 dampening", lambda: ch.SGD(WB, momentum=0.9, dampening=0.1, nesterov=True),
             match="dampening"),
    BadInput("负 weight_decay", lambda: ch.AdamW(WB, weight_decay=-0.1), match="weight_decay"),
    BadInput("beta1 = 1", lambda: ch.Adam(WB, betas=(1.0, 0.999)), match=r"betas\[0\]"),
    BadInput("beta2 < 0", lambda: ch.Adam(WB, betas=(0.9, -0.1)), match=r"betas\[1\]"),
    BadInput("betas 三个数", lambda: ch.Adam(WB, betas=(0.9, 0.99, 0.999)), match="betas"),
    BadInput("eps 为 nan", lambda: ch.Adam(WB, eps=np.nan), match="eps"),
    BadInput("alpha > 1", lambda: ch.RMSprop(WB, alpha=1.01), match="alpha"),
    BadInput("lr 是字符串", lambda: ch.SGD(WB, lr="0.1"), match="lr", exc=TypeError),
    BadInput("lr 是布尔", lambda: ch.SGD(WB, lr=True), match="lr", exc=TypeError),
    BadInput("单个数组", lambda: ch.Adam(np.zeros(3)), match="params", exc=TypeError),
    BadInput("空参数表", lambda: ch.Adam([]), match="params"),
    BadInput("整数参数", lambda: ch.SGD([np.zeros(3, dtype=int)]), match=r"params\[0\]", exc=TypeError),
    BadInput("列表参数", lambda: ch.SGD([[0.0, 1.0]]), match=r"params\[0\]", exc=TypeError),
    BadInput("只读参数", lambda: ch.SGD([np.broadcast_to(np.zeros(1), (3,))]), match=r"params\[0\]"),
    BadInput("梯度个数", lambda: ch.SGD(WB).step([np.zeros(3)]), match="grads"),
    BadInput("梯度形状", lambda: ch.Adam(WB).step([np.zeros((3, 1)), 0.0]), match=r"grads\[0\]"),
    BadInput("复数梯度", lambda: ch.RMSprop(WB).step([np.zeros(3) + 1j, 0.0]), match=r"grads\[0\]",
             exc=TypeError),
]


@pytest.mark.parametrize("case", bad_input_params(BAD_INPUTS))
def test_bad_inputs(case):
    case.check()
