"""线性回归：mse_loss 对照 F.mse_loss；正规方程、lstsq、梯度下降对照 sklearn；Ridge 对照 sklearn Ridge（float64）。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LinearRegression
from sklearn.linear_model import Ridge as SkRidge

from mlbook.chapters import linear_regression as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64


def _data(seed, n, p, offset=1.0, k=None):
    r = seeded(seed)
    X = r.normal(size=(n, p)) + offset * r.normal(size=p)
    shape = (n,) if k is None else (n, k)
    y = r.normal(size=shape) + X @ r.normal(size=(p,) + shape[1:]) + 2.0
    return X, y


def _gd_iters(X, alpha=0.0, fit_intercept=True, eps=1e-16):
    lam = np.linalg.eigvalsh(ch.linear_regression_hessian(X, alpha, fit_intercept))
    lam_min = lam[lam > 1e-10 * lam[-1]][0]  # 秩亏时取最小的非零特征值
    return int(np.ceil(lam[-1] / lam_min * np.log(1 / eps)))


# ---------- mse_loss ----------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [(1,), (7,), (4, 3), (2, 3, 5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_torch(seed, shape, reduction):
    r = seeded(seed)
    a, b = r.normal(size=shape), 10 * r.normal(size=shape)
    ref = F.mse_loss(t64(a), t64(b), reduction=reduction)
    assert_close(ch.mse_loss(a, b, reduction), ref, atol=1e-12)


def test_mse_loss_extremes_and_empty():
    a = np.array([1e150, -1e150, 0.0])
    assert_close(ch.mse_loss(a, -a, "none"), F.mse_loss(t64(a), t64(-a), reduction="none"), atol=0)
    assert ch.mse_loss(a, a) == 0.0
    assert ch.mse_loss(np.zeros(0), np.zeros(0), "sum") == 0.0
    assert ch.mse_loss(np.zeros((0, 3)), np.zeros((0, 3)), "none").shape == (0, 3)
    assert ch.mse_loss([1, 2], [True, False]) == 2.0  # 整数与布尔按实数处理


# ---------- 梯度与 Hessian ----------


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 2.5])
def test_first_gd_step_and_hessian_match_autograd(fit_intercept, alpha):
    X, y = _data(0, 12, 3)
    n = len(y)

    def objective(w, b):
        r = t64(X) @ w + b - t64(y)
        return (r @ r + alpha * (w @ w)) / n

    lr = 0.01
    w, b, losses = ch.linear_regression_gd(X, y, lr=lr, n_iters=1, alpha=alpha, fit_intercept=fit_intercept)
    wt, bt = t64(np.zeros(3), True), t64(0.0, True)
    objective(wt, bt).backward()
    assert_close(w, -lr * wt.grad, atol=1e-15)
    assert_close(b, -lr * bt.grad if fit_intercept else 0.0, atol=1e-15)
    assert_close(losses[0], np.mean(y**2), atol=1e-13)

    if fit_intercept:
        H = torch.autograd.functional.hessian(lambda th: objective(th[:-1], th[-1]), t64(np.zeros(4)))
    else:
        H = torch.autograd.functional.hessian(lambda th: objective(th, 0.0), t64(np.zeros(3)))
    assert_close(ch.linear_regression_hessian(X, alpha, fit_intercept), H, atol=1e-13)


# ---------- 正规方程、lstsq、梯度下降 ----------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [(2, 1), (10, 1), (40, 4), (25, 8)])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_solvers_match_sklearn_linear_regression(seed, shape, fit_intercept):
    X, y = _data(seed, *shape)
    ref = LinearRegression(fit_intercept=fit_intercept).fit(X, y)
    for w, b in [ch.linear_regression_normal_equation(X, y, fit_intercept),
                 ch.linear_regression_lstsq(X, y, fit_intercept)]:
        assert_close(w, ref.coef_, atol=1e-10)
        assert_close(b, ref.intercept_, atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("alpha", [0.0, 0.3, 20.0])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gradient_descent_converges_to_closed_form(seed, alpha, fit_intercept):
    X, y = _data(seed, 30, 3, offset=0.5)
    w, b, losses = ch.linear_regression_gd(X, y, n_iters=_gd_iters(X, alpha, fit_intercept),
                                           alpha=alpha, fit_intercept=fit_intercept)
    ref = SkRidge(alpha=alpha, fit_intercept=fit_intercept).fit(X, y)
    assert_close(w, ref.coef_, atol=1e-11)
    assert_close(b, ref.intercept_, atol=1e-11)
    assert np.all(np.diff(losses) <= 1e-12)  # η = 1/λ_max < 2/λ_max：损失单调不增


def test_step_size_threshold_two_over_lambda_max():
    X, y = _data(4, 50, 2)
    lam_max = np.linalg.eigvalsh(ch.linear_regression_hessian(X))[-1]
    _, _, below = ch.linear_regression_gd(X, y, lr=0.99 * 2 / lam_max, n_iters=3000)
    _, _, above = ch.linear_regression_gd(X, y, lr=1.01 * 2 / lam_max, n_iters=3000)
    w_star, b_star = ch.linear_regression_lstsq(X, y)
    best = ch.mse_loss(X @ w_star + b_star, y)
    assert below[-1] - best < 1e-10
    assert above[-1] > 1e6 * above[0]
    _, _, huge = ch.linear_regression_gd(X, y, lr=1e6, n_iters=200)  # 发散到 inf 也不报警告
    assert not np.isfinite(huge[-1])


def test_rank_deficient_features():
    x0 = np.array([[1, 2], [2, 3], [3, 4], [4, 5], [5, 6]], dtype=float)
    y0 = np.array([5, 7, 9, 11, 13], dtype=float)
    with pytest.raises(ValueError, match="秩 2 < 3"):
        ch.linear_regression_normal_equation(x0, y0)
    w, b = ch.linear_regression_lstsq(x0, y0)
    A = np.column_stack([x0, np.ones(5)])
    assert_close(np.r_[w, b], np.linalg.pinv(A) @ y0, atol=1e-13)
    assert_close(np.r_[w, b], [1 / 3, 5 / 3, 4 / 3], atol=1e-13)
    wg, bg, _ = ch.linear_regression_gd(x0, y0, n_iters=_gd_iters(x0))
    assert_close(np.r_[wg, bg], np.r_[w, b], atol=1e-12)
    # 重复的列、不带截距：同样秩亏
    xd = np.column_stack([x0[:, 0], x0[:, 0]])
    with pytest.raises(ValueError, match="列线性相关"):
        ch.linear_regression_normal_equation(xd, y0, fit_intercept=False)
    assert_close(ch.linear_regression_lstsq(xd, y0, fit_intercept=False)[0],
                 np.linalg.lstsq(xd, y0, rcond=None)[0], atol=1e-13)
    # alpha > 0 时与 sklearn 一致且唯一
    ref = SkRidge(alpha=0.1).fit(x0, y0)
    ours = ch.Ridge(alpha=0.1).fit(x0, y0)
    assert_close(ours.coef_, ref.coef_, atol=1e-13)
    assert_close(ours.intercept_, ref.intercept_, atol=1e-13)


# ---------- Ridge ----------


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (60, 5), (8, 20), (30, 30)])
@pytest.mark.parametrize("alpha", [1e-3, 1.0, 1e6])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("k", [None, 3])
def test_ridge_matches_sklearn(seed, shape, alpha, fit_intercept, k):
    X, y = _data(seed, *shape, k=k)
    ours = ch.Ridge(alpha=alpha, fit_intercept=fit_intercept)
    assert ours.fit(X, y) is ours
    ref = SkRidge(alpha=alpha, fit_intercept=fit_intercept).fit(X, y)
    scale = max(1.0, np.abs(y).max())
    assert_close(ours.coef_, ref.coef_, atol=1e-11 * scale)
    assert_close(ours.intercept_, ref.intercept_, atol=1e-11 * scale)
    Xt = seeded(seed + 100).normal(size=(4, shape[1]))
    assert_close(ours.predict(Xt), ref.predict(Xt), atol=1e-11 * scale)
    assert np.shape(ours.coef_) == np.shape(ref.coef_)
    assert np.shape(ours.intercept_) == np.shape(ref.intercept_)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_ridge_alpha_zero_is_ordinary_least_squares(fit_intercept):
    X, y = _data(7, 20, 4)
    ref = SkRidge(alpha=0.0, fit_intercept=fit_intercept).fit(X, y)
    ours = ch.Ridge(alpha=0, fit_intercept=fit_intercept).fit(X, y)
    assert_close(ours.coef_, ref.coef_, atol=1e-11)
    assert_close(ours.intercept_, ref.intercept_, atol=1e-11)


def test_ridge_constant_feature_and_integer_input():
    X, y = _data(8, 15, 3)
    X[:, 1] = 4.0  # 方差为 0 的特征：中心化后整列为 0，系数为 0
    ours = ch.Ridge(alpha=0.5).fit(X, y)
    ref = SkRidge(alpha=0.5).fit(X, y)
    assert ours.coef_[1] == 0.0
    assert_close(ours.coef_, ref.coef_, atol=1e-12)
    Xi, yi = np.arange(12).reshape(6, 2) ** 2, np.arange(6)
    assert_close(ch.Ridge(alpha=2).fit(Xi, yi).coef_, SkRidge(alpha=2).fit(Xi, yi).coef_, atol=1e-12)


def test_ridge_is_map_under_gaussian_prior():
    X, y = _data(9, 25, 4)
    sigma, tau = 0.7, 0.2
    post = np.linalg.solve(X.T @ X / sigma**2 + np.eye(4) / tau**2, X.T @ y / sigma**2)
    assert_close(ch.Ridge(alpha=sigma**2 / tau**2, fit_intercept=False).fit(X, y).coef_, post, atol=1e-12)


def test_alpha_scaling_mean_form_equals_n_lambda():
    X, y = _data(10, 40, 3)
    lam = 0.25
    Xc, yc = X - X.mean(0), y - y.mean()
    w_mean_form = np.linalg.solve(Xc.T @ Xc / 40 + lam * np.eye(3), Xc.T @ yc / 40)
    assert_close(ch.Ridge(alpha=40 * lam).fit(X, y).coef_, w_mean_form, atol=1e-12)
    assert np.abs(ch.Ridge(alpha=lam).fit(X, y).coef_ - w_mean_form).max() > 1e-3


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), a1=st.floats(1e-4, 1e3), ratio=st.floats(1.01, 100.0),
       shift=st.floats(-1e3, 1e3))
def test_ridge_properties(seed, a1, ratio, shift):
    X, y = _data(seed, 12, 4)
    m1 = ch.Ridge(alpha=a1).fit(X, y)
    m2 = ch.Ridge(alpha=a1 * ratio).fit(X, y)
    # ‖w(α)‖ 随 α 单调下降，式 (eq-linreg-svd)
    assert np.linalg.norm(m2.coef_) <= np.linalg.norm(m1.coef_) * (1 + 1e-12)
    # 截距不惩罚：y 平移只改变截距
    ms = ch.Ridge(alpha=a1).fit(X, y + shift)
    assert_close(ms.coef_, m1.coef_, atol=1e-9)
    assert_close(ms.intercept_, m1.intercept_ + shift, atol=1e-9)
    # 一阶条件：X_cᵀ r = α w，式 (eq-linreg-ridge-solution) 的前一步
    r = y - m1.predict(X)
    assert_close((X - X.mean(0)).T @ r, a1 * m1.coef_, atol=1e-8 * max(1.0, a1))


# ---------- 坏输入 ----------

Xb, yb = _data(0, 10, 2)
BAD = [
    BadInput("mse 形状不同", lambda: ch.mse_loss(np.zeros((3, 1)), np.zeros(3)), "input 与 target"),
    BadInput("mse reduction", lambda: ch.mse_loss(np.zeros(3), np.zeros(3), reduction="avg"), "reduction"),
    BadInput("mse 空的 mean", lambda: ch.mse_loss(np.zeros(0), np.zeros(0)), "为空"),
    BadInput("mse 含 nan", lambda: ch.mse_loss(np.array([np.nan]), np.zeros(1)), "input"),
    BadInput("mse 字符串", lambda: ch.mse_loss(np.zeros(1), np.array(["a"])), "target", TypeError),
    BadInput("mse 复数", lambda: ch.mse_loss(np.zeros(1) + 1j, np.zeros(1)), "input", TypeError),
    BadInput("X 一维", lambda: ch.linear_regression_lstsq(Xb[:, 0], yb), "X 必须是二维"),
    BadInput("X 没有样本", lambda: ch.Ridge().fit(np.zeros((0, 2)), np.zeros(0)), "至少要有一个样本"),
    BadInput("y 二维给 gd", lambda: ch.linear_regression_gd(Xb, yb[:, None]), "y 的形状"),
    BadInput("y 三维给 Ridge", lambda: ch.Ridge().fit(Xb, np.zeros((10, 1, 1))), "y 的形状"),
    BadInput("样本数不同", lambda: ch.linear_regression_normal_equation(Xb, yb[:5]), "样本数"),
    BadInput("y 含 inf", lambda: ch.Ridge().fit(Xb, yb + np.inf), "y 含有"),
    BadInput("alpha 负", lambda: ch.Ridge(alpha=-0.1).fit(Xb, yb), "alpha"),
    BadInput("alpha nan", lambda: ch.linear_regression_gd(Xb, yb, alpha=np.nan), "alpha"),
    BadInput("alpha 数组", lambda: ch.Ridge(alpha=np.ones(2)).fit(Xb, yb), "alpha", TypeError),
    BadInput("alpha 布尔", lambda: ch.ridge_closed_form(Xb, yb, alpha=True), "alpha", TypeError),
    BadInput("lr 为 0", lambda: ch.linear_regression_gd(Xb, yb, lr=0.0), "lr"),
    BadInput("lr 为 inf", lambda: ch.linear_regression_gd(Xb, yb, lr=np.inf), "lr"),
    BadInput("n_iters 负", lambda: ch.linear_regression_gd(Xb, yb, n_iters=-1), "n_iters"),
    BadInput("n_iters 浮点", lambda: ch.linear_regression_gd(Xb, yb, n_iters=10.0), "n_iters", TypeError),
    BadInput("秩亏正规方程", lambda: ch.linear_regression_normal_equation(
        np.column_stack([Xb[:, 0], 3 * Xb[:, 0]]), yb), "列线性相关"),
    BadInput("未 fit 就 predict", lambda: ch.Ridge().predict(Xb), "fit"),
    BadInput("predict 特征数", lambda: ch.Ridge().fit(Xb, yb).predict(np.zeros((3, 5))), "特征"),
    BadInput("Hessian X 一维", lambda: ch.linear_regression_hessian(np.zeros(3)), "X"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()
