"""逻辑回归：BCE 对照 PyTorch；梯度、Hessian 对照 autograd；LogisticRegression 对照 sklearn（float64）。"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression as SkLogisticRegression

import mlbook
from mlbook.chapters import logistic_regression as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64


def _data(seed, n=80, p=4, offset=1.0):
    r = seeded(seed)
    X = r.normal(size=(n, p)) + offset * r.normal(size=p)
    z = X @ r.normal(size=p) - 0.5
    y = (r.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    return X, y


# ---------- 二元交叉熵 ----------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [(1,), (7,), (16, 3), (2, 3, 4)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_torch(seed, shape, reduction):
    r = seeded(seed)
    z, t = r.normal(scale=8.0, size=shape), r.random(shape)
    w, pw = r.random(shape[-1:]), 3 * r.random(shape[-1:])
    for kw, ref_kw in [({}, {}), ({"weight": w}, {"weight": t64(w)}), ({"pos_weight": pw}, {"pos_weight": t64(pw)})]:
        ours = ch.binary_cross_entropy_with_logits(z, t, reduction=reduction, **kw)
        ref = F.binary_cross_entropy_with_logits(t64(z), t64(t), reduction=reduction, **ref_kw)
        assert_close(ours, ref, atol=1e-13, rtol=1e-14)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_from_probs_matches_torch(seed, reduction):
    r = seeded(seed)
    p, t, w = r.random((9, 4)), r.random((9, 4)), r.random(4)
    p[0, :2] = [0.0, 1.0]  # 恰为 0 和 1：PyTorch 把 log 截断在 -100
    ours = ch.binary_cross_entropy(p, t, w, reduction)
    ref = F.binary_cross_entropy(t64(p), t64(t), t64(w), reduction=reduction)
    assert_close(ours, ref, atol=1e-12, rtol=1e-14)


def test_bce_from_probs_clamps_log_at_minus_100_like_torch():
    p, t = np.array([0.0, 1.0, 1.0, 0.0]), np.array([1.0, 0.0, 1.0, 0.0])
    ours = ch.binary_cross_entropy(p, t, reduction="none")
    np.testing.assert_array_equal(ours, F.binary_cross_entropy(t64(p), t64(t), reduction="none").numpy())
    np.testing.assert_array_equal(ours, [100.0, 100.0, 0.0, 0.0])


def test_bce_with_logits_at_extreme_logits():
    z = np.array([-1e300, -1000.0, -40.0, 0.0, 40.0, 1000.0, 1e300])
    for y in [0.0, 1.0, 0.25]:
        t = np.full_like(z, y)
        ours = ch.binary_cross_entropy_with_logits(z, t, reduction="none")
        assert np.isfinite(ours).all()
        ref = F.binary_cross_entropy_with_logits(t64(z), t64(t), reduction="none")
        assert_close(ours, ref, atol=1e-15, rtol=1e-15)
    # 标签 0、logit -40：损失 log1p(e^{-40}) ≈ 4e-18；PyTorch 的 (1 - y)z - log σ(z) 相消得 0，本章的形式保留了它
    assert ch.binary_cross_entropy_with_logits([-40.0], [0.0]) == np.log1p(np.exp(-40.0))
    # 标签 0、logit 1000：损失恰为 1000（不是 inf）；标签 1、logit 1000：e^{-1000} 下溢为 0
    assert ch.binary_cross_entropy_with_logits([1000.0], [0.0]) == 1000.0
    assert ch.binary_cross_entropy_with_logits([1000.0], [1.0]) == 0.0


def test_bce_with_logits_infinite_logits_give_limits_not_nan():
    z = np.array([np.inf, -np.inf, np.inf, -np.inf])
    t = np.array([1.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(ch.binary_cross_entropy_with_logits(z, t, reduction="none"), [0, 0, np.inf, np.inf])


def test_bce_with_logits_is_softplus_minus_yz():
    r = seeded(4)
    z, t = r.normal(scale=5, size=50), r.random(50)
    assert_close(
        ch.binary_cross_entropy_with_logits(z, t, reduction="none"),
        ch.softplus(z, threshold=np.inf) - t * z,
        atol=1e-14,
    )


def test_naive_probability_route_fails_at_large_margins():
    # 朴素写法：sigmoid(40) 舍入成 1，log(1 - 1) = -inf
    z = np.array([40.0])
    with np.errstate(divide="ignore"):
        assert np.isinf(-np.log(1 - 1 / (1 + np.exp(-z))))[0]
    # PyTorch 式截断给 100，真实损失约 40；稳定版给出真值
    assert ch.binary_cross_entropy(ch.sigmoid(z), [0.0]) == 100.0
    assert_close(ch.binary_cross_entropy_with_logits(z, [0.0]), 40.0 + np.log1p(np.exp(-40.0)), atol=1e-14)


def test_empty_input():
    assert ch.binary_cross_entropy_with_logits(np.zeros(0), np.zeros(0), reduction="sum") == 0.0
    assert ch.binary_cross_entropy(np.zeros((0, 2)), np.zeros((0, 2)), reduction="none").shape == (0, 2)
    with pytest.raises(ValueError, match="为空"):
        ch.binary_cross_entropy_with_logits(np.zeros(0), np.zeros(0))


# ---------- 梯度与 Hessian ----------


@pytest.mark.parametrize("C", [np.inf, 0.3])
@pytest.mark.parametrize("seed", range(3))
def test_loss_grad_matches_autograd(seed, C):
    X, y = _data(seed, n=30, p=3)
    r = seeded(seed + 10)
    w0, b0 = r.normal(size=3), float(r.normal())
    J, gw, gb = ch.logistic_regression_loss_grad(X, y, w0, b0, C)
    wt, bt = t64(w0, True), t64(b0, True)
    Jt = F.binary_cross_entropy_with_logits(t64(X) @ wt + bt, t64(y)) + (wt @ wt) / (2 * C * len(y))
    Jt.backward()
    assert_close(J, Jt.detach(), atol=1e-14)
    assert_close(gw, wt.grad, atol=1e-15)
    assert_close(gb, bt.grad, atol=1e-15)
    num = mlbook.numeric_grad(lambda w: ch.logistic_regression_loss_grad(X, y, w, b0, C)[0], w0)
    assert_close(gw, num, atol=1e-8)


def test_smoothness_bounds_the_hessian():
    X, y = _data(1, n=40, p=3)
    A = np.hstack([X, np.ones((40, 1))])
    L = ch.logistic_regression_smoothness(X, C=2.0)
    for theta in seeded(2).normal(size=(5, 4)) * 3:
        def J(th):
            return F.binary_cross_entropy_with_logits(t64(A) @ th, t64(y)) + (th[:-1] @ th[:-1]) / (2 * 2.0 * 40)

        H = torch.autograd.functional.hessian(J, t64(theta)).numpy()
        assert np.linalg.eigvalsh(H)[-1] <= L * (1 + 1e-12)


# ---------- 梯度下降 ----------


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gd_first_step_matches_torch_sgd(fit_intercept):
    X, y = _data(3, n=25, p=3)
    lr, C = 0.7, 1.5
    w, b, losses = ch.logistic_regression_gd(X, y, C=C, fit_intercept=fit_intercept, lr=lr, n_iters=1)
    wt, bt = t64(np.zeros(3), True), t64(0.0, True)
    params = [wt, bt] if fit_intercept else [wt]
    opt = torch.optim.SGD(params, lr=lr)
    z = t64(X) @ wt + (bt if fit_intercept else 0.0)
    loss = F.binary_cross_entropy_with_logits(z, t64(y)) + (wt @ wt) / (2 * C * len(y))
    loss.backward()
    opt.step()
    assert_close(w, wt.detach(), atol=1e-15)
    assert_close(b, bt.detach() if fit_intercept else 0.0, atol=1e-15)
    assert_close(losses[0], np.log(2), atol=1e-15)


@pytest.mark.parametrize("C", [0.5, np.inf])
def test_gd_converges_to_newton_and_is_monotone(C):
    X, y = _data(5, n=60, p=3, offset=0.0)
    w, b, losses = ch.logistic_regression_gd(X, y, C=C, n_iters=3000)
    m = ch.LogisticRegression(C=C).fit(X, y)
    assert_close(w, m.coef_[0], atol=1e-10)
    assert_close(b, m.intercept_[0], atol=1e-10)
    assert (np.diff(losses) <= 1e-15).all()


def test_gd_diverges_in_norm_on_separable_data():
    r = seeded(0)
    X = r.normal(size=(40, 2))
    y = (X[:, 0] - X[:, 1] > 0).astype(float)
    norms = [np.linalg.norm(ch.logistic_regression_gd(X, y, n_iters=k)[0]) for k in [50, 500, 2000]]
    assert norms[0] < norms[1] < norms[2]
    w_reg = [ch.logistic_regression_gd(X, y, C=1.0, n_iters=k)[0] for k in [1000, 2000]]
    assert_close(w_reg[0], w_reg[1], atol=1e-10)


# ---------- LogisticRegression vs sklearn ----------


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize(("C", "fit_intercept"), [(1.0, True), (0.05, True), (np.inf, True), (2.0, False)])
def test_logistic_regression_matches_sklearn(seed, C, fit_intercept):
    X, y = _data(seed)
    ours = ch.LogisticRegression(C=C, fit_intercept=fit_intercept).fit(X, y)
    nc = SkLogisticRegression(C=C, fit_intercept=fit_intercept, solver="newton-cholesky", tol=1e-16, max_iter=1000)
    nc.fit(X, y)
    assert_close(ours.coef_, nc.coef_, atol=1e-13)
    assert_close(ours.intercept_, nc.intercept_, atol=1e-13)
    lb = SkLogisticRegression(C=C, fit_intercept=fit_intercept, tol=1e-10, max_iter=1000).fit(X, y)
    assert_close(ours.coef_, lb.coef_, atol=1e-6)
    assert_close(ours.predict_proba(X), lb.predict_proba(X), atol=1e-6)
    assert_close(ours.decision_function(X), nc.decision_function(X), atol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), nc.predict(X))
    assert ours.coef_.shape == nc.coef_.shape and ours.intercept_.shape == nc.intercept_.shape


def test_string_labels_and_classes_like_sklearn():
    X, y = _data(7)
    labels = np.where(y == 1, "spam", "ham")
    ours = ch.LogisticRegression().fit(X, labels)
    ref = SkLogisticRegression(solver="newton-cholesky", tol=1e-16).fit(X, labels)
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    assert_close(ours.coef_, ref.coef_, atol=1e-13)


def test_badly_scaled_features_still_converge():
    X, y = _data(2, n=120, p=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big = ch.LogisticRegression(C=1.0).fit(X * 1e4, y)
        small = ch.LogisticRegression(C=1.0).fit(X, y)
    # 不加正则时缩放特征只缩放系数；这里 C = 1，只比较它收敛且梯度为零
    _, gw, gb = ch.logistic_regression_loss_grad(X * 1e4, y, big.coef_[0], big.intercept_[0], 1.0)
    assert np.abs(np.r_[gw, gb]).max() < 1e-12
    assert small.n_iter_[0] < 20


def test_separable_data_warns_without_regularisation():
    r = seeded(1)
    X = r.normal(size=(30, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ch.LogisticRegression(C=np.inf, max_iter=30).fit(X, y)
    messages = [str(w.message) for w in caught if w.category is ConvergenceWarning]
    assert any("线性可分" in m for m in messages) and any("没有收敛" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = ch.LogisticRegression(C=1.0).fit(X, y)
    ref = SkLogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-16).fit(X, y)
    assert_close(m.coef_, ref.coef_, atol=1e-12)


def test_max_iter_too_small_warns():
    X, y = _data(0)
    with pytest.warns(ConvergenceWarning, match="没有收敛"):
        ch.LogisticRegression(max_iter=1).fit(X, y)


# ---------- 坏输入 ----------

Z = np.zeros((4, 3))
X0, Y0 = _data(0, n=10, p=2)

BAD_INPUTS = [
    BadInput("bce_shape", lambda: ch.binary_cross_entropy_with_logits(Z, np.zeros((4, 2))), "target 的形状"),
    BadInput("bce_target_range", lambda: ch.binary_cross_entropy_with_logits(Z, Z + 2), "target"),
    BadInput("bce_probs_are_logits", lambda: ch.binary_cross_entropy(Z - 1, Z), "input.*logit"),
    BadInput("bce_nan", lambda: ch.binary_cross_entropy_with_logits([np.nan], [0.0]), "input 含有 nan"),
    BadInput("bce_weight_shape", lambda: ch.binary_cross_entropy(Z, Z, np.ones(5)), "weight 的形状"),
    BadInput("bce_weight_negative", lambda: ch.binary_cross_entropy(Z, Z, -np.ones(3)), "weight"),
    BadInput("bce_pos_weight", lambda: ch.binary_cross_entropy_with_logits(Z, Z, pos_weight=[np.inf]), "pos_weight"),
    BadInput("bce_reduction", lambda: ch.binary_cross_entropy(Z, Z, reduction="avg"), "reduction"),
    BadInput("bce_complex", lambda: ch.binary_cross_entropy_with_logits(Z + 1j, Z), "input", TypeError),
    BadInput("bce_string_target", lambda: ch.binary_cross_entropy_with_logits([0.0], ["1"]), "target", TypeError),
    BadInput("bce_empty_mean", lambda: ch.binary_cross_entropy([], []), "为空"),
    BadInput("fit_X_1d", lambda: ch.LogisticRegression().fit(X0[:, 0], Y0), "X 必须是二维"),
    BadInput("fit_X_empty", lambda: ch.LogisticRegression().fit(np.zeros((0, 2)), []), "X 至少"),
    BadInput("fit_X_inf", lambda: ch.LogisticRegression().fit(X0 * np.inf, Y0), "X 含有 inf"),
    BadInput("fit_y_shape", lambda: ch.LogisticRegression().fit(X0, Y0[:5]), "y 的形状"),
    BadInput("fit_one_class", lambda: ch.LogisticRegression().fit(X0, np.ones(10)), "两个类别"),
    BadInput("fit_three_classes", lambda: ch.LogisticRegression().fit(X0, np.arange(10) % 3), "两个类别"),
    BadInput("fit_y_nan", lambda: ch.LogisticRegression().fit(X0, np.r_[np.nan, Y0[1:]]), "nan"),
    BadInput("fit_C_zero", lambda: ch.LogisticRegression(C=0).fit(X0, Y0), "C 必须是正数"),
    BadInput("fit_C_nan", lambda: ch.LogisticRegression(C=np.nan).fit(X0, Y0), "C"),
    BadInput("fit_C_string", lambda: ch.LogisticRegression(C="1").fit(X0, Y0), "C", TypeError),
    BadInput("fit_max_iter_zero", lambda: ch.LogisticRegression(max_iter=0).fit(X0, Y0), "max_iter"),
    BadInput("fit_max_iter_float", lambda: ch.LogisticRegression(max_iter=10.5).fit(X0, Y0), "max_iter", TypeError),
    BadInput("fit_tol_negative", lambda: ch.LogisticRegression(tol=-1).fit(X0, Y0), "tol"),
    BadInput("predict_unfitted", lambda: ch.LogisticRegression().predict(X0), "fit"),
    BadInput("predict_features", lambda: ch.LogisticRegression().fit(X0, Y0).predict(np.zeros((3, 5))), "特征"),
    BadInput("gd_labels", lambda: ch.logistic_regression_gd(X0, 2 * Y0 - 1), "0/1"),
    BadInput("gd_lr", lambda: ch.logistic_regression_gd(X0, Y0, lr=0.0), "lr"),
    BadInput("gd_n_iters", lambda: ch.logistic_regression_gd(X0, Y0, n_iters=-1), "n_iters"),
    BadInput("gd_n_iters_float", lambda: ch.logistic_regression_gd(X0, Y0, n_iters=1.5), "n_iters", TypeError),
    BadInput("grad_coef_shape", lambda: ch.logistic_regression_loss_grad(X0, Y0, np.zeros(3)), "coef 的形状"),
    BadInput("smoothness_C", lambda: ch.logistic_regression_smoothness(X0, C=-1.0), "C"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD_INPUTS))
def test_bad_inputs(case):
    case.check()


# ---------- 性质 ----------

logits = arrays(np.float64, st.integers(1, 20), elements=st.floats(-1e3, 1e3, allow_nan=False))


@settings(max_examples=40, deadline=None)
@given(z=logits, data=st.data())
def test_bce_symmetry_and_bounds(z, data):
    t = np.array(data.draw(st.lists(st.floats(0, 1), min_size=len(z), max_size=len(z))))
    loss = ch.binary_cross_entropy_with_logits(z, t, reduction="none")
    # 翻转标签与 logit 的符号，损失不变：ℓ(z, y) = ℓ(-z, 1 - y)
    assert_close(loss, ch.binary_cross_entropy_with_logits(-z, 1 - t, reduction="none"), atol=1e-12, rtol=1e-15)
    # 损失 ≥ 二元熵 H(t) ≥ 0，且 ≤ |z| + log 2
    assert (loss >= -1e-12).all()
    assert (loss <= np.abs(z) + np.log(2) + 1e-9).all()
    assert_close(loss, F.binary_cross_entropy_with_logits(t64(z), t64(t), reduction="none"), atol=1e-12, rtol=1e-14)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), C=st.sampled_from([0.1, 1.0, 10.0]))
def test_fitted_model_has_zero_gradient_and_balanced_intercept(seed, C):
    X, y = _data(seed, n=30, p=2)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    m = ch.LogisticRegression(C=C).fit(X, y)
    _, gw, gb = ch.logistic_regression_loss_grad(X, y, m.coef_[0], m.intercept_[0], C)
    assert np.abs(gw).max() < 1e-12 and abs(gb) < 1e-12
    # 截距不受惩罚：平均预测概率等于正类比例
    assert_close(m.predict_proba(X)[:, 1].mean(), y.mean(), atol=1e-12)
