"""ROC、PR 曲线与 AUC：本章从零实现与 scikit-learn 在 float64 下逐点对照。"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics as skm
from hypothesis import given, settings
from hypothesis import strategies as st

from mlbook.chapters import roc_pr_auc as ch
from mlbook.testing import BadInput, bad_input_params

ATOL = 1e-12
AUC_FUNCS = {
    "rank": ch.roc_auc_score,
    "pairwise": ch.auc_pairwise,
    "trapezoid": lambda y, s: ch.auc_trapezoid(*ch.roc_curve(y, s)[:2]),
}


def make_data(seed, n_pos, n_neg, ties):
    """正样本 N(1, 1)、负样本 N(0, 1)，打乱顺序；ties 控制并列的多少。"""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.r_[np.ones(n_pos, dtype=int), np.zeros(n_neg, dtype=int)])
    s = rng.normal(size=len(y)) + y
    if ties == "round":
        s = np.round(s, 1)
    elif ties == "few":
        s = np.round(s)                       # 只剩几个不同的值，大量正负并列
    return y, s


def assert_matches_sklearn(y, s):
    fpr, tpr, thr = ch.roc_curve(y, s)
    fpr_r, tpr_r, thr_r = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, fpr_r, atol=ATOL, rtol=0)
    np.testing.assert_allclose(tpr, tpr_r, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(thr, thr_r)

    p, r, t = ch.precision_recall_curve(y, s)
    p_r, r_r, t_r = skm.precision_recall_curve(y, s)
    np.testing.assert_allclose(p, p_r, atol=ATOL, rtol=0)
    np.testing.assert_allclose(r, r_r, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(t, t_r)

    ref_auc = skm.roc_auc_score(y, s)
    for name, f in AUC_FUNCS.items():
        assert f(y, s) == pytest.approx(ref_auc, abs=ATOL), name
    assert ch.average_precision_score(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=ATOL)


# ---------------------------------------------------------------- 随机输入


@pytest.mark.parametrize("ties", ["none", "round", "few"])
@pytest.mark.parametrize("n_pos,n_neg", [(1, 1), (1, 40), (40, 1), (7, 9), (60, 60), (15, 600)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_inputs_match_sklearn(seed, n_pos, n_neg, ties):
    assert_matches_sklearn(*make_data(seed, n_pos, n_neg, ties))


@pytest.mark.parametrize("ties", ["none", "few"])
def test_large_input_rank_and_curves(ties):
    """n = 20 万：排序版与 sklearn 一致（成对版 O(n⁺n⁻) 不在这里用）。"""
    y, s = make_data(3, 20_000, 180_000, ties)
    assert ch.roc_auc_score(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert ch.average_precision_score(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    fpr, tpr, _ = ch.roc_curve(y, s)
    fpr_r, tpr_r, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(np.c_[fpr, tpr], np.c_[fpr_r, tpr_r], atol=1e-12, rtol=0)


def test_naive_roc_equals_sorted_roc():
    for seed in range(3):
        y, s = make_data(seed, 25, 35, "round")
        for a, b in zip(ch.roc_curve_naive(y, s), ch.roc_curve(y, s)):
            np.testing.assert_array_equal(a, b)


def test_confusion_counts_match_sklearn_at_and_between_scores():
    y, s = make_data(4, 20, 30, "round")
    cuts = np.r_[np.unique(s), np.unique(s) + 0.05, s.min() - 1, s.max() + 1]
    for t in cuts:
        tn, fp, fn, tp = skm.confusion_matrix(y, (s >= t).astype(int), labels=[0, 1]).ravel()
        assert ch.confusion_counts(y, s, t) == (tp, fp, fn, tn), t


@pytest.mark.parametrize("ties", ["none", "few"])
def test_average_ranks_match_scipy(ties):
    _, s = make_data(5, 50, 50, ties)
    np.testing.assert_array_equal(ch.average_ranks(s), scipy.stats.rankdata(s, method="average"))


# ---------------------------------------------------------------- 边界情形

EDGE_CASES = {
    "all_equal": ([1, 0, 1, 0, 0, 1, 0], [0.5] * 7),
    "perfect": ([0, 0, 1, 1, 0, 1], [0.1, 0.2, 0.7, 0.8, 0.3, 0.9]),
    "reversed": ([1, 1, 0, 0, 1, 0], [0.1, 0.2, 0.7, 0.8, 0.3, 0.9]),
    "single_positive": ([1] + [0] * 20, [0.4] + list(np.linspace(0, 1, 20))),
    "single_negative": ([0] + [1] * 20, [0.4] + list(np.linspace(0, 1, 20))),
    "two_samples_tied": ([1, 0], [3.0, 3.0]),
    "bool_labels": (np.array([True, False, True, False]), [0.3, 0.3, 0.9, 0.1]),
    "float_labels": (np.array([1.0, 0.0, 1.0, 0.0]), [0.3, 0.3, 0.9, 0.1]),
    "int_scores": ([1, 0, 1, 0, 1], [3, 1, 1, 2, 5]),
    "signed_zero_tie": ([1, 0, 1, 0], [0.0, -0.0, 1.0, -1.0]),
    "huge_scores": ([1, 0, 1, 0, 0], [1e308, -1e308, 1e-300, 0.0, 1e-300]),
}


@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_cases_match_sklearn(name):
    y, s = EDGE_CASES[name]
    assert_matches_sklearn(y, s)


@pytest.mark.parametrize(
    "name,auc,ap",
    [
        ("all_equal", 0.5, 3 / 7),
        ("perfect", 1.0, 1.0),
        ("reversed", 0.0, None),
        ("two_samples_tied", 0.5, 0.5),
    ],
)
def test_edge_case_values(name, auc, ap):
    y, s = EDGE_CASES[name]
    for f in AUC_FUNCS.values():
        assert f(y, s) == pytest.approx(auc, abs=1e-15)
    if ap is not None:
        assert ch.average_precision_score(y, s) == pytest.approx(ap, abs=1e-15)


def test_pr_and_ap_need_only_positives():
    """全是正样本：AUC 无定义，但 PR 曲线与 AP 有定义（精确率处处为 1）。"""
    y, s = [1, 1, 1], [0.2, 0.2, 0.9]
    p, r, t = ch.precision_recall_curve(y, s)
    p_r, r_r, t_r = skm.precision_recall_curve(y, s)
    np.testing.assert_array_equal(np.r_[p, r, t], np.r_[p_r, r_r, t_r])
    assert ch.average_precision_score(y, s) == 1.0 == skm.average_precision_score(y, s)


def test_curve_endpoints_and_conventions():
    y, s = make_data(6, 30, 40, "round")
    fpr, tpr, thr = ch.roc_curve(y, s)
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, np.inf)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    assert len(thr) == len(np.unique(s)) + 1
    p, r, t = ch.precision_recall_curve(y, s)
    assert (p[-1], r[-1]) == (1.0, 0.0)
    assert len(p) == len(r) == len(t) + 1
    assert (np.diff(t) > 0).all() and (np.diff(r) <= 0).all()


# ---------------------------------------------------------------- 坏输入

TWO_CLASS_FUNCS = {
    "roc_auc_score": ch.roc_auc_score,
    "auc_pairwise": ch.auc_pairwise,
    "roc_curve": ch.roc_curve,
    "roc_curve_naive": ch.roc_curve_naive,
}
ALL_FUNCS = {
    **TWO_CLASS_FUNCS,
    "precision_recall_curve": ch.precision_recall_curve,
    "average_precision_score": ch.average_precision_score,
}


@pytest.mark.parametrize("fname", TWO_CLASS_FUNCS)
@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0], [1]])
def test_one_class_raises(fname, labels):
    with pytest.raises(ValueError, match="只有一个类别"):
        TWO_CLASS_FUNCS[fname](labels, np.linspace(0, 1, len(labels)))


@pytest.mark.parametrize("fname", ["precision_recall_curve", "average_precision_score"])
def test_no_positive_raises_for_pr(fname):
    with pytest.raises(ValueError, match="没有正样本"):
        ALL_FUNCS[fname]([0, 0, 0], [0.1, 0.5, 0.9])


@pytest.mark.parametrize("fname", ALL_FUNCS)
@pytest.mark.parametrize(
    "y,s,match",
    [
        ([0, 1, 1], [0.2, 0.5], "长度不一致"),
        ([0, 1], [0.2, 0.5, 0.7], "长度不一致"),
        ([0, 1, 2], [0.2, 0.5, 0.9], "只能包含 0 和 1"),
        ([-1, 1, 1], [0.2, 0.5, 0.9], "只能包含 0 和 1"),
        ([0, 0.5, 1], [0.2, 0.5, 0.9], "只能包含 0 和 1"),
        ([0, 1, 1], [0.2, np.nan, 0.9], "y_score 含有 NaN"),
        ([0, 1, 1], [0.2, np.inf, 0.9], "y_score 含有 NaN 或 inf"),
        ([], [], "不能为空"),
        ([[0, 1]], [[0.2, 0.5]], "一维"),
    ],
)
def test_bad_inputs_raise(fname, y, s, match):
    with pytest.raises(ValueError, match=match):
        ALL_FUNCS[fname](y, s)


BAD_INPUTS = [
    BadInput("none_label", lambda: ch.roc_auc_score([0, None, 1], [0.2, 0.5, 0.9]), "y_true.*None"),
    BadInput("string_label", lambda: ch.roc_auc_score(["a", "b"], [0.2, 0.5]), "y_true"),
    BadInput("string_score", lambda: ch.roc_auc_score([0, 1], ["a", "b"]), "y_score", TypeError),
    BadInput("complex_score", lambda: ch.roc_curve([0, 1], [0.2j, 0.5]), "y_score", TypeError),
    BadInput("nan_threshold", lambda: ch.confusion_counts([0, 1], [0.2, 0.5], np.nan), "threshold"),
    BadInput("ranks_nan", lambda: ch.average_ranks([1.0, np.nan, 0.0]), "NaN"),
    BadInput("ranks_2d", lambda: ch.average_ranks(np.eye(2)), "一维"),
    BadInput("trap_non_monotone", lambda: ch.auc_trapezoid([0, 1, 0.5], [0, 1, 1]), "单调"),
    BadInput("trap_lengths", lambda: ch.auc_trapezoid([0, 1], [0, 1, 1]), "长度不一致"),
    BadInput("trap_one_point", lambda: ch.auc_trapezoid([0.5], [1.0]), "至少需要 2 个点"),
    BadInput("trap_empty", lambda: ch.auc_trapezoid([], []), "至少需要 2 个点"),
    BadInput("trap_2d", lambda: ch.auc_trapezoid(np.eye(2), np.eye(2)), "x 应为一维"),
    BadInput("trap_nan", lambda: ch.auc_trapezoid([0, np.nan], [0, 1]), "NaN"),
    BadInput("trap_string", lambda: ch.auc_trapezoid(["0", "1"], [0, 1]), "x", TypeError),
]


@pytest.mark.parametrize("case", bad_input_params(BAD_INPUTS))
def test_bad_inputs(case):
    case.check()


INT_SCORES = [
    np.array([2**53 + 1, 2**53, 2**53 + 2, 2**53 - 1], dtype=np.int64),
    np.array([2**63 - 1, 2**63 - 2, -(2**63), 2**63 - 3], dtype=np.int64),
    np.array([2**64 - 1, 2**64 - 2, 0, 2**64 - 3], dtype=np.uint64),
]


@pytest.mark.parametrize("s", INT_SCORES, ids=["2^53", "int64_extremes", "uint64"])
def test_integer_scores_are_ranked_in_their_own_dtype(s):
    y = np.array([1, 0, 0, 1])
    assert ch.roc_auc_score(y, s) == skm.roc_auc_score(y, s)
    assert ch.auc_pairwise(y, s) == skm.roc_auc_score(y, s)
    assert ch.average_precision_score(y, s) == skm.average_precision_score(y, s)
    fpr, tpr, _ = ch.roc_curve(y, s)
    ref_fpr, ref_tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_array_equal(np.c_[fpr, tpr], np.c_[ref_fpr, ref_tpr])
    np.testing.assert_array_equal(ch.average_ranks(s), scipy.stats.rankdata(s))
    assert ch.confusion_counts(y, s, s[0]) == ch.confusion_counts(y, s, int(s[0]))


def test_trapezoid_matches_sklearn_auc_in_both_directions():
    y, s = np.array([1, 0, 1, 1, 0, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.3, 0.2, 0.1])
    precision, recall, _ = skm.precision_recall_curve(y, s)  # recall 从 1 降到 0
    assert ch.auc_trapezoid(recall, precision) == pytest.approx(skm.auc(recall, precision), abs=1e-15)
    assert ch.auc_trapezoid(recall, precision) > 0
    fpr, tpr, _ = skm.roc_curve(y, s)
    assert ch.auc_trapezoid(fpr, tpr) == pytest.approx(skm.auc(fpr, tpr), abs=1e-15)


def test_pairwise_auc_memory_is_bounded(monkeypatch):
    # 块很小时仍与秩公式一致：说明按块累加没有丢掉或重复任何一对
    monkeypatch.setattr(ch, "AUC_PAIRWISE_BLOCK", 7)
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300), 1)
    assert ch.auc_pairwise(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-15)


def test_pairwise_auc_large_input_does_not_allocate_n_pos_times_n_neg():
    import tracemalloc

    rng = np.random.default_rng(5)
    y = np.r_[np.ones(6000, int), np.zeros(6000, int)]
    s = rng.normal(size=12_000) + y
    tracemalloc.start()
    ours = ch.auc_pairwise(y, s)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20, f"峰值 {peak / 2**20:.0f} MiB：成对比较没有分块"  # 不分块是 36·10⁶ 字节 × 2
    assert ours == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def random_ap_expectation(n_pos, n):
    h = np.sum(1.0 / np.arange(1, n + 1))
    return (n_pos - 1) / (n - 1) + h / n * (n - n_pos) / (n - 1)


@pytest.mark.parametrize("n_pos,n", [(1, 10), (3, 8), (8, 8)])
def test_random_ap_expectation_exact_by_enumeration(n_pos, n):
    # 正样本位置的所有组合等可能：穷举得到精确期望
    from itertools import combinations

    aps = []
    for pos in combinations(range(n), n_pos):
        y = np.zeros(n, int)
        y[list(pos)] = 1
        aps.append(ch.average_precision_score(y, -np.arange(n)))  # 第 r 名得分最高
    assert np.mean(aps) == pytest.approx(random_ap_expectation(n_pos, n), abs=1e-14)


def test_random_ap_expectation_is_far_above_prevalence_for_few_positives():
    assert random_ap_expectation(1, 1000) == pytest.approx(0.0074855, abs=1e-7)
    assert random_ap_expectation(1, 1000) / (1 / 1000) > 7


def test_seed_zero_fallback_is_gone():
    """笔记版在单一类别时返回 0.0；本章必须报错而不是返回任何数。"""
    with pytest.raises(ValueError, match="至少一个正样本和一个负样本"):
        ch.roc_auc_score(np.ones(5, dtype=int), np.arange(5.0))


# ---------------------------------------------------------------- 性质测试


@st.composite
def labelled_scores(draw, integer_scores=None, max_size=40):
    """至少一个正样本和一个负样本；得分是小整数（大量并列）或任意有限浮点数。"""
    rest = draw(st.lists(st.integers(0, 1), max_size=max_size - 2))
    y = np.array(draw(st.permutations([1, 0] + rest)))
    if integer_scores is None:
        integer_scores = draw(st.booleans())
    if integer_scores:
        elems = st.integers(-6, 6)
    else:
        elems = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    s = np.array(draw(st.lists(elems, min_size=len(y), max_size=len(y))), dtype=np.float64)
    return y, s


PROP = settings(max_examples=60, deadline=None)


@PROP
@given(labelled_scores())
def test_prop_all_auc_forms_agree_with_sklearn(data):
    y, s = data
    assert_matches_sklearn(y, s)


@PROP
@given(labelled_scores(integer_scores=True))
def test_prop_auc_invariant_under_increasing_transform(data):
    y, s = data
    auc = ch.roc_auc_score(y, s)
    for t in (2.0**s, s**3 - 7.0, np.exp(s / 3) * 5 + 1):
        assert ch.roc_auc_score(y, t) == pytest.approx(auc, abs=1e-12)
        assert ch.average_precision_score(y, t) == pytest.approx(ch.average_precision_score(y, s), abs=1e-12)


@PROP
@given(labelled_scores())
def test_prop_negating_scores_or_labels_gives_one_minus_auc(data):
    y, s = data
    auc = ch.roc_auc_score(y, s)
    assert ch.roc_auc_score(y, -s) == pytest.approx(1 - auc, abs=1e-12)
    assert ch.roc_auc_score(1 - y, s) == pytest.approx(1 - auc, abs=1e-12)
    assert ch.auc_pairwise(y, -s) == pytest.approx(1 - ch.auc_pairwise(y, s), abs=1e-12)


@PROP
@given(labelled_scores(), st.randoms(use_true_random=False))
def test_prop_order_of_samples_does_not_matter(data, rnd):
    y, s = data
    perm = np.array(rnd.sample(range(len(y)), len(y)))
    assert ch.roc_auc_score(y[perm], s[perm]) == pytest.approx(ch.roc_auc_score(y, s), abs=1e-12)
    for a, b in zip(ch.roc_curve(y[perm], s[perm]), ch.roc_curve(y, s)):
        np.testing.assert_array_equal(a, b)
    assert ch.average_precision_score(y[perm], s[perm]) == pytest.approx(
        ch.average_precision_score(y, s), abs=1e-12
    )


@PROP
@given(labelled_scores(integer_scores=True))
def test_prop_pairwise_equals_rank_and_tie_decomposition(data):
    """AUC = P(s⁺ > s⁻) + ½ P(s⁺ = s⁻)，严格版与 >= 版夹住它。"""
    y, s = data
    pos, neg = s[y == 1], s[y == 0]
    strict = np.mean(pos[:, None] > neg[None, :])
    ties = np.mean(pos[:, None] == neg[None, :])
    auc = ch.roc_auc_score(y, s)
    assert ch.auc_pairwise(y, s) == pytest.approx(auc, abs=1e-12)
    assert auc == pytest.approx(strict + ties / 2, abs=1e-12)
    assert strict - 1e-12 <= auc <= strict + ties + 1e-12


@PROP
@given(labelled_scores())
def test_prop_ap_in_unit_interval_and_ranks_sum(data):
    y, s = data
    ap = ch.average_precision_score(y, s)
    assert 0.0 < ap <= 1.0
    r = ch.average_ranks(s)
    np.testing.assert_array_equal(r, scipy.stats.rankdata(s))
    assert r.sum() == len(s) * (len(s) + 1) / 2


@PROP
@given(labelled_scores(), st.floats(0.1, 10.0))
def test_prop_perfect_separation_gives_one(data, gap):
    """把正样本整体抬到负样本之上：AUC 与 AP 都恰好为 1。"""
    y, s = data
    s = s.copy()
    s[y == 1] = s[y == 0].max() + gap + np.abs(s[y == 1] - s[y == 1].min())
    assert ch.roc_auc_score(y, s) == 1.0
    assert ch.auc_pairwise(y, s) == 1.0
    assert ch.average_precision_score(y, s) == pytest.approx(1.0, abs=1e-15)
