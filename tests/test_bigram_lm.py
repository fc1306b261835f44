"""字符级 Bigram：计数对照 Counter / torch，加 k 平滑对照 MultinomialNB，NLL 对照 F.nll_loss，
手推梯度对照 autograd 与中心差分，计数形式的训练对照笔记的 one-hot 循环，采样、坏输入与性质测试。"""

from __future__ import annotations

import collections
import importlib.resources
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.naive_bayes import MultinomialNB

import mlbook
from mlbook.chapters import bigram_lm as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64


@pytest.fixture(autouse=True)
def _one_thread():
    """小张量上多线程只有同步开销（与章节第一个 cell 相同）。"""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _random_words(seed, n=40, alphabet="abcde", max_len=6):
    r = seeded(seed)
    return ["".join(r.choice(list(alphabet), size=r.integers(1, max_len + 1))) for _ in range(n)]


def _random_counts(seed, V=6, zeros=0.3):
    r = seeded(seed)
    N = r.integers(0, 20, size=(V, V))
    N[r.random((V, V)) < zeros] = 0
    N[:, 1] += 1  # 每行至少一个计数，k = 0 时也有定义
    return N


# ---------- 数据 ----------


def test_load_names_matches_an_independent_parse_of_the_census_files():
    root = importlib.resources.files("names")
    expected = set()
    for fname in ("dist.female.first", "dist.male.first"):
        expected |= {m.lower() for m in re.findall(r"^([A-Z]+)\s", (root / fname).read_text(), re.M)}
    words = ch.load_names()
    assert words == sorted(expected)
    assert len(set(words)) == len(words)
    assert all(re.fullmatch(r"[a-z]+", w) for w in words)
    assert {"mary", "james", "patricia", "john"} <= set(words)


def test_split_names_is_a_deterministic_partition():
    words = ch.load_names()
    tr, va = ch.split_names(words, val_frac=0.2, seed=3)
    assert sorted(tr + va) == words and not set(tr) & set(va)
    assert len(va) == round(0.2 * len(words))
    assert (tr, va) == ch.split_names(words, val_frac=0.2, seed=3)
    assert va != ch.split_names(words, val_frac=0.2, seed=4)[1]


def test_vocab_and_encoding():
    stoi, itos = ch.build_vocab(["cab", "bad"])
    assert stoi == {".": 0, "a": 1, "b": 2, "c": 3, "d": 4}
    assert all(itos[i] == c for c, i in stoi.items())
    xs, ys = ch.encode_bigrams(["cab"], stoi)
    assert xs.tolist() == [0, 3, 1, 2] and ys.tolist() == [3, 1, 2, 0]


# ---------- 计数与平滑 ----------


@pytest.mark.parametrize("seed", range(3))
def test_counts_match_counter_and_torch(seed):
    words = _random_words(seed)
    stoi, _ = ch.build_vocab(words)
    V = len(stoi)
    ref = np.zeros((V, V))
    for (a, b), c in collections.Counter(p for w in words for p in zip("." + w, w + ".")).items():
        ref[stoi[a], stoi[b]] = c
    N = ch.bigram_counts(words, stoi)
    assert N.dtype == np.int64
    assert_close(N, ref, atol=0)
    assert_close(ch.bigram_counts_naive(words, stoi), ref, atol=0)
    xs, ys = ch.encode_bigrams(words, stoi)
    assert len(xs) == sum(len(w) + 1 for w in words)
    Nt = torch.zeros((V, V), dtype=torch.float64).index_put_(
        (torch.from_numpy(xs), torch.from_numpy(ys)), torch.ones(len(xs), dtype=torch.float64), accumulate=True
    )
    assert_close(N, Nt, atol=0)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1e-6, 0.1, 1.0, 7.5])
def test_add_k_matches_multinomial_naive_bayes(seed, k):
    """MultinomialNB(alpha=k) 的 feature_log_prob_ = log((N_cj + k) / (n_c + kV))：每个类别一行计数。"""
    N = _random_counts(seed)
    nb = MultinomialNB(alpha=k, force_alpha=True).fit(N, np.arange(N.shape[0]))
    assert_close(ch.bigram_probs(N, k=k), np.exp(nb.feature_log_prob_), atol=1e-15)
    Nt = t64(N) + k
    assert_close(ch.bigram_probs(N, k=k), Nt / Nt.sum(1, keepdim=True), atol=1e-15)


def test_add_k_limits():
    N = _random_counts(0)
    assert_close(ch.bigram_probs(N, k=0), N / N.sum(1, keepdims=True), atol=0)
    V = N.shape[0]
    assert_close(ch.bigram_probs(N, k=1e12), np.full((V, V), 1 / V), atol=1e-10)
    P = ch.bigram_probs(np.zeros((4, 4)), k=0.5)  # 全零计数 + 平滑 = 均匀
    assert_close(P, np.full((4, 4), 0.25), atol=0)


# ---------- 负对数似然 ----------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_matches_torch(seed, reduction):
    words = _random_words(seed)
    stoi, _ = ch.build_vocab(words)
    xs, ys = ch.encode_bigrams(words, stoi)
    P = ch.bigram_probs(ch.bigram_counts(words, stoi), k=0.3)
    ref = F.nll_loss(torch.log(t64(P))[torch.from_numpy(xs)], torch.from_numpy(ys), reduction=reduction)
    assert_close(ch.nll(P, xs, ys, reduction=reduction), ref, atol=1e-14, rtol=1e-14)


def test_nll_zero_probability_is_inf_like_torch():
    N = _random_counts(1)
    P = ch.bigram_probs(N, k=0)
    i, j = np.argwhere(N == 0)[0]
    xs, ys = np.array([i, 0]), np.array([j, 1])
    assert ch.nll(P, xs, ys, reduction="none")[0] == np.inf
    ref = F.nll_loss(torch.log(t64(P))[torch.from_numpy(xs)], torch.from_numpy(ys), reduction="none")
    assert_close(ch.nll(P, xs, ys, reduction="none"), ref, atol=1e-15)
    assert ch.nll(P, np.zeros(0, int), np.zeros(0, int), reduction="sum") == 0


# ---------- 神经网络 ----------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("reg", [0.0, 0.01, 2.0])
def test_grad_matches_autograd_of_the_one_hot_model(seed, reg):
    words = _random_words(seed, n=60)
    stoi, _ = ch.build_vocab(words)
    V = len(stoi)
    xs, ys = ch.encode_bigrams(words, stoi)
    W0 = seeded(seed + 10).normal(size=(V, V)) * 3
    W = t64(W0, requires_grad=True)
    logits = F.one_hot(torch.from_numpy(xs), V).double() @ W
    (F.cross_entropy(logits, torch.from_numpy(ys)) + reg * (W**2).mean()).backward()
    assert_close(ch.bigram_grad(W0, ch.bigram_counts(words, stoi), reg=reg), W.grad, atol=1e-15)


def test_grad_matches_finite_differences():
    N = _random_counts(2, V=4)
    W0 = seeded(3).normal(size=(4, 4))

    def loss(w):
        z = w - w.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -(N * logp).sum() / N.sum() + 0.5 * (w**2).mean()

    assert_close(ch.bigram_grad(W0, N, reg=0.5), mlbook.numeric_grad(loss, W0), atol=1e-9)


def _one_hot_reference(xs, ys, V, steps, lr, reg, seed=2147483647):
    """笔记的训练循环（one-hot、exp、归一化），float64、每步清零、no_grad 更新。"""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn((V, V), generator=g, dtype=torch.float64, requires_grad=True)
    xenc = F.one_hot(torch.from_numpy(xs), V).double()
    hist = []
    for _ in range(steps):
        counts = (xenc @ W).exp()
        probs = counts / counts.sum(1, keepdims=True)
        data = -probs[torch.arange(len(xs)), torch.from_numpy(ys)].log().mean()
        hist.append(data.item())
        W.grad = None
        (data + reg * (W**2).mean()).backward()
        with torch.no_grad():
            W -= lr * W.grad
    return W.detach(), hist


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("reg", [0.0, 0.05])
def test_training_on_counts_equals_the_one_hot_loop(seed, reg):
    words = _random_words(seed, n=80)
    stoi, _ = ch.build_vocab(words)
    V = len(stoi)
    xs, ys = ch.encode_bigrams(words, stoi)
    W, hist = ch.train_neural_bigram(xs, ys, num_classes=V, steps=30, lr=3.0, reg=reg, seed=seed)
    W_ref, hist_ref = _one_hot_reference(xs, ys, V, 30, 3.0, reg, seed=seed)
    assert_close(W, W_ref, atol=1e-12)
    assert_close(hist, hist_ref, atol=1e-13)


def test_training_reaches_the_counting_model():
    """λ = 0 的驻点是最大似然：足够多步后损失逼近计数模型的下界，且不低于它。"""
    words = _random_words(7, n=100, alphabet="abc")
    stoi, _ = ch.build_vocab(words)
    xs, ys = ch.encode_bigrams(words, stoi)
    N = ch.bigram_counts(words, stoi)
    W, hist = ch.train_neural_bigram(xs, ys, num_classes=len(stoi), steps=3000, lr=5.0)
    mle = ch.nll(ch.bigram_probs(N, k=0), xs, ys)
    final = ch.nll(mlbook.to_numpy(torch.softmax(t64(W), 1)), xs, ys)
    assert mle - 1e-12 <= final < mle + 1e-3
    assert np.all(np.diff(hist) <= 1e-12)  # 小学习率下全批量梯度下降单调下降
    assert_close(torch.softmax(t64(W), 1)[N > 0], ch.bigram_probs(N, k=0)[N > 0], atol=2e-2)


def test_l2_pulls_towards_uniform():
    words = _random_words(8, n=60)
    stoi, _ = ch.build_vocab(words)
    xs, ys = ch.encode_bigrams(words, stoi)
    ent = []
    for reg in [0.0, 0.1, 1.0, 10.0]:
        W, _ = ch.train_neural_bigram(xs, ys, num_classes=len(stoi), steps=400, lr=3.0, reg=reg)
        P = torch.softmax(t64(W), 1)
        ent.append(float(-(P * P.log()).sum()))
    assert all(a < b for a, b in zip(ent, ent[1:]))


# ---------- 采样 ----------


def test_sampling_is_reproducible_and_matches_the_notes_loop():
    words = ch.load_names()[:300]
    stoi, itos = ch.build_vocab(words)
    P = ch.bigram_probs(ch.bigram_counts(words, stoi), k=1.0)
    g = torch.Generator().manual_seed(42)
    ref = []
    for _ in range(10):
        out, ix = [], 0
        while True:
            ix = torch.multinomial(torch.from_numpy(P)[ix], 1, replacement=True, generator=g).item()
            if ix == 0:
                break
            out.append(itos[ix])
        ref.append("".join(out))
    assert ch.sample_names(P, itos, 10, generator=torch.Generator().manual_seed(42)) == ref
    assert ch.sample_names(P, itos, 0) == []


def test_sampling_deterministic_tables_and_max_len():
    itos = {0: ".", 1: "a", 2: "b"}
    P = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # . → a → b → .
    assert ch.sample_names(P, itos, 3) == ["ab"] * 3
    loop = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # a 之后永远是 a
    assert ch.sample_names(loop, itos, 2, max_len=7) == ["aaaaaaa"] * 2


def test_sampling_frequencies_follow_the_table():
    itos = {0: ".", 1: "a", 2: "b", 3: "c"}
    P = np.array([[0, 0.2, 0.3, 0.5], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]], dtype=float)
    out = ch.sample_names(P, itos, 4000, generator=torch.Generator().manual_seed(0))
    freq = np.array([out.count(c) for c in "abc"]) / len(out)
    assert np.abs(freq - P[0, 1:]).max() < 0.03  # 标准差约 0.008


# ---------- 坏输入 ----------

_N = _random_counts(0)
_P = ch.bigram_probs(_N)
_X = np.array([0, 1, 2])
BAD = [
    BadInput("words 是字符串", lambda: ch.build_vocab("emma"), "words", TypeError),
    BadInput("空的名字表", lambda: ch.build_vocab([]), "words"),
    BadInput("名字不是字符串", lambda: ch.build_vocab(["a", 3]), r"words\[1\]", TypeError),
    BadInput("空名字", lambda: ch.build_vocab(["a", ""]), r"words\[1\]"),
    BadInput("名字含边界符", lambda: ch.build_vocab(["a.b"]), "边界符"),
    BadInput("字符不在表中", lambda: ch.encode_bigrams(["abz"], {".": 0, "a": 1, "b": 2}), "'z'"),
    BadInput("stoi 编号不连续", lambda: ch.encode_bigrams(["ab"], {".": 0, "a": 1, "b": 5}), "stoi"),
    BadInput("val_frac 越界", lambda: ch.split_names(["a", "b"], val_frac=1.0), "val_frac"),
    BadInput("counts 不是方阵", lambda: ch.bigram_probs(np.ones((3, 4))), "counts"),
    BadInput("counts 一维", lambda: ch.bigram_probs(np.ones(3)), "counts"),
    BadInput("counts 为负", lambda: ch.bigram_probs(-np.ones((3, 3))), "counts"),
    BadInput("counts 含 nan", lambda: ch.bigram_probs(np.full((2, 2), np.nan)), "counts"),
    BadInput("counts 是字符串", lambda: ch.bigram_probs(np.full((2, 2), "1")), "counts", TypeError),
    BadInput("k 为负", lambda: ch.bigram_probs(_N, k=-0.1), "k"),
    BadInput("k 为 inf", lambda: ch.bigram_probs(_N, k=np.inf), "k"),
    BadInput("k 是布尔", lambda: ch.bigram_probs(_N, k=True), "k", TypeError),
    BadInput("k = 0 且有空行", lambda: ch.bigram_probs(np.zeros((3, 3)), k=0), "第 0 行"),
    BadInput("probs 行和不为 1", lambda: ch.nll(_N / _N.sum(1), _X, _X), "probs"),
    BadInput("probs 为负", lambda: ch.nll(_P - 0.5, _X, _X), "probs"),
    BadInput("xs 越界", lambda: ch.nll(_P, _X + 10, _X), "xs"),
    BadInput("ys 是浮点", lambda: ch.nll(_P, _X, _X * 1.0), "ys", TypeError),
    BadInput("xs 二维", lambda: ch.nll(_P, _X[None], _X), "xs"),
    BadInput("长度不同", lambda: ch.nll(_P, _X, _X[:2]), "xs 与 ys"),
    BadInput("空批次求平均", lambda: ch.nll(_P, _X[:0], _X[:0]), "n = 0"),
    BadInput("reduction 拼错", lambda: ch.nll(_P, _X, _X, reduction="avg"), "reduction"),
    BadInput("W 与 counts 形状不同", lambda: ch.bigram_grad(np.zeros((3, 3)), _N), "W 与 counts"),
    BadInput("counts 全零求梯度", lambda: ch.bigram_grad(np.zeros((3, 3)), np.zeros((3, 3))), "counts"),
    BadInput("num_samples 为负", lambda: ch.sample_names(_P, dict(enumerate("." + "abcde")), -1), "num_samples"),
    BadInput("max_len 是浮点", lambda: ch.sample_names(_P, dict(enumerate("." + "abcde")), max_len=2.5), "max_len"),
    BadInput("itos 长度不符", lambda: ch.sample_names(_P, {0: "."}), "itos"),
    BadInput("训练数据为空", lambda: ch.train_neural_bigram(_X[:0], _X[:0], num_classes=6), "xs"),
    BadInput("num_classes 太小", lambda: ch.train_neural_bigram(_X, _X, num_classes=2), "xs"),
    BadInput("lr 为 0", lambda: ch.train_neural_bigram(_X, _X, num_classes=6, lr=0.0), "lr"),
    BadInput("reg 为负", lambda: ch.train_neural_bigram(_X, _X, num_classes=6, reg=-1.0), "reg"),
    BadInput("steps 为负", lambda: ch.train_neural_bigram(_X, _X, num_classes=6, steps=-1), "steps"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


# ---------- 性质 ----------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), k1=st.floats(0, 50), dk=st.floats(1e-3, 50))
def test_training_nll_is_nondecreasing_in_k(seed, k1, dk):
    """式 eq-bigram-monotone：训练集上的平均 NLL 随 k 单调不减；每行都是分布。"""
    words = _random_words(seed, n=15, alphabet="abcd", max_len=4)
    stoi, _ = ch.build_vocab(words)
    xs, ys = ch.encode_bigrams(words, stoi)
    N = ch.bigram_counts(words, stoi)
    P1, P2 = ch.bigram_probs(N, k1 + 1e-9), ch.bigram_probs(N, k1 + dk)
    assert_close(P2.sum(axis=1), np.ones(len(stoi)), atol=1e-15)
    assert ch.nll(P1, xs, ys) <= ch.nll(P2, xs, ys) + 1e-12
    assert ch.nll(P2, xs, ys) <= np.log(len(stoi)) + 1e-12


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), c=st.floats(-30, 30))
def test_grad_rows_sum_to_zero_and_shift_invariance(seed, c):
    """λ = 0 时每行梯度和为 0（给一行 logit 同加常数不改变 Softmax），平移后的梯度不变。"""
    N = _random_counts(seed)
    W = seeded(seed + 1).normal(size=N.shape)
    g = ch.bigram_grad(W, N)
    assert_close(g.sum(axis=1), np.zeros(N.shape[0]), atol=1e-15)
    assert_close(ch.bigram_grad(W + c, N), g, atol=1e-13)
