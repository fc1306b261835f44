"""困惑度：perplexity 对照几何平均与 F.nll_loss，perplexity_from_logits 对照 exp(F.cross_entropy) 与
torchmetrics 的公式，按序列平均对照逐条 torch 计算，mask / ignore_index / 边界、bigram 的逐名字 NLL、
一元模型、坏输入与性质测试。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import gmean

from mlbook.chapters import bigram_lm
from mlbook.chapters import perplexity as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64


def _torchmetrics_perplexity(preds, target, ignore_index=None):
    """torchmetrics.functional.text.perplexity 的公式（Softmax → 取目标概率 → -log 求和 / 个数 → exp）。"""
    probs = torch.softmax(preds.reshape(-1, preds.shape[-1]), dim=1)
    target = target.reshape(-1)
    if ignore_index is not None:
        mask = target.ne(ignore_index)
        target = target.where(target != ignore_index, torch.tensor(0))
    else:
        mask = torch.ones_like(target, dtype=torch.bool)
    probs = probs[:, target].diagonal()[mask]
    return torch.exp(-probs.log().sum() / mask.sum())


def _logits_and_target(seed, shape, V, ignore_index=-100, pad=True):
    r = seeded(seed)
    logits = r.normal(scale=2.5, size=shape + (V,))
    target = r.integers(0, V, size=shape)
    if pad:
        flat = target.reshape(-1) if len(shape) == 1 else target
        if len(shape) == 1:
            flat[r.random(shape[0]) < 0.3] = ignore_index
        else:
            for b, n in enumerate(r.integers(0, shape[1], size=shape[0])):
                flat[b, shape[1] - n:] = ignore_index
        if (target != ignore_index).sum() == 0:
            target.reshape(-1)[0] = 0
    return logits, target


SHAPES = [(7,), (1, 1), (3, 5), (4, 12), (2, 30)]


# ---------- 定义 ----------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n", [1, 5, 40])
def test_perplexity_is_the_inverse_geometric_mean(seed, n):
    p = seeded(seed).uniform(0.01, 1.0, size=n)
    ours = ch.perplexity(-np.log(p))
    assert_close(ours, gmean(1 / p), atol=0, rtol=1e-13)
    assert_close(ours, np.prod(p) ** (-1 / n), atol=0, rtol=1e-13)
    assert_close(ch.perplexity_naive(p), ours, atol=0, rtol=1e-13)


@pytest.mark.parametrize("seed", range(3))
def test_perplexity_matches_exp_of_nll_loss(seed):
    r = seeded(seed)
    logp = np.log(r.dirichlet(np.ones(6), size=20))
    y = r.integers(0, 6, size=20)
    ref = torch.exp(F.nll_loss(t64(logp), torch.from_numpy(y)))
    assert_close(ch.perplexity(-logp[np.arange(20), y]), ref, atol=0, rtol=1e-14)


def test_uniform_is_V_and_certain_is_one():
    for V in [1, 2, 27, 1000]:
        assert_close(ch.perplexity_from_logits(np.zeros((3, 4, V)), np.zeros((3, 4), dtype=int)),
                     V, atol=0, rtol=1e-13)
    assert ch.perplexity(np.zeros((2, 3))) == 1.0
    sure = np.where(np.arange(5) == 2, 0.0, -1e4)
    assert ch.perplexity_from_logits(np.broadcast_to(sure, (4, 5)), np.full(4, 2)) == 1.0


def test_bits_and_nats_give_the_same_perplexity():
    h = seeded(0).exponential(size=50)
    ppl = ch.perplexity(h)
    assert_close(2 ** (h / np.log(2)).mean(), ppl, atol=0, rtol=1e-13)


# ---------- 从 logit 出发 ----------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", SHAPES)
def test_from_logits_matches_torch_cross_entropy(seed, shape):
    V = 9
    logits, target = _logits_and_target(seed, shape, V)
    ref = torch.exp(F.cross_entropy(t64(logits).reshape(-1, V), torch.from_numpy(target).reshape(-1),
                                    ignore_index=-100))
    assert_close(ch.perplexity_from_logits(logits, target), ref, atol=0, rtol=1e-13)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [s for s in SHAPES if len(s) == 2])
def test_from_logits_matches_the_torchmetrics_formula(seed, shape):
    logits, target = _logits_and_target(seed, shape, 6)
    z, y = t64(logits), torch.from_numpy(target)
    assert_close(ch.perplexity_from_logits(logits, target), _torchmetrics_perplexity(z, y, -100),
                 atol=0, rtol=1e-13)
    _, y_full = _logits_and_target(seed, shape, 6, pad=False)
    assert_close(ch.perplexity_from_logits(logits, y_full, ignore_index=None),
                 _torchmetrics_perplexity(z, torch.from_numpy(y_full)), atol=0, rtol=1e-13)


def test_torchmetrics_formula_reproduces_its_documented_example():
    """torchmetrics 文档字符串的例子给出 tensor(5.2545)；同一组输入上我们的实现也给出它。"""
    preds = torch.rand(2, 8, 5, generator=torch.manual_seed(22))
    target = torch.randint(5, (2, 8), generator=torch.manual_seed(22))
    target[0, 6:] = -100
    assert abs(_torchmetrics_perplexity(preds, target, -100).item() - 5.2545) < 1e-4
    ours = ch.perplexity_from_logits(preds.double().numpy(), target.numpy())
    assert abs(ours - 5.2545) < 1e-4


@pytest.mark.parametrize("seed", range(3))
def test_sequence_average_and_none_match_a_torch_loop(seed):
    logits, target = _logits_and_target(seed, (5, 8), 7)
    z, y = t64(logits), torch.from_numpy(target)
    h = torch.stack([F.cross_entropy(z[b], y[b], ignore_index=-100) for b in range(5)])
    assert_close(ch.perplexity_from_logits(logits, target, average="none"), torch.exp(h), atol=0, rtol=1e-13)
    assert_close(ch.perplexity_from_logits(logits, target, average="sequence"), torch.exp(h.mean()),
                 atol=0, rtol=1e-13)


@pytest.mark.parametrize("ignore_index", [0, -1, 3])
def test_custom_ignore_index(ignore_index):
    logits, target = _logits_and_target(1, (3, 6), 5, pad=False)
    target[0, :2] = ignore_index
    ref = torch.exp(F.cross_entropy(t64(logits).reshape(-1, 5), torch.from_numpy(target).reshape(-1),
                                    ignore_index=ignore_index))
    assert_close(ch.perplexity_from_logits(logits, target, ignore_index=ignore_index), ref, atol=0, rtol=1e-13)


def test_extreme_logits_stay_finite_where_softmax_then_log_overflows():
    z = np.array([[[0.0, 800.0, 0.0], [5.0, 0.0, 0.0]]])
    y = np.array([[0, 0]])
    ref = torch.exp(F.cross_entropy(t64(z[0]), torch.from_numpy(y[0])))
    assert torch.isfinite(ref)
    assert_close(ch.perplexity_from_logits(z, y), ref, atol=0, rtol=1e-12)
    assert torch.isinf(_torchmetrics_perplexity(t64(z), torch.from_numpy(y)))


# ---------- mask 与边界 ----------


def test_mask_ignores_whatever_sits_in_the_padding():
    nll = np.array([[1.0, 2.0, np.inf], [0.5, np.nan, -3.0]])
    mask = np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)
    assert_close(ch.perplexity(nll, mask), np.exp(3.5 / 3), atol=0, rtol=1e-15)
    assert_close(ch.perplexity(nll, mask.astype(int)), ch.perplexity(nll, mask), atol=0)
    assert_close(ch.perplexity(nll, mask, average="none"), np.exp([1.5, 0.5]), atol=0, rtol=1e-15)


def test_one_dimensional_input_is_one_sequence():
    h = seeded(3).exponential(size=9)
    for avg in ["token", "sequence"]:
        assert_close(ch.perplexity(h, average=avg), ch.perplexity(h[None], average=avg), atol=0)
    assert ch.perplexity(h, average="none").shape == (1,)


def test_infinite_nll_and_overflow_give_inf_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ch.perplexity(np.array([1.0, np.inf])) == np.inf
        assert ch.perplexity(np.array([800.0, 800.0])) == np.inf


# ---------- bigram 的逐名字 NLL 与一元模型 ----------


@pytest.fixture(scope="module")
def names():
    words = bigram_lm.load_names()
    stoi, _ = bigram_lm.build_vocab(words)
    train, val = bigram_lm.split_names(words, val_frac=0.1, seed=0)
    return train, val, stoi


def test_sequence_nll_matches_per_name_computation(names):
    train, val, stoi = names
    P = bigram_lm.bigram_probs(bigram_lm.bigram_counts(train, stoi), k=1.0)
    few = val[:30]
    out, mask = ch.sequence_nll(P, few, stoi)
    rows = [torch.from_numpy(bigram_lm.nll(P, *bigram_lm.encode_bigrams([w], stoi), reduction="none"))
            for w in few]
    ref = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    assert_close(out, ref, atol=0)
    assert mask.sum(axis=1).tolist() == [len(w) + 1 for w in few]
    assert (out[~mask] == 0).all()
    xs, ys = bigram_lm.encode_bigrams(few, stoi)
    assert_close(ch.perplexity(out, mask), np.exp(bigram_lm.nll(P, xs, ys)), atol=0, rtol=1e-14)


def test_uniform_table_has_perplexity_V_on_names(names):
    _, val, stoi = names
    V = len(stoi)
    assert_close(ch.perplexity(*ch.sequence_nll(np.full((V, V), 1 / V), val, stoi)), V, atol=0, rtol=1e-13)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [0.0, 0.5, 3.0])
def test_unigram_probs_are_smoothed_column_frequencies(seed, k):
    N = seeded(seed).integers(0, 10, size=(5, 5))
    N[0, 0] += 1
    P = ch.unigram_probs(N, k=k)
    expected = (N.sum(axis=0) + k) / (N.sum() + k * 5)
    assert_close(P, np.tile(expected, (5, 1)), atol=1e-15)


def test_bigram_beats_unigram_beats_uniform_on_held_out_names(names):
    train, val, stoi = names
    V = len(stoi)
    N = bigram_lm.bigram_counts(train, stoi)
    ppl = [ch.perplexity(*ch.sequence_nll(Q, val, stoi))
           for Q in (bigram_lm.bigram_probs(N, 1.0), ch.unigram_probs(N), np.full((V, V), 1 / V))]
    assert 1 < ppl[0] < ppl[1] < ppl[2]
    assert ch.perplexity(*ch.sequence_nll(bigram_lm.bigram_probs(N, 0.0), val, stoi)) == np.inf


# ---------- 坏输入 ----------

_NLL = np.ones((2, 3))
_MASK = np.ones((2, 3), dtype=bool)
_Z, _Y = _logits_and_target(0, (2, 4), 5)

BAD = [
    BadInput("token_nll 是三维", lambda: ch.perplexity(np.ones((2, 3, 4))), "token_nll"),
    BadInput("token_nll 为负", lambda: ch.perplexity(-_NLL), "log 概率"),
    BadInput("token_nll 含 nan", lambda: ch.perplexity(np.full(3, np.nan)), "nan"),
    BadInput("token_nll 是字符串", lambda: ch.perplexity(["a"]), "token_nll", TypeError),
    BadInput("mask 形状不符", lambda: ch.perplexity(_NLL, _MASK[:, :2]), "mask"),
    BadInput("mask 是浮点", lambda: ch.perplexity(_NLL, _MASK * 0.5), "mask", TypeError),
    BadInput("mask 含 2", lambda: ch.perplexity(_NLL, _MASK * 2), "mask", TypeError),
    BadInput("mask 全为 False", lambda: ch.perplexity(_NLL, ~_MASK), "mask"),
    BadInput("空序列按序列平均", lambda: ch.perplexity(_NLL, [[1, 1, 1], [0, 0, 0]], average="sequence"),
             "第 1 条序列"),
    BadInput("average 拼错", lambda: ch.perplexity(_NLL, average="micro"), "average"),
    BadInput("logits 与 target 不符", lambda: ch.perplexity_from_logits(_Z, _Y[:, :-1]), "logits"),
    BadInput("logits 是一维", lambda: ch.perplexity_from_logits(np.zeros(5), np.zeros((), dtype=int)), "logits"),
    BadInput("target 是浮点", lambda: ch.perplexity_from_logits(_Z, _Y * 1.0), "target", TypeError),
    BadInput("target 越界", lambda: ch.perplexity_from_logits(_Z, np.full((2, 4), 5)), "target"),
    BadInput("全部被 ignore_index 屏蔽", lambda: ch.perplexity_from_logits(_Z, np.full((2, 4), -100)), "ignore_index"),
    BadInput("sequence_nll 的 words 是字符串",
             lambda: ch.sequence_nll(np.full((3, 3), 1 / 3), "ab", {".": 0, "a": 1, "b": 2}), "words", TypeError),
    BadInput("unigram_probs 的 k 为负", lambda: ch.unigram_probs(np.ones((3, 3)), k=-1), "k"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


# ---------- 性质 ----------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), B=st.integers(1, 5), T=st.integers(1, 8))
def test_token_average_is_a_weighted_geometric_mean_and_jensen_holds(seed, B, T):
    r = seeded(seed)
    nll = r.exponential(scale=2.0, size=(B, T))
    mask = r.random((B, T)) < 0.7
    mask[:, 0] = True
    each = ch.perplexity(nll, mask, average="none")
    tok = ch.perplexity(nll, mask)
    seq = ch.perplexity(nll, mask, average="sequence")
    assert (each >= 1).all() and tok >= 1
    assert each.min() * (1 - 1e-12) <= tok <= each.max() * (1 + 1e-12)
    assert_close(tok, np.exp((mask.sum(1) * np.log(each)).sum() / mask.sum()), atol=0, rtol=1e-12)
    assert seq <= each.mean() * (1 + 1e-12)
    doubled = ch.perplexity(np.concatenate([nll, nll]), np.concatenate([mask, mask]))
    assert_close(doubled, tok, atol=0, rtol=1e-13)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), c=st.floats(-50, 50))
def test_from_logits_is_shift_invariant(seed, c):
    logits, target = _logits_and_target(seed, (3, 5), 4)
    assert_close(ch.perplexity_from_logits(logits + c, target), ch.perplexity_from_logits(logits, target),
                 atol=0, rtol=1e-12)
