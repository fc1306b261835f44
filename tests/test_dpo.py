"""DPO：dpo_loss / dpo_loss_grad 对照 TRL DPOTrainer 的 sigmoid 损失（照抄成 torch）与自动求导，
sequence_logprobs 对照 TRL 的 get_batch_logps；边界、坏输入与性质测试（float64）。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlbook.chapters import dpo as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64


def trl_dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.0):
    """TRL DPOTrainer.dpo_loss，loss_type="sigmoid"。"""
    logits = (pc - pr) - (rc - rr)
    losses = (-F.logsigmoid(beta * logits) * (1 - label_smoothing)
              - F.logsigmoid(-beta * logits) * label_smoothing)
    return losses, beta * (pc - rc).detach(), beta * (pr - rr).detach()


def trl_get_batch_logps(logits, labels, label_pad_token_id=-100):
    """TRL DPOTrainer.get_batch_logps（解码器模型）的求和部分。"""
    labels = labels[:, 1:].clone()
    logits = logits[:, :-1, :]
    loss_mask = labels != label_pad_token_id
    labels[labels == label_pad_token_id] = 0
    tok = torch.gather(logits.log_softmax(-1), dim=2, index=labels.unsqueeze(2)).squeeze(2)
    return (tok * loss_mask).sum(-1)


def _logps(seed, shape, scale=60.0):
    r = seeded(seed)
    return [-r.uniform(0, scale, size=shape) for _ in range(4)]


HPARAMS = [(0.1, 0.0), (0.5, 0.0), (0.1, 0.2), (2.0, 0.1), (1e-3, 0.49)]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [(1,), (7,), (64,), (3, 5)])
@pytest.mark.parametrize("hp", HPARAMS)
def test_loss_rewards_and_grad_match_trl(seed, shape, hp):
    beta, eps = hp
    lp = _logps(seed, shape)
    ours = ch.dpo_loss(*lp, beta=beta, label_smoothing=eps)
    pc, pr = t64(lp[0], True), t64(lp[1], True)
    ref = trl_dpo_loss(pc, pr, t64(lp[2]), t64(lp[3]), beta=beta, label_smoothing=eps)
    for a, b in zip(ours, ref):
        assert a.shape == tuple(b.shape)
        assert_close(a, b, atol=1e-15)
    ref[0].sum().backward()
    g_c, g_r = ch.dpo_loss_grad(*lp, beta=beta, label_smoothing=eps)
    assert_close(g_c, pc.grad, atol=1e-15)
    assert_close(g_r, pr.grad, atol=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_loss_matches_independent_softplus_form(seed):
    lp = _logps(seed, (32,))
    for beta, eps in HPARAMS:
        pc, pr, rc, rr = map(t64, lp)
        h = (pc - rc) - (pr - rr)
        ref = ((1 - eps) * F.softplus(-beta * h, threshold=1e9)
               + eps * F.softplus(beta * h, threshold=1e9))
        assert_close(ch.dpo_loss(*lp, beta=beta, label_smoothing=eps)[0], ref, atol=1e-13)


def test_naive_matches_on_moderate_inputs():
    lp = _logps(4, (16,), scale=5.0)
    ref = trl_dpo_loss(*map(t64, lp), beta=0.3)[0]
    assert_close(ch.dpo_loss_naive(*lp, beta=0.3), ref, atol=1e-15)


def test_extreme_margins_do_not_overflow():
    pc = np.array([-1e6, -1.0, -1e-300, 0.0])
    pr = np.array([-1.0, -1e6, 0.0, -1e-300])
    rc = rr = np.full(4, -2.0)
    for beta in (0.1, 10.0):
        ours = ch.dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=0.1)[0]
        assert np.isfinite(ours).all()
        assert_close(ours, trl_dpo_loss(*map(t64, (pc, pr, rc, rr)), beta=beta,
                                        label_smoothing=0.1)[0], atol=1e-9)
        g, _ = ch.dpo_loss_grad(pc, pr, rc, rr, beta=beta)
        assert np.isfinite(g).all()


def test_policy_equal_to_reference_gives_log2_and_zero_rewards():
    lp = _logps(1, (10,))
    losses, cr, rr = ch.dpo_loss(lp[0], lp[1], lp[0], lp[1], beta=0.7)
    assert_close(losses, np.full(10, np.log(2)), atol=1e-15)
    assert np.all(cr == 0) and np.all(rr == 0)
    g_c, g_r = ch.dpo_loss_grad(lp[0], lp[1], lp[0], lp[1], beta=0.7)
    assert_close(g_c, np.full(10, -0.35), atol=1e-16)
    assert_close(g_r, np.full(10, 0.35), atol=1e-16)


def test_empty_batch():
    out = ch.dpo_loss(*[np.zeros(0)] * 4)
    assert [a.shape for a in out] == [(0,)] * 3


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("BTV", [(1, 2, 3), (4, 7, 5), (6, 9, 11)])
def test_sequence_logprobs_match_trl(seed, BTV):
    B, T, V = BTV
    r = seeded(seed)
    z = r.normal(size=(B, T, V)) * 4
    ids = r.integers(V, size=(B, T))
    pos = np.arange(T)
    prompt = r.integers(1, max(2, T // 2) + 1, size=(B, 1))
    total = r.integers(1, T + 1, size=(B, 1))
    mask = (pos >= prompt) & (pos < total)
    ids = np.where(pos < total, ids, -100)  # 填充的 label 可以是任何值
    ref = trl_get_batch_logps(t64(z), torch.as_tensor(np.where(mask, ids, -100)))
    assert_close(ch.sequence_logprobs(z, ids, mask), ref, atol=5e-14)


def test_sequence_logprobs_degenerate_cases():
    z = seeded(0).normal(size=(2, 1, 3))
    ids = np.zeros((2, 1), dtype=int)
    # T = 1：没有可以预测的 token；位置 0 即使 mask 为 True 也不计
    assert np.all(ch.sequence_logprobs(z, ids, np.ones((2, 1), bool)) == 0)
    z = seeded(1).normal(size=(3, 4, 5))
    ids = seeded(2).integers(5, size=(3, 4))
    assert np.all(ch.sequence_logprobs(z, ids, np.zeros((3, 4), bool)) == 0)
    # 极端 logit：被选中的 token 概率极小，结果有限且与参考一致
    z[:, :, 0] = 1e4
    full = np.ones((3, 4), bool)
    ref = trl_get_batch_logps(t64(z), torch.as_tensor(ids))
    assert_close(ch.sequence_logprobs(z, ids, full), ref, atol=1e-11)


def test_sequence_logprobs_equals_categorical_special_case():
    """T = 2、只对第二个 token 计分时，就是 log_softmax(logits[:, 0])[label]。"""
    r = seeded(5)
    z = r.normal(size=(8, 2, 6))
    ids = r.integers(6, size=(8, 2))
    mask = np.array([[False, True]] * 8)
    ref = torch.log_softmax(t64(z[:, 0]), -1)[torch.arange(8), torch.as_tensor(ids[:, 1])]
    assert_close(ch.sequence_logprobs(z, ids, mask), ref, atol=1e-15)


def test_categorical_policy_gradient_matches_autograd():
    """经 log_softmax 链到类别分布 logit：∂h/∂θ_x = e_w - e_l（式 eq-dpo-cat-grad）。"""
    r = seeded(7)
    P, K, N = 3, 5, 40
    theta, theta_ref = r.normal(size=(P, K)), r.normal(size=(P, K))
    x = r.integers(P, size=N)
    w = r.integers(K, size=N)
    l = (w + r.integers(1, K, size=N)) % K
    lp, lr = ch.log_softmax(theta), ch.log_softmax(theta_ref)
    g, _ = ch.dpo_loss_grad(lp[x, w], lp[x, l], lr[x, w], lr[x, l], beta=0.2, label_smoothing=0.05)
    ours = np.zeros((P, K))
    np.add.at(ours, (x, w), g)
    np.add.at(ours, (x, l), -g)
    th = t64(theta, True)
    lpt, lrt = torch.log_softmax(th, -1), torch.as_tensor(lr)
    trl_dpo_loss(lpt[x, w], lpt[x, l], lrt[x, w], lrt[x, l], beta=0.2,
                 label_smoothing=0.05)[0].sum().backward()
    assert_close(ours, th.grad, atol=1e-15)


LP = -np.ones(4)
Z, IDS, M = np.zeros((2, 3, 4)), np.zeros((2, 3), dtype=int), np.ones((2, 3), bool)
BAD = [
    BadInput("形状不同", lambda: ch.dpo_loss(LP, LP[:, None], LP, LP), "policy_rejected_logps"),
    BadInput("参考形状不同", lambda: ch.dpo_loss(LP, LP, LP[:3], LP), "reference_chosen_logps"),
    BadInput("对数概率为正", lambda: ch.dpo_loss(LP, LP, LP, -LP), "reference_rejected_logps"),
    BadInput("含 nan", lambda: ch.dpo_loss(LP * np.nan, LP, LP, LP), "policy_chosen_logps"),
    BadInput("含 -inf", lambda: ch.dpo_loss(LP, LP * np.inf, LP, LP), "policy_rejected_logps"),
    BadInput("字符串", lambda: ch.dpo_loss(LP.astype(str), LP, LP, LP), "policy_chosen_logps", TypeError),
    BadInput("布尔", lambda: ch.dpo_loss(LP, LP, LP < 0, LP), "reference_chosen_logps", TypeError),
    BadInput("beta = 0", lambda: ch.dpo_loss(LP, LP, LP, LP, beta=0.0), "beta"),
    BadInput("beta < 0", lambda: ch.dpo_loss(LP, LP, LP, LP, beta=-1), "beta"),
    BadInput("beta = inf", lambda: ch.dpo_loss(LP, LP, LP, LP, beta=np.inf), "beta"),
    BadInput("beta 是数组", lambda: ch.dpo_loss(LP, LP, LP, LP, beta=LP), "beta", TypeError),
    BadInput("ε = 0.5", lambda: ch.dpo_loss(LP, LP, LP, LP, label_smoothing=0.5), "label_smoothing"),
    BadInput("ε < 0", lambda: ch.dpo_loss(LP, LP, LP, LP, label_smoothing=-0.1), "label_smoothing"),
    BadInput("grad 的 beta", lambda: ch.dpo_loss_grad(LP, LP, LP, LP, beta=0), "beta"),
    BadInput("logits 二维", lambda: ch.sequence_logprobs(Z[0], IDS[0], M[0]), "logits"),
    BadInput("V = 0", lambda: ch.sequence_logprobs(Z[..., :0], IDS, M), "logits"),
    BadInput("logits 含 nan", lambda: ch.sequence_logprobs(Z * np.nan, IDS, M), "logits"),
    BadInput("logits 复数", lambda: ch.sequence_logprobs(Z + 1j, IDS, M), "logits", TypeError),
    BadInput("labels 浮点", lambda: ch.sequence_logprobs(Z, IDS * 1.0, M), "labels", TypeError),
    BadInput("labels 形状", lambda: ch.sequence_logprobs(Z, IDS[:, :2], M), "labels"),
    BadInput("labels 越界", lambda: ch.sequence_logprobs(Z, IDS + 4, M), "labels"),
    BadInput("labels 为负", lambda: ch.sequence_logprobs(Z, IDS - 100, M), "labels"),
    BadInput("mask 非布尔", lambda: ch.sequence_logprobs(Z, IDS, M.astype(int)), "mask", TypeError),
    BadInput("mask 形状", lambda: ch.sequence_logprobs(Z, IDS, M[:1]), "mask"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


def test_masked_labels_may_be_anything():
    z = seeded(3).normal(size=(2, 4, 5))
    ids = np.array([[1, 2, 3, -100], [4, 0, -7, 99]])
    mask = np.array([[0, 1, 1, 0], [0, 1, 0, 0]], dtype=bool)
    ref = trl_get_batch_logps(t64(z), torch.as_tensor(np.where(mask, ids, -100)))
    assert_close(ch.sequence_logprobs(z, ids, mask), ref, atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), beta=st.floats(1e-3, 10), eps=st.floats(0, 0.49),
       shift=st.floats(-50, 0))
def test_properties(seed, beta, eps, shift):
    """(1) 损失只依赖 h：给策略与参考的同一回答加同一个常数不变；
    (2) 交换 chosen/rejected 等于 h → -h：ε = 0 时 ℓ(h) - ℓ(-h) = -βh；
    (3) 导数在 [β(ε-1), βε] 内，且 chosen 与 rejected 的导数互为相反数。"""
    pc, pr, rc, rr = _logps(seed, (6,), scale=30.0)
    base = ch.dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps)[0]
    moved = ch.dpo_loss(pc + shift, pr, rc + shift, rr, beta=beta, label_smoothing=eps)[0]
    assert_close(moved, base, atol=1e-12, rtol=1e-12)
    h = (pc - pr) - (rc - rr)
    lw = ch.dpo_loss(pc, pr, rc, rr, beta=beta)[0]
    ll = ch.dpo_loss(pr, pc, rr, rc, beta=beta)[0]
    assert_close(lw - ll, -beta * h, atol=1e-12, rtol=1e-12)
    g_c, g_r = ch.dpo_loss_grad(pc, pr, rc, rr, beta=beta, label_smoothing=eps)
    assert np.all(g_c >= beta * (eps - 1) - 1e-15) and np.all(g_c <= beta * eps + 1e-15)
    assert np.all(g_r == -g_c)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), beta=st.floats(0.05, 5))
def test_dpo_optimum_is_the_kl_regularised_optimal_policy(seed, beta):
    """总体（无穷数据）损失的最小点：π ∝ π_ref·exp(r*/β)（式 eq-dpo-optimal）时梯度为 0。"""
    r = seeded(seed)
    K = 4
    theta_ref, r_true = r.normal(size=K), r.normal(size=K)
    pref = np.exp(ch.log_softmax(theta_ref))
    lp_ref = ch.log_softmax(theta_ref)
    lp_star = ch.log_softmax(theta_ref + r_true / beta)
    w, l = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")
    w, l = w[w != l], l[w != l]
    # 每个有序对 (w, l) 的总体权重：两个回答都从 π_ref 抽出，w 胜出的 BT 概率
    weight = pref[w] * pref[l] * ch.sigmoid(r_true[w] - r_true[l])
    g, _ = ch.dpo_loss_grad(lp_star[w], lp_star[l], lp_ref[w], lp_ref[l], beta=beta)
    grad = np.zeros(K)
    np.add.at(grad, w, weight * g)
    np.add.at(grad, l, -weight * g)
    assert_close(grad, np.zeros(K), atol=1e-14)
