"""概率、似然与条件概率：与 scipy.stats（binom、bernoulli、multinomial、norm、beta）和 PyTorch 的损失在 float64 下对照，
外加 0·log 0 的边界、下溢、模拟、坏输入与性质测试。"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats as ss
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

import mlbook
from mlbook.chapters import probability_likelihood as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64

# ---------- 二项分布与 scipy.stats.binom ----------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("size", [1, 17, 300])
def test_binom_matches_scipy(seed, size):
    r = seeded(seed)
    k = r.integers(-3, 80, size=size)  # 含 k < 0 与 k > n
    n = r.integers(0, 70, size=size)
    p = r.random(size)
    assert_close(ch.binom_logpmf(k, n, p), ss.binom.logpmf(k, n, p), atol=1e-12, rtol=1e-13)
    assert_close(ch.binom_pmf(k, n, p), ss.binom.pmf(k, n, p), atol=1e-15, rtol=1e-12)


def test_binom_broadcasting_and_scalars():
    k = np.arange(11)[:, None]  # (11, 1)
    p = np.linspace(0, 1, 7)  # (7,)
    ours = ch.binom_pmf(k, 10, p)
    assert ours.shape == (11, 7)
    assert_close(ours, ss.binom.pmf(k, 10, p), atol=1e-15, rtol=1e-12)
    assert_close(ours.sum(axis=0), np.ones(7), atol=1e-14)  # 对 k 求和为 1
    s = ch.binom_pmf(3, 10, 0.4)
    assert np.ndim(s) == 0
    assert_close(s, ss.binom.pmf(3, 10, 0.4), atol=0, rtol=1e-14)
    assert_close(ch.binom_pmf(t64([2.0]), 5, t64([0.3])), ss.binom.pmf(2, 5, [0.3]), atol=0, rtol=1e-14)


def test_binom_edge_cases():
    # p = 0 / 1 时是退化分布：0·log 0 = 0，不是 nan
    assert ch.binom_pmf(0, 5, 0.0) == 1.0 and ch.binom_pmf(5, 5, 1.0) == 1.0
    assert ch.binom_pmf(1, 5, 0.0) == 0.0 and ch.binom_pmf(4, 5, 1.0) == 0.0
    assert ch.binom_logpmf(1, 5, 0.0) == -np.inf
    assert ch.binom_pmf(0, 0, 0.3) == 1.0  # n = 0
    assert ch.binom_pmf(-1, 5, 0.5) == 0.0 and ch.binom_pmf(6, 5, 0.5) == 0.0
    # 很小的 p：log1p(-p) 保住精度
    assert_close(ch.binom_logpmf(0, 10**6, 1e-12), ss.binom.logpmf(0, 10**6, 1e-12), atol=0, rtol=1e-12)
    # 大 n：面试版的 comb · p^k 溢出，对数域不会
    ks = np.arange(5001)
    assert_close(ch.binom_pmf(ks, 5000, 0.37), ss.binom.pmf(ks, 5000, 0.37), atol=1e-16, rtol=1e-10)
    assert np.isfinite(ch.binom_logpmf(2500, 5000, 0.5))


# ---------- 伯努利与类别分布 ----------


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 10, 500])
def test_bernoulli_log_likelihood_matches_scipy(seed, n):
    r = seeded(seed)
    x = (r.random(n) < r.random()).astype(float)
    grid = np.concatenate([[0.0, 1.0], r.random(50)])
    ref = ss.bernoulli.logpmf(x[:, None], grid).sum(axis=0)
    assert_close(ch.bernoulli_log_likelihood(x, grid), ref, atol=1e-11, rtol=1e-14)
    # 网格可以是任意形状
    g2 = grid[2:].reshape(5, 10)
    assert ch.bernoulli_log_likelihood(x, g2).shape == (5, 10)


@pytest.mark.parametrize("seed", range(4))
def test_bernoulli_mle_maximises_likelihood(seed):
    x = (seeded(seed).random(37) < 0.4).astype(float)
    res = minimize_scalar(
        lambda t: -ch.bernoulli_log_likelihood(x, t),
        bounds=(1e-9, 1 - 1e-9),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert_close(ch.bernoulli_mle(x), res.x, atol=1e-7)
    # 平均 NLL 就是二元交叉熵
    theta = seeded(seed + 10).random()
    ref = F.binary_cross_entropy(t64(np.full(x.size, theta)), t64(x))
    assert_close(-ch.bernoulli_log_likelihood(x, theta) / x.size, ref, atol=1e-15)


def test_bernoulli_all_heads_and_empty():
    heads = np.ones(6)
    assert ch.bernoulli_log_likelihood(heads, 1.0) == 0.0  # 不是 nan
    assert ch.bernoulli_log_likelihood(heads, 0.0) == -np.inf
    assert ch.bernoulli_mle(heads) == 1.0
    assert ch.bernoulli_log_likelihood(np.zeros(0), 0.3) == 0.0  # 空乘积为 1


def test_bernoulli_gradient_matches_finite_differences():
    x = (seeded(3).random(25) < 0.6).astype(float)
    k, n = x.sum(), x.size
    t = np.array([0.05, 0.3, 0.5, 0.9])
    num = mlbook.numeric_grad(lambda v: ch.bernoulli_log_likelihood(x, v).sum(), t)
    assert_close(k / t - (n - k) / (1 - t), num, atol=1e-6)
    tt = t64(t, requires_grad=True)
    (k * torch.log(tt) + (n - k) * torch.log1p(-tt)).sum().backward()
    assert_close(k / t - (n - k) / (1 - t), tt.grad, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("c, n", [(1, 5), (4, 30), (12, 200)])
def test_categorical_matches_references(seed, c, n):
    r = seeded(seed)
    y = r.integers(0, c, size=n)
    q = r.dirichlet(np.ones(c), size=6)  # (6, C)
    ours = ch.categorical_log_likelihood(y, q)
    assert_close(ours, np.log(q[:, y]).sum(axis=1), atol=1e-11)
    cnt = np.bincount(y, minlength=c)
    log_coef = scipy.special.gammaln(n + 1) - scipy.special.gammaln(cnt + 1).sum()
    assert_close(ours + log_coef, ss.multinomial.logpmf(cnt, n, q), atol=1e-10)
    # 平均 NLL = nll_loss = cross_entropy（logit 取 log q）
    lq = t64(np.log(np.tile(q[0], (n, 1))))
    assert_close(-ours[0] / n, F.nll_loss(lq, torch.as_tensor(y)), atol=1e-14)
    assert_close(-ours[0] / n, F.cross_entropy(lq, torch.as_tensor(y)), atol=1e-14)
    # MLE = 频率；它的似然不小于任何候选分布
    p_hat = ch.categorical_mle(y, c)
    assert_close(p_hat, cnt / n, atol=0)
    assert (ch.categorical_log_likelihood(y, p_hat) >= ours - 1e-12).all()


def test_categorical_zero_probabilities():
    # 未出现的类别概率为 0 不影响似然；出现的类别概率为 0 时似然为 0
    assert_close(ch.categorical_log_likelihood([0, 0, 1], [0.5, 0.5, 0.0]), 3 * np.log(0.5), atol=1e-15)
    assert ch.categorical_log_likelihood([2], [0.5, 0.5, 0.0]) == -np.inf
    assert_close(ch.categorical_mle([2, 2, 0], 4), [1 / 3, 0, 2 / 3, 0], atol=1e-16)


def test_categorical_nll_gradient_is_softmax_minus_empirical():
    r = seeded(5)
    y = r.integers(0, 4, size=50)
    z = t64(r.normal(size=4), requires_grad=True)
    F.cross_entropy(z.expand(50, 4), torch.as_tensor(y)).backward()
    p_hat = ch.categorical_mle(y, 4)
    assert_close(z.grad, torch.softmax(z, 0).detach() - t64(p_hat), atol=1e-15)


# ---------- 高斯 ----------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n", [1, 2, 50, 1000])
def test_norm_matches_scipy(seed, n):
    r = seeded(seed)
    data = r.normal(r.normal() * 3, r.random() * 2 + 0.1, size=n)
    assert_close(ch.norm_fit(data), ss.norm.fit(data), atol=1e-12, rtol=1e-12)
    loc, scale = r.normal(), r.random() + 0.2
    assert_close(ch.norm_logpdf(data, loc, scale), ss.norm.logpdf(data, loc, scale), atol=1e-13, rtol=1e-15)
    assert_close(ch.norm_logpdf(data), ss.norm.logpdf(data), atol=1e-14, rtol=1e-15)
    # MLE 的 NLL 不大于无偏标准差下的 NLL
    mu, s = ch.norm_fit(data)
    if n > 1:
        s_unbiased = torch.std(t64(data)).item()
        assert -ch.norm_logpdf(data, mu, s).sum() <= -ch.norm_logpdf(data, mu, s_unbiased).sum()


def test_norm_logpdf_extremes_and_broadcast():
    x = np.array([-1e10, 0.0, 1e10, np.inf])
    with np.errstate(over="ignore"):
        ref = ss.norm.logpdf(x)
    assert_close(ch.norm_logpdf(x), ref, atol=0, rtol=1e-15)
    out = ch.norm_logpdf(np.zeros((3, 1)), np.zeros(4), np.ones(4))
    assert out.shape == (3, 4)


# ---------- 全概率与贝叶斯 ----------


def test_medical_example_matches_simulation():
    prior, lik = np.array([0.01, 0.99]), np.array([0.99, 0.05])
    assert_close(ch.total_probability(prior, lik), 0.0594, atol=1e-15)
    post = ch.bayes_posterior(prior, lik)
    assert_close(post, [0.0099 / 0.0594, 0.0495 / 0.0594], atol=1e-15)
    r = seeded(0)
    sick = r.random(400_000) < 0.01
    pos = r.random(sick.size) < np.where(sick, 0.99, 0.05)
    assert abs(pos.mean() - 0.0594) < 0.002
    assert abs(sick[pos].mean() - post[0]) < 0.01


@pytest.mark.parametrize("seed", range(3))
def test_bayes_batched_and_log_domain(seed):
    r = seeded(seed)
    prior = r.dirichlet(np.ones(7))
    lik = r.random((5, 3, 7))  # (…, K)
    post = ch.bayes_posterior(prior, lik)
    ref = lik * prior / (lik * prior).sum(-1, keepdims=True)
    assert_close(post, ref, atol=1e-15)
    assert_close(ch.bayes_posterior(prior, np.log(lik), log=True), ref, atol=1e-15)
    assert_close(ch.total_probability(prior, lik), (lik * prior).sum(-1), atol=1e-15)
    # 证据 = 全概率；后验按证据加权平均回到先验
    ev = ch.total_probability(prior, lik[0, 0])
    assert_close(ch.bayes_posterior(prior, lik[0, 0]) * ev, lik[0, 0] * prior, atol=1e-15)


def test_grid_posterior_is_beta_even_when_likelihood_underflows():
    g = np.linspace(0, 1, 301)
    uniform = np.full(g.size, 1 / g.size)
    beta = ss.beta.pdf(g, 8, 4)
    assert_close(ch.bayes_posterior(uniform, ch.binom_pmf(7, 10, g)), beta / beta.sum(), atol=1e-14)
    x = (seeded(1).random(3000) < 0.45).astype(float)
    k = int(x.sum())
    ll = ch.bernoulli_log_likelihood(x, g)
    assert np.exp(ll).max() == 0.0  # 连乘下溢
    lb = ss.beta.logpdf(g, k + 1, 3000 - k + 1)
    ref = np.exp(lb - lb.max())
    assert_close(ch.bayes_posterior(uniform, ll, log=True), ref / ref.sum(), atol=1e-15, rtol=1e-12)
    with pytest.raises(ValueError, match="证据"):
        ch.bayes_posterior(uniform, np.exp(ll))  # 不取对数就无从归一化


def test_bayes_zero_prior_and_impossible_observation():
    post = ch.bayes_posterior([0.0, 0.5, 0.5], [1.0, 0.0, 0.2])
    assert_close(post, [0.0, 0.0, 1.0], atol=0)
    post = ch.bayes_posterior([0.0, 0.5, 0.5], [0.0, -np.inf, -1.0], log=True)
    assert_close(post, [0.0, 0.0, 1.0], atol=0)


# ---------- 坏输入 ----------

BAD = [
    BadInput("p 大于 1", lambda: ch.binom_pmf(3, 10, 1.2), "p"),
    BadInput("p 为负", lambda: ch.binom_logpmf(3, 10, -0.1), "p"),
    BadInput("p 含 nan", lambda: ch.binom_pmf(3, 10, np.nan), "p"),
    BadInput("k 不是整数", lambda: ch.binom_pmf(2.5, 10, 0.5), "k"),
    BadInput("k 为 inf", lambda: ch.binom_pmf(np.inf, 10, 0.5), "k"),
    BadInput("n 为负", lambda: ch.binom_logpmf(0, -3, 0.5), "n"),
    BadInput("n 不是整数", lambda: ch.binom_logpmf(0, 3.5, 0.5), "n"),
    BadInput("binom 形状", lambda: ch.binom_pmf(np.arange(3), 10, np.full(4, 0.5)), "形状"),
    BadInput("复数 p", lambda: ch.binom_pmf(1, 2, 0.5 + 1j), "p", TypeError),
    BadInput("字符串 k", lambda: ch.binom_pmf("3", 5, 0.5), "k", TypeError),
    BadInput("x 不是 0/1", lambda: ch.bernoulli_log_likelihood([0, 2, 1], 0.5), "x"),
    BadInput("x 二维", lambda: ch.bernoulli_log_likelihood(np.zeros((2, 2)), 0.5), "x"),
    BadInput("伯努利 p 越界", lambda: ch.bernoulli_log_likelihood([0, 1], 1.5), "p"),
    BadInput("伯努利 x 为空", lambda: ch.bernoulli_mle([]), "x"),
    BadInput("probs 和不为 1", lambda: ch.categorical_log_likelihood([0, 1], [0.5, 0.6]), "probs"),
    BadInput("probs 为负", lambda: ch.categorical_log_likelihood([0], [1.5, -0.5]), "probs"),
    BadInput("probs 标量", lambda: ch.categorical_log_likelihood([0], 1.0), "probs"),
    BadInput("类别越界", lambda: ch.categorical_mle([0, 3], num_classes=3), "x"),
    BadInput("类别为负", lambda: ch.categorical_log_likelihood([-1], [0.5, 0.5]), "x"),
    BadInput("类别非整数", lambda: ch.categorical_mle([0.5], num_classes=2), "x"),
    BadInput("num_classes 为 0", lambda: ch.categorical_mle([0], num_classes=0), "num_classes"),
    BadInput("类别为空", lambda: ch.categorical_mle([], num_classes=2), "x"),
    BadInput("scale 为 0", lambda: ch.norm_logpdf(0.0, 0.0, 0.0), "scale"),
    BadInput("scale 为 inf", lambda: ch.norm_logpdf(0.0, 0.0, np.inf), "scale"),
    BadInput("norm_fit 为空", lambda: ch.norm_fit([]), "data"),
    BadInput("norm_fit 含 inf", lambda: ch.norm_fit([1.0, np.inf]), "data"),
    BadInput("prior 和不为 1", lambda: ch.bayes_posterior([0.2, 0.2], [0.9, 0.1]), "prior"),
    BadInput("prior 二维", lambda: ch.total_probability(np.eye(2) / 2, [0.9, 0.1]), "prior"),
    BadInput("似然长度不符", lambda: ch.bayes_posterior([0.5, 0.5], [0.9, 0.1, 0.3]), "likelihood"),
    BadInput("似然为负", lambda: ch.total_probability([0.5, 0.5], [0.9, -0.1]), "likelihood"),
    BadInput("对数似然 +inf", lambda: ch.bayes_posterior([0.5, 0.5], [np.inf, 0.0], log=True), "likelihood"),
    BadInput("证据为 0", lambda: ch.bayes_posterior([1.0, 0.0], [0.0, 0.5]), "证据"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


# ---------- 性质 ----------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 60))
def test_properties(seed, n):
    """pmf 对 k 求和为 1；伯努利似然在 MLE 处最大；后验对似然整体缩放不变；
    依次用两个观测更新与一次用乘积似然更新结果相同（条件独立时）。"""
    r = seeded(seed)
    p = r.random()
    assert_close(ch.binom_pmf(np.arange(n + 1), n, p).sum(), 1.0, atol=1e-13)
    x = (r.random(n) < p).astype(float)
    grid = r.random(20)
    assert (ch.bernoulli_log_likelihood(x, grid) <= ch.bernoulli_log_likelihood(x, ch.bernoulli_mle(x)) + 1e-12).all()
    prior = r.dirichlet(np.ones(4))
    l1, l2 = r.random(4) + 1e-3, r.random(4) + 1e-3
    post = ch.bayes_posterior(prior, l1)
    assert_close(ch.bayes_posterior(prior, l1 * 1e-200), post, atol=1e-14)
    assert_close(ch.bayes_posterior(post, l2), ch.bayes_posterior(prior, l1 * l2), atol=1e-14)
    assert_close(post.sum(), 1.0, atol=1e-15)
