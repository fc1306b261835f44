"""精确率、召回率与 F1：本章实现与 scikit-learn 逐项对照（所有平均方式、zero_division、beta、labels、权重）。"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given, settings
from hypothesis import strategies as st

from mlbook.chapters import precision_recall_f1 as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded

AVERAGES = [None, "micro", "macro", "weighted"]
ZERO_DIVISIONS = ["warn", 0, 1, np.nan]


def quiet(f, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kw)


def flat(result):
    return np.concatenate(
        [np.atleast_1d(np.asarray(x, dtype=np.float64)) for x in result if x is not None])


def make_multiclass(seed, n=40, k=5):
    """类别 k-1 从不出现在 y_true；部分预测被随机替换。"""
    rng = seeded(seed)
    y = rng.integers(0, k - 1, size=n)
    p = np.where(rng.random(n) < 0.5, y, rng.integers(0, k, size=n))
    return y, p, rng.uniform(0.1, 3.0, size=n)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("average", AVERAGES)
def test_multiclass_matches_sklearn(seed, average):
    y, p, w = make_multiclass(seed)
    for zd in ZERO_DIVISIONS:
        for beta in [0.0, 1.0, 2.5, np.inf]:
            for labels in [None, [4, 1], [0, 9]]:
                for sw in [None, w]:
                    kw = dict(beta=beta, labels=labels, average=average,
                              zero_division=zd, sample_weight=sw)
                    ours = quiet(ch.precision_recall_fscore_support, y, p, **kw)
                    ref = quiet(skm.precision_recall_fscore_support, y, p, **kw)
                    assert_close(flat(ours), flat(ref), atol=1e-15, rtol=1e-15, name=str(kw))
                    assert (ours[3] is None) == (ref[3] is None)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pos_label", [0, 1])
def test_binary_and_wrappers_match_sklearn(seed, pos_label):
    rng = seeded(seed)
    y = rng.integers(0, 2, size=30)
    p = np.where(rng.random(30) < 0.7, y, 1 - y)
    for zd in ZERO_DIVISIONS:
        kw = dict(pos_label=pos_label, zero_division=zd)
        for ours_f, ref_f in [(ch.f1_score, skm.f1_score), (ch.precision_score, skm.precision_score),
                              (ch.recall_score, skm.recall_score)]:
            assert_close(quiet(ours_f, y, p, **kw), quiet(ref_f, y, p, **kw), atol=1e-15)
        for beta in [0.3, 1.0, 4.0]:
            assert_close(quiet(ch.fbeta_score, y, p, beta=beta, **kw),
                         quiet(skm.fbeta_score, y, p, beta=beta, **kw), atol=1e-15)


def test_string_labels_match_sklearn():
    y = np.array(["猫", "狗", "猪", "猫", "狗", "猪", "猫", "猫"])
    p = np.array(["猫", "猪", "狗", "猫", "猫", "狗", "猫", "狗"])
    for average in AVERAGES:
        assert_close(flat(quiet(ch.precision_recall_fscore_support, y, p, average=average)),
                     flat(quiet(skm.precision_recall_fscore_support, y, p, average=average)), atol=1e-15)
    yb, pb = y[y != "猪"], p[y != "猪"]
    pb = np.where(pb == "猪", "狗", pb)
    assert_close(ch.f1_score(yb, pb, pos_label="狗"), skm.f1_score(yb, pb, pos_label="狗"), atol=1e-15)


@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
@pytest.mark.parametrize("labels", [None, [3, 0], [4, 2, 1, 0]])
def test_confusion_matrix_matches_sklearn(normalize, labels):
    y, p, w = make_multiclass(7)
    for sw in [None, w]:
        ours = ch.confusion_matrix(y, p, labels=labels, sample_weight=sw, normalize=normalize)
        ref = skm.confusion_matrix(y, p, labels=labels, sample_weight=sw, normalize=normalize)
        assert ours.shape == ref.shape
        assert_close(ours, ref, atol=1e-15)


ZERO_DIVISION_CASES = {
    "no_predicted_positive": ([1, 1, 0], [0, 0, 0]),
    "no_true_positive": ([0, 0, 0], [1, 0, 0]),
    "all_negative": ([0, 0, 0], [0, 0, 0]),
    "p_plus_r_zero": ([1, 0, 0], [0, 1, 0]),
}


@pytest.mark.parametrize("case", ZERO_DIVISION_CASES)
@pytest.mark.parametrize("zd", ZERO_DIVISIONS)
def test_zero_division_cases_and_warnings(case, zd):
    y, p = ZERO_DIVISION_CASES[case]
    with warnings.catch_warnings(record=True) as ours_w:
        warnings.simplefilter("always")
        ours = ch.precision_recall_fscore_support(y, p, average="binary", zero_division=zd)
    with warnings.catch_warnings(record=True) as ref_w:
        warnings.simplefilter("always")
        ref = skm.precision_recall_fscore_support(y, p, average="binary", zero_division=zd)
    assert_close(flat(ours), flat(ref), atol=0.0)
    assert bool(ours_w) == bool(ref_w)
    assert all(issubclass(w.category, ch.UndefinedMetricWarning) for w in ours_w)
    if case == "p_plus_r_zero":  # 不是 0/0：F 恒为 0，不受 zero_division 影响
        assert ours[2] == 0.0 and not ours_w


def test_f1_from_counts_not_from_p_and_r():
    # P、R 被 zero_division=1 填成 1 与 0，F 仍按计数为 0
    assert ch.f1_score([1, 1, 0], [0, 0, 0], zero_division=1) == 0.0
    assert ch.f1_score([0, 0], [0, 0], zero_division=1) == 1.0


def test_naive_formula_gives_nan_on_zero_division():
    with np.errstate(invalid="ignore"):
        p, r, f = ch.precision_recall_f1_naive([0, 1, 1], [0, 0, 0])
    assert np.isnan(p) and r == 0.0 and np.isnan(f)
    y, q = np.array([0, 1, 1, 0, 1]), np.array([1, 1, 0, 0, 1])
    assert_close(ch.precision_recall_f1_naive(y, q),
                 skm.precision_recall_fscore_support(y, q, average="binary")[:3], atol=1e-15)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_fbeta_at_thresholds_matches_sklearn(seed, beta):
    rng = seeded(seed)
    y = rng.integers(0, 2, size=80)
    s = np.round(rng.normal(size=80) + y, 1)               # 并列
    thr, f = ch.fbeta_at_thresholds(y, s, beta=beta)
    assert (np.diff(thr) < 0).all()
    ref = [skm.fbeta_score(y, (s >= t).astype(int), beta=beta) for t in thr]
    assert_close(f, ref, atol=1e-15)
    t_best, f_best = ch.best_fbeta_threshold(y, s, beta=beta)
    assert f_best == pytest.approx(max(ref), abs=1e-15)
    assert t_best == max(t for t, v in zip(thr, ref) if v >= f_best - 1e-15)


BAD = [
    BadInput("length", lambda: ch.f1_score([0, 1, 1], [0, 1]), match="长度"),
    BadInput("empty", lambda: ch.f1_score([], []), match="不能为空"),
    BadInput("scores_as_labels", lambda: ch.f1_score([0, 1], [0.2, 0.7]), match="y_pred"),
    BadInput("nan_label", lambda: ch.f1_score([0, np.nan], [0, 1]), match="y_true.*nan"),
    BadInput("two_dim", lambda: ch.f1_score(np.eye(2), np.eye(2)), match="y_true"),
    BadInput("mixed_types", lambda: ch.f1_score(["a", "b"], [0, 1]), match="字符串"),
    BadInput("mixed_object", lambda: ch.f1_score(np.array(["a", 1], dtype=object), ["a", "a"]), match="y_true"),
    BadInput("complex", lambda: ch.f1_score(np.array([1j, 0]), [0, 1]), match="y_true", exc=TypeError),
    BadInput("binary_on_multiclass", lambda: ch.f1_score([0, 1, 2], [0, 1, 1]), match="average='binary'"),
    BadInput("pos_label_absent", lambda: ch.f1_score(["a", "b"], ["a", "a"]), match="pos_label"),
    BadInput("average", lambda: ch.f1_score([0, 1], [0, 1], average="samples"), match="average"),
    BadInput("zero_division", lambda: ch.f1_score([0, 1], [0, 1], zero_division=0.5), match="zero_division"),
    BadInput("zero_division_bool", lambda: ch.f1_score([0, 1], [0, 1], zero_division=True), match="zero_division"),
    BadInput("beta_negative", lambda: ch.fbeta_score([0, 1], [0, 1], beta=-1.0), match="beta"),
    BadInput("beta_nan", lambda: ch.fbeta_score([0, 1], [0, 1], beta=np.nan), match="beta"),
    BadInput("warn_for", lambda: ch.precision_recall_fscore_support([0, 1], [0, 1], warn_for=("f1",)),
             match="warn_for"),
    BadInput("labels_dup", lambda: ch.f1_score([0, 1], [0, 1], labels=[0, 0], average="macro"), match="labels"),
    BadInput("labels_empty", lambda: ch.f1_score([0, 1], [0, 1], labels=[], average="macro"), match="labels"),
    BadInput("sample_weight", lambda: ch.f1_score([0, 1], [0, 1], sample_weight=[1.0]), match="sample_weight"),
    BadInput("cm_normalize", lambda: ch.confusion_matrix([0, 1], [0, 1], normalize="rows"), match="normalize"),
    BadInput("cm_labels_absent", lambda: ch.confusion_matrix([0, 1], [0, 1], labels=[5]), match="labels"),
    BadInput("thr_no_positive", lambda: ch.fbeta_at_thresholds([0, 0], [0.1, 0.2]), match="正样本"),
    BadInput("thr_beta", lambda: ch.fbeta_at_thresholds([0, 1], [0.1, 0.2], beta=-2), match="beta"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


def test_sklearn_also_refuses_what_it_refuses():
    # sklearn 拒绝的输入，本章也拒绝
    for args, kw in [(([0, 1, 1], [0, 1]), {}), (([0, 1], [0.2, 0.7]), {}), (([0, 1, 2], [0, 1, 1]), {}),
                     ((["a", "b"], ["a", "a"]), {}), (([0, 1], [0, 1]), {"zero_division": 0.5})]:
        with pytest.raises(ValueError):
            skm.f1_score(*args, **kw)
        with pytest.raises(ValueError):
            ch.f1_score(*args, **kw)


def test_pos_label_ignored_warning_like_sklearn():
    with pytest.warns(UserWarning, match="pos_label"):
        ch.f1_score([0, 1, 2], [0, 1, 1], average="macro", pos_label=2)


label_lists = st.integers(1, 25).flatmap(
    lambda n: st.tuples(st.lists(st.integers(0, 3), min_size=n, max_size=n),
                        st.lists(st.integers(0, 3), min_size=n, max_size=n)))


@settings(max_examples=50, deadline=None)
@given(data=label_lists)
def test_micro_equals_accuracy_and_f_between_bounds(data):
    y, p = map(np.array, data)
    acc = np.mean(y == p)
    pm, rm, fm, _ = ch.precision_recall_fscore_support(y, p, average="micro")
    assert pm == pytest.approx(acc, abs=1e-15) and rm == pytest.approx(acc, abs=1e-15)
    assert fm == pytest.approx(acc, abs=1e-15)
    prec, rec, f, _ = ch.precision_recall_fscore_support(y, p, zero_division=0)
    assert (f <= np.maximum(prec, rec) + 1e-15).all()
    assert (f >= np.minimum(prec, rec) - 1e-15).all()
    # weighted F 不超过 weighted P 与 weighted R 的算术平均（调和平均 ≤ 算术平均）
    pw, rw, fw, _ = ch.precision_recall_fscore_support(y, p, average="weighted", zero_division=0)
    assert fw <= (pw + rw) / 2 + 1e-15


@settings(max_examples=50, deadline=None)
@given(data=label_lists, beta=st.floats(0.1, 10.0))
def test_fbeta_counts_formula_equals_harmonic_form(data, beta):
    y, p = map(np.array, data)
    prec, rec, f, _ = ch.precision_recall_fscore_support(y, p, beta=beta, zero_division=np.nan)
    ok = (prec + rec > 0) & ~np.isnan(prec) & ~np.isnan(rec)
    expected = (1 + beta**2) * prec[ok] * rec[ok] / (beta**2 * prec[ok] + rec[ok])
    assert_close(f[ok], expected, atol=1e-14)
