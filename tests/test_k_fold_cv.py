"""K 折交叉验证：KFold / StratifiedKFold 逐下标对照 sklearn；cross_val_score、留一捷径、GridSearchCV；性质与坏输入。"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.linear_model as skl
import sklearn.model_selection as skms
from hypothesis import given, settings
from hypothesis import strategies as st
from mlbook.chapters.linear_regression import Ridge

from mlbook.chapters import k_fold_cv as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded


def _splits(cv, X, y=None):
    return [(np.asarray(a), np.asarray(b)) for a, b in cv.split(X, y)]


def _assert_same(ours, ref):
    assert len(ours) == len(ref)
    for (a, b), (c, d) in zip(ours, ref):
        assert a.dtype.kind == "i" and b.dtype.kind == "i"
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def _assert_partition(splits, n):
    tests = [te for _, te in splits]
    allt = np.concatenate(tests)
    assert np.array_equal(np.sort(allt), np.arange(n)), "测试集两两不交且覆盖全部样本"
    for tr, te in splits:
        assert np.all(np.diff(tr) > 0) and np.all(np.diff(te) > 0), "下标升序"
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(n))


# ---------------------------------------------------------------- KFold

@pytest.mark.parametrize("n,K", [(n, K) for n in [2, 3, 7, 10, 23, 50] for K in [2, 3, 5, 10] if K <= n])
def test_kfold_matches_sklearn_without_shuffle(n, K):
    X = np.zeros((n, 2))
    ours = _splits(ch.KFold(K), X)
    _assert_same(ours, _splits(skms.KFold(K), X))
    _assert_same(ours, [(np.asarray(a), np.asarray(b)) for a, b in ch.kfold_naive(n, K)])


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 - 1])
@pytest.mark.parametrize("n,K", [(10, 3), (23, 5), (31, 4)])
def test_kfold_shuffle_with_integer_seed_matches_sklearn(seed, n, K):
    X = np.arange(n)
    _assert_same(_splits(ch.KFold(K, shuffle=True, random_state=seed), X),
                 _splits(skms.KFold(K, shuffle=True, random_state=seed), X))


def test_kfold_shuffle_with_randomstate_instance_is_consumed_like_sklearn():
    X = np.zeros(17)
    ours_cv = ch.KFold(4, shuffle=True, random_state=np.random.RandomState(5))
    ref_cv = skms.KFold(4, shuffle=True, random_state=np.random.RandomState(5))
    for _ in range(3):  # 每次 split 消耗生成器：各次划分不同，但与 sklearn 逐次相同
        _assert_same(_splits(ours_cv, X), _splits(ref_cv, X))


def test_shuffle_with_global_state_matches_sklearn():
    X, y = np.zeros(19), np.array([0, 1, 1, 2] * 4 + [0, 1, 0])
    for ours_cls, ref_cls, args in [(ch.KFold, skms.KFold, (X,)), (ch.StratifiedKFold, skms.StratifiedKFold, (X, y))]:
        np.random.seed(11)  # noqa: NPY002  sklearn 的 random_state=None 就是全局状态
        ours = _splits(ours_cls(3, shuffle=True), *args)
        np.random.seed(11)  # noqa: NPY002  sklearn 的 random_state=None 就是全局状态
        _assert_same(ours, _splits(ref_cls(3, shuffle=True), *args))


def test_kfold_shuffle_with_generator_has_the_properties():
    n, K = 29, 4
    a = _splits(ch.KFold(K, shuffle=True, random_state=np.random.default_rng(0)), np.zeros(n))
    b = _splits(ch.KFold(K, shuffle=True, random_state=np.random.default_rng(0)), np.zeros(n))
    _assert_same(a, b)  # 同一种子可复现
    _assert_partition(a, n)
    assert [len(te) for _, te in a] == [8, 7, 7, 7]
    assert not np.array_equal(a[0][1], np.arange(8)), "打乱了"


def test_kfold_accepts_lists_and_3d_arrays():
    _assert_same(_splits(ch.KFold(3), [[1, 2]] * 7), _splits(skms.KFold(3), [[1, 2]] * 7))
    _assert_same(_splits(ch.KFold(2), np.zeros((5, 2, 3))), _splits(skms.KFold(2), np.zeros((5, 2, 3))))
    assert ch.KFold(4).get_n_splits() == 4 == ch.StratifiedKFold(4).get_n_splits()


# ---------------------------------------------------------------- StratifiedKFold

def _random_labels(r, n, C, kind):
    y = r.choice(C, size=n, p=r.dirichlet(np.ones(C)))
    if kind == "str":
        return np.array(["cat", "dog", "bird", "fish", "ant"])[y]
    if kind == "float":
        return y.astype(np.float64) * 2.0 - 1.0
    if kind == "shifted":
        return y + 7
    return y


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["int", "str", "float", "shifted"])
@pytest.mark.parametrize("shuffle_seed", [None, 0, 123])
def test_stratified_matches_sklearn(seed, kind, shuffle_seed):
    r = seeded(seed)
    n, C, K = int(r.integers(10, 70)), int(r.integers(2, 6)), int(r.integers(2, 7))
    y = _random_labels(r, n, C, kind)
    counts = np.unique(y, return_counts=True)[1]
    if np.all(counts < K):
        pytest.skip("每类都少于 K")
    kw = {} if shuffle_seed is None else {"shuffle": True, "random_state": shuffle_seed}
    X = np.zeros((n, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ours = _splits(ch.StratifiedKFold(K, **kw), X, y)
        ref = _splits(skms.StratifiedKFold(K, **kw), X, y)
    _assert_same(ours, ref)


def test_stratified_single_class_equals_kfold():
    X, y = np.zeros(13), np.full(13, 4)
    _assert_same(_splits(ch.StratifiedKFold(4), X, y), _splits(ch.KFold(4), X))


def test_stratified_warns_when_a_class_is_smaller_than_k_like_sklearn():
    y = np.array([0] * 10 + [1] * 2)
    with pytest.warns(UserWarning, match="n_splits=3"):
        ours = _splits(ch.StratifiedKFold(3), y, y)
    with pytest.warns(UserWarning):
        _assert_same(ours, _splits(skms.StratifiedKFold(3), y, y))


@settings(max_examples=80, deadline=None)
@given(
    counts=st.lists(st.integers(0, 15), min_size=1, max_size=5),
    K=st.integers(2, 6),
    shuffle=st.booleans(),
    perm_seed=st.integers(0, 10_000),
)
def test_stratified_properties(counts, K, shuffle, perm_seed):
    """测试集划分全部样本；每类在各折中的数目最多差 1；各折大小与 KFold 相同。"""
    y = np.repeat(np.arange(len(counts)), counts)
    y = np.random.default_rng(perm_seed).permutation(y)
    n = len(y)
    if n < K or np.all(np.bincount(y) < K):
        return
    kw = {"shuffle": True, "random_state": perm_seed} if shuffle else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splits = _splits(ch.StratifiedKFold(K, **kw), y, y)
    _assert_partition(splits, n)
    per_fold = np.array([np.bincount(y[te], minlength=len(counts)) for _, te in splits])  # (K, C)
    assert np.all(per_fold.max(axis=0) - per_fold.min(axis=0) <= 1)
    assert [len(te) for _, te in splits] == [len(te) for _, te in _splits(ch.KFold(K), y)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 80), K=st.integers(2, 12), seed=st.integers(0, 2**32 - 1))
def test_kfold_properties(n, K, seed):
    if K > n:
        return
    splits = _splits(ch.KFold(K, shuffle=True, random_state=seed), np.zeros(n))
    _assert_partition(splits, n)
    sizes = [len(te) for _, te in splits]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


# ---------------------------------------------------------------- cross_val_score

def _regression(seed, n=45, p=8):
    r = seeded(seed)
    X = r.normal(size=(n, p)) * r.uniform(0.5, 3, size=p)
    return X, X @ r.normal(size=p) + r.normal(size=n)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("scoring", ["neg_mean_squared_error", "r2"])
@pytest.mark.parametrize("cv", [3, "shuffled", "list"])
def test_cross_val_score_matches_sklearn(seed, scoring, cv):
    X, y = _regression(seed)
    if cv == "shuffled":
        ours_cv, ref_cv = ch.KFold(4, shuffle=True, random_state=seed), skms.KFold(4, shuffle=True, random_state=seed)
    elif cv == "list":
        ours_cv = ref_cv = list(skms.KFold(5, shuffle=True, random_state=9).split(X))
    else:
        ours_cv = ref_cv = cv
    ours = ch.cross_val_score(Ridge(alpha=0.7), X, y, scoring=scoring, cv=ours_cv)
    ref = skms.cross_val_score(skl.Ridge(alpha=0.7), X, y, scoring=scoring, cv=ref_cv)
    assert ours.shape == ref.shape
    assert_close(ours, ref, atol=1e-12)
    # sklearn 的估计器也能直接交给本章的 cross_val_score
    assert_close(ch.cross_val_score(skl.Ridge(alpha=0.7), X, y, scoring=scoring, cv=ref_cv), ref, atol=0)


def test_cross_val_score_classification_scorers_match_sklearn():
    r = seeded(3)
    X = r.normal(size=(80, 5))
    y = (X[:, 0] - X[:, 1] + r.normal(size=80) > 0.3).astype(int)
    cv = (ch.StratifiedKFold(5, shuffle=True, random_state=1), skms.StratifiedKFold(5, shuffle=True, random_state=1))
    for scoring in ["accuracy", "roc_auc"]:
        est = skl.RidgeClassifier(alpha=0.5)
        ours = ch.cross_val_score(est, X, y, scoring=scoring, cv=cv[0])
        ref = skms.cross_val_score(est, X, y, scoring=scoring, cv=cv[1])
        assert_close(ours, ref, atol=1e-14)
    # Ridge 在 0/1 目标上的预测是 RidgeClassifier 决策函数的仿射变换：AUC 相同
    ours = ch.cross_val_score(Ridge(alpha=2.0), X, y, scoring="roc_auc", cv=cv[0])
    ref = skms.cross_val_score(skl.RidgeClassifier(alpha=2.0), X, y, scoring="roc_auc", cv=cv[1])
    assert_close(ours, ref, atol=1e-14)


def test_cross_val_score_default_score_and_callable_scoring():
    X, y = _regression(4)
    ref = skms.cross_val_score(skl.Ridge(alpha=1.0), X, y, cv=5)  # Ridge.score 是 R²
    assert_close(ch.cross_val_score(skl.Ridge(alpha=1.0), X, y), ref, atol=0)
    ours = ch.cross_val_score(Ridge(alpha=1.0), X, y, scoring=lambda e, Xt, yt: -np.max(np.abs(e.predict(Xt) - yt)))
    ref = skms.cross_val_score(skl.Ridge(alpha=1.0), X, y, scoring="neg_max_error")
    assert_close(ours, ref, atol=1e-12)


def test_cross_val_score_does_not_touch_the_given_estimator():
    X, y = _regression(5)
    est = Ridge(alpha=1.0)
    ch.cross_val_score(est, X, y, scoring="r2")
    assert not hasattr(est, "coef_")


def test_grid_search_picks_the_same_alpha_as_sklearn():
    X, y = _regression(6, n=40, p=25)
    alphas = np.logspace(-2, 3, 11)
    mean = np.array([
        ch.cross_val_score(Ridge(alpha=a), X, y, cv=ch.KFold(5, shuffle=True, random_state=2),
                           scoring="neg_mean_squared_error").mean()
        for a in alphas])
    grid = skms.GridSearchCV(skl.Ridge(), {"alpha": alphas}, scoring="neg_mean_squared_error",
                             cv=skms.KFold(5, shuffle=True, random_state=2)).fit(X, y)
    assert_close(mean, grid.cv_results_["mean_test_score"], atol=1e-12)
    assert alphas[np.argmax(mean)] == grid.best_params_["alpha"]


# ---------------------------------------------------------------- 留一捷径

@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("alpha", [0.01, 1.0, 50.0])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_ridge_loo_residuals_match_refitting_and_ridgecv(seed, alpha, fit_intercept):
    X, y = _regression(seed, n=25, p=6)
    X = X + 3.0  # 非零均值，截距有作用
    loo = ch.ridge_loo_residuals(X, y, alpha=alpha, fit_intercept=fit_intercept)
    brute = np.concatenate([
        y[te] - Ridge(alpha=alpha, fit_intercept=fit_intercept).fit(X[tr], y[tr]).predict(X[te])
        for tr, te in ch.KFold(len(y)).split(X)])
    assert_close(loo, brute, atol=1e-10)
    rcv = skl.RidgeCV(alphas=[alpha], fit_intercept=fit_intercept, store_cv_results=True).fit(X, y)
    assert_close(loo**2, rcv.cv_results_[:, 0], atol=1e-9)


def test_ridge_loo_residuals_with_more_features_than_samples():
    r = seeded(7)
    X, y = r.normal(size=(12, 30)), r.normal(size=12)
    brute = np.concatenate([y[te] - Ridge(alpha=2.0).fit(X[tr], y[tr]).predict(X[te])
                            for tr, te in ch.KFold(12).split(X)])
    assert_close(ch.ridge_loo_residuals(X, y, alpha=2.0), brute, atol=1e-11)


# ---------------------------------------------------------------- 坏输入

X0, y0 = _regression(0, n=12, p=3)
BAD_INPUTS = [
    BadInput("n_splits=1", lambda: ch.KFold(1), match="n_splits"),
    BadInput("n_splits 浮点", lambda: ch.KFold(2.5), match="n_splits", exc=TypeError),
    BadInput("n_splits 布尔", lambda: ch.KFold(True), match="n_splits", exc=TypeError),
    BadInput("shuffle 不是布尔", lambda: ch.KFold(3, shuffle=1), match="shuffle", exc=TypeError),
    BadInput("不打乱却给种子", lambda: ch.KFold(3, random_state=0), match="random_state"),
    BadInput("种子类型", lambda: ch.KFold(3, shuffle=True, random_state="0"), match="random_state", exc=TypeError),
    BadInput("折数多于样本", lambda: list(ch.KFold(5).split(np.zeros(3))), match="n_splits=5"),
    BadInput("X 是标量", lambda: list(ch.KFold(2).split(3.0)), match="X"),
    BadInput("分层缺 y", lambda: list(ch.StratifiedKFold(2).split(X0)), match="y"),
    BadInput("分层 y 连续", lambda: list(ch.StratifiedKFold(2).split(X0, y0)), match="y"),
    BadInput("分层 y 二维", lambda: list(ch.StratifiedKFold(2).split(X0, np.zeros((12, 2)))), match="y"),
    BadInput("分层 y 长度", lambda: list(ch.StratifiedKFold(2).split(X0, np.zeros(5))), match="y"),
    BadInput("每类都少于 K", lambda: list(ch.StratifiedKFold(4).split(np.zeros(6), [0, 0, 0, 1, 1, 1])),
             match="n_splits=4"),
    BadInput("scoring 未知", lambda: ch.cross_val_score(Ridge(), X0, y0, scoring="mse"), match="scoring"),
    BadInput("没有 score 方法", lambda: ch.cross_val_score(Ridge(), X0, y0), match="score", exc=TypeError),
    BadInput("没有 fit", lambda: ch.cross_val_score(object(), X0, y0, scoring="r2"), match="estimator",
             exc=TypeError),
    BadInput("X y 长度不同", lambda: ch.cross_val_score(Ridge(), X0, y0[:-1], scoring="r2"), match="y"),
    BadInput("cv=None", lambda: ch.cross_val_score(Ridge(), X0, y0, scoring="r2", cv=None), match="cv",
             exc=TypeError),
    BadInput("cv=1", lambda: ch.cross_val_score(Ridge(), X0, y0, scoring="r2", cv=1), match="n_splits"),
    BadInput("loo alpha 负", lambda: ch.ridge_loo_residuals(X0, y0, alpha=-1.0), match="alpha"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD_INPUTS))
def test_bad_inputs(case):
    case.check()
