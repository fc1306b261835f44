"""用 PyTorch 训练 MLP：make_moons 对照 sklearn，前向与梯度对照手写 / Value 版 MLP，训练循环、早停与坏输入。"""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import make_moons as sk_make_moons

from mlbook.chapters import autograd_mlp
from mlbook.chapters import mlp_training as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded, t64

F64 = torch.float64
MLP = autograd_mlp.MLP  # 上一章的 Value 版 MLP


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("dtype", F64)
    return ch.MLPClassifier(2, kw.pop("num_classes", 2), **kw)


def _moons(n=60, noise=0.3, seed=0):
    X, y = ch.make_moons(n, noise=noise, random_state=seed)
    return t64(X), torch.as_tensor(y)


# ---------------------------------------------------------------- make_moons


@pytest.mark.parametrize(
    "kw",
    [
        dict(n_samples=100, random_state=0),
        dict(n_samples=301, noise=0.35, random_state=3),
        dict(n_samples=(4, 9), noise=0.1, random_state=1),
        dict(n_samples=(0, 5), random_state=2),
        dict(n_samples=1, noise=0.5, random_state=4),
        dict(n_samples=17, shuffle=False, random_state=5),
        dict(n_samples=17, shuffle=False, noise=0.2, random_state=6),
        dict(n_samples=2, noise=0.0, random_state=2**32 - 1),
    ],
)
def test_make_moons_matches_sklearn_bit_for_bit(kw):
    X, y = ch.make_moons(**kw)
    Xr, yr = sk_make_moons(**kw)
    assert_close(X, Xr, atol=0)
    assert np.array_equal(y, yr) and y.dtype == yr.dtype and X.dtype == np.float64


def test_make_moons_random_state_instance_and_global_generator():
    rs = np.random.RandomState(11)
    rs_ref = copy.deepcopy(rs)
    for _ in range(2):  # 同一个实例连续调用两次，状态一起前进
        assert_close(ch.make_moons(20, noise=0.1, random_state=rs)[0],
                     sk_make_moons(20, noise=0.1, random_state=rs_ref)[0], atol=0)
    np.random.seed(7)  # noqa: NPY002  random_state=None 用的正是全局生成器
    ours = ch.make_moons(15, noise=0.2)
    np.random.seed(7)  # noqa: NPY002
    ref = sk_make_moons(15, noise=0.2)
    assert_close(ours[0], ref[0], atol=0)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 200), shuffle=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_make_moons_noiseless_points_lie_on_the_two_half_circles(n, shuffle, seed):
    X, y = ch.make_moons(n, shuffle=shuffle, random_state=seed)
    assert X.shape == (n, 2) and y.shape == (n,)
    assert (y == 0).sum() == n // 2 and (y == 1).sum() == n - n // 2
    up, lo = X[y == 0], X[y == 1]
    assert_close(np.hypot(up[:, 0], up[:, 1]), np.ones(len(up)), atol=1e-15)
    assert_close(np.hypot(lo[:, 0] - 1, lo[:, 1] - 0.5), np.ones(len(lo)), atol=1e-15)
    assert (up[:, 1] >= 0).all() and (lo[:, 1] <= 0.5 + 1e-15).all()


# ------------------------------------------------------------ MLPClassifier


def _numpy_forward(model, X):
    acts = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
            "logistic": lambda z: 1 / (1 + np.exp(-z)), "identity": lambda z: z}
    lins = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    h = X
    for i, lin in enumerate(lins):
        h = h @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
        if i < len(lins) - 1:
            h = acts[model.activation](h)
    return h


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize("hidden", [(), (5,), (7, 3), 4])
@pytest.mark.parametrize("seed", range(2))
def test_forward_matches_numpy(activation, hidden, seed):
    X = seeded(seed).normal(size=(9, 3))
    torch.manual_seed(seed)
    model = ch.MLPClassifier(3, 4, hidden, activation=activation, dtype=F64)
    out = model(t64(X))
    assert out.shape == (9, 4)
    assert_close(out, _numpy_forward(model, X), atol=1e-14)


def _value_ce(logits, targets):
    total = 0.0
    for z, t in zip(logits, targets):
        m = max(v.data for v in z)
        total = total + (sum((v - m).exp() for v in z).log() + m - z[t])
    return total / len(targets)


def _value_grads(mlp):
    out = []
    for layer in mlp.layers:
        out += [w.grad for nrn in layer.neurons for w in nrn.w]
        out += [nrn.b.grad for nrn in layer.neurons]
    return np.array(out)


@pytest.mark.parametrize("nonlin", ["tanh", "relu"])
@pytest.mark.parametrize(("nin", "sizes", "seed"), [(2, [6, 3], 0), (3, [4, 4, 5], 1), (1, [2], 2)])
def test_gradients_match_value_mlp_on_one_batch(nonlin, nin, sizes, seed):
    r = seeded(seed)
    X = r.normal(size=(7, nin))
    y = r.integers(0, sizes[-1], size=7)
    vm = MLP(nin, sizes, rng=random.Random(seed), nonlin=nonlin, linear_last=True)
    model = ch.MLPClassifier.from_value_mlp(vm)
    lv = _value_ce([vm(x) for x in X.tolist()], y.tolist())
    vm.zero_grad()
    lv.backward()
    lt = F.cross_entropy(model(t64(X)), torch.as_tensor(y))
    lt.backward()
    assert_close(lv.data, lt.item(), atol=1e-14)
    assert_close(_value_grads(vm), torch.cat([p.grad.flatten() for p in model.parameters()]), atol=1e-14)


def test_full_batch_training_matches_value_gradient_descent():
    X, y = _moons(12)
    vm = MLP(2, [5, 2], rng=random.Random(3), nonlin="tanh", linear_last=True)
    model = ch.MLPClassifier.from_value_mlp(vm)
    hist = ch.train_classifier(model, X, y, epochs=3, lr=0.3)
    losses = []
    for _ in range(3):
        loss = _value_ce([vm(x) for x in X.tolist()], y.tolist())
        vm.zero_grad()
        loss.backward()
        for p in vm.parameters():
            p.data -= 0.3 * p.grad
        losses.append(_value_ce([vm(x) for x in X.tolist()], y.tolist()).data)
    assert_close(hist["train_loss"], losses, atol=1e-14)
    assert_close(torch.cat([p.flatten() for p in ch.MLPClassifier.from_value_mlp(vm).parameters()]),
                 torch.cat([p.detach().flatten() for p in model.parameters()]), atol=1e-14)


# ---------------------------------------------------------- train_classifier


@pytest.mark.parametrize(("batch_size", "momentum", "wd"), [(None, 0.0, 0.0), (16, 0.9, 1e-2), (7, 0.5, 0.0)])
def test_train_classifier_matches_hand_written_loop(batch_size, momentum, wd):
    X, y = _moons(40, seed=1)
    Xv, yv = _moons(30, seed=2)
    model = _model(1, hidden_layer_sizes=(8,))
    ref = copy.deepcopy(model)
    hist = ch.train_classifier(model, X, y, Xv, yv, epochs=4, lr=0.2, momentum=momentum,
                               weight_decay=wd, batch_size=batch_size, seed=3)
    opt = torch.optim.SGD(ref.parameters(), lr=0.2, momentum=momentum, weight_decay=wd)
    gen = torch.Generator().manual_seed(3)
    bs = batch_size or 40
    for _ in range(4):
        order = torch.randperm(40, generator=gen) if bs < 40 else torch.arange(40)
        for s in range(0, 40, bs):
            i = order[s:s + bs]
            opt.zero_grad()
            F.cross_entropy(ref(X[i]), y[i]).backward()
            opt.step()
    with torch.no_grad():
        assert_close(hist["train_loss"][-1], F.cross_entropy(ref(X), y).item(), atol=1e-14)
        assert_close(hist["val_acc"][-1], (ref(Xv).argmax(1) == yv).double().mean().item(), atol=0)
    for a, b in zip(model.parameters(), ref.parameters()):
        assert_close(a, b, atol=1e-14)
    assert hist["epochs_run"] == 4 and len(hist["val_loss"]) == 4


def test_weight_decay_equals_explicit_l2():
    X, y = _moons(30)
    a = _model(2, hidden_layer_sizes=(6, 6))
    b = copy.deepcopy(a)
    ch.train_classifier(a, X, y, epochs=4, lr=0.1, momentum=0.9, weight_decay=0.03)
    opt = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    for _ in range(4):
        loss = F.cross_entropy(b(X), y) + 0.03 / 2 * sum((p**2).sum() for p in b.parameters())
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert_close(p, q, atol=1e-15)


def test_early_stopping_restores_the_best_epoch():
    X, y = _moons(40, noise=0.4, seed=0)
    Xv, yv = _moons(80, noise=0.4, seed=1)
    model = _model(0, hidden_layer_sizes=(32, 32))
    hist = ch.train_classifier(model, X, y, Xv, yv, epochs=150, lr=0.1, momentum=0.9, patience=10)
    best = hist["best_epoch"]
    assert hist["val_loss"][best] == min(hist["val_loss"])
    assert hist["epochs_run"] == best + 1 + 10 < 150  # 过拟合后确实提前停下
    assert ch._evaluate(model, Xv, yv)[0] == hist["val_loss"][best]
    assert_close(ch._evaluate(model, X, y)[0], hist["train_loss"][best], atol=0)


def test_patience_longer_than_training_runs_all_epochs_and_still_restores():
    X, y = _moons(30)
    model = _model(0, hidden_layer_sizes=(8,))
    hist = ch.train_classifier(model, X, y, X, y, epochs=6, patience=100)
    assert hist["epochs_run"] == 6
    assert ch._evaluate(model, X, y)[0] == min(hist["val_loss"])


def test_without_patience_the_final_parameters_are_kept():
    X, y = _moons(30)
    model = _model(0, hidden_layer_sizes=(8,))
    hist = ch.train_classifier(model, X, y, X[:10], y[:10], epochs=5, lr=0.5)
    assert ch._evaluate(model, X, y)[0] == hist["train_loss"][-1]
    no_val = ch.train_classifier(_model(0, hidden_layer_sizes=(8,)), X, y, epochs=2)
    assert set(no_val) == {"train_loss", "train_acc", "best_epoch", "epochs_run"} and no_val["best_epoch"] is None


def test_training_is_reproducible_and_seed_controls_minibatches():
    X, y = _moons(40)
    runs = [ch.train_classifier(_model(0), X, y, epochs=3, batch_size=8, seed=s)["train_loss"] for s in (0, 0, 1)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_numpy_inputs_are_accepted():
    X, y = ch.make_moons(30, noise=0.2, random_state=0)
    h1 = ch.train_classifier(_model(0), X, y, epochs=2)
    h2 = ch.train_classifier(_model(0), t64(X), torch.as_tensor(y), epochs=2)
    assert h1["train_loss"] == h2["train_loss"]


def test_evaluation_uses_eval_mode_and_restores_train_mode():
    X, y = _moons(50)
    model = _model(0, dropout=0.5)
    model.train()
    a = ch._evaluate(model, X, y)
    b = ch._evaluate(model, X, y)
    assert a == b and model.training  # Dropout 关闭：两次相同；原来的模式恢复
    model.eval()
    ch._evaluate(model, X, y)
    assert not model.training
    with torch.no_grad():
        assert not torch.equal(model.train()(X), model(X))  # 训练模式下 Dropout 随机


def test_from_value_mlp_without_hidden_layer_is_softmax_regression():
    vm = MLP(3, [4], rng=random.Random(0), linear_last=True)
    model = ch.MLPClassifier.from_value_mlp(vm)
    assert model.hidden_layer_sizes == () and len(model.net) == 1
    x = [0.3, -1.0, 2.0]
    assert_close(model(t64([x]))[0], [v.data for v in vm(x)], atol=1e-15)


Z2 = torch.zeros(4, 2, dtype=F64)
Y2 = torch.zeros(4, dtype=torch.long)
NET = _model(0, hidden_layer_sizes=(3,))
BAD_INPUTS = [
    BadInput("n_samples=0", lambda: ch.make_moons(0), "n_samples"),
    BadInput("n_samples 负数", lambda: ch.make_moons(-3), "n_samples"),
    BadInput("n_samples 浮点", lambda: ch.make_moons(10.0), "n_samples"),
    BadInput("n_samples 三元组", lambda: ch.make_moons((1, 2, 3)), "n_samples"),
    BadInput("n_samples 含负数", lambda: ch.make_moons((2, -1)), "n_samples"),
    BadInput("noise 负", lambda: ch.make_moons(5, noise=-1), "noise"),
    BadInput("noise inf", lambda: ch.make_moons(5, noise=float("inf")), "noise"),
    BadInput("random_state 浮点", lambda: ch.make_moons(5, random_state=0.5), "random_state", TypeError),
    BadInput("random_state Generator", lambda: ch.make_moons(5, random_state=np.random.default_rng(0)),
             "random_state", TypeError),
    BadInput("random_state 负数", lambda: ch.make_moons(5, random_state=-1), "random_state"),
    BadInput("in_features=0", lambda: ch.MLPClassifier(0, 2), "in_features"),
    BadInput("num_classes 浮点", lambda: ch.MLPClassifier(2, 2.0), "num_classes"),
    BadInput("隐藏层宽度 0", lambda: ch.MLPClassifier(2, 2, (4, 0)), "hidden_layer_sizes"),
    BadInput("激活拼错", lambda: ch.MLPClassifier(2, 2, activation="gelu"), "activation"),
    BadInput("dropout=1", lambda: ch.MLPClassifier(2, 2, dropout=1.0), "dropout"),
    BadInput("输入特征数", lambda: NET(torch.zeros(4, 3, dtype=F64)), "input"),
    BadInput("输入一维", lambda: NET(torch.zeros(2, dtype=F64)), "input"),
    BadInput("输入 float32", lambda: NET(torch.zeros(4, 2)), "input", TypeError),
    BadInput("输入 ndarray", lambda: NET(np.zeros((4, 2))), "input", TypeError),
    BadInput("from_value_mlp 类型", lambda: ch.MLPClassifier.from_value_mlp(NET), "mlp", TypeError),
    BadInput("from_value_mlp 最后一层有激活",
             lambda: ch.MLPClassifier.from_value_mlp(MLP(2, [3, 2], rng=random.Random(0))), "mlp"),
    BadInput("model 类型", lambda: ch.train_classifier("net", Z2, Y2), "model", TypeError),
    BadInput("X 一维", lambda: ch.train_classifier(NET, torch.zeros(4, dtype=F64), Y2), "X_train"),
    BadInput("X 空", lambda: ch.train_classifier(NET, Z2[:0], Y2[:0]), "X_train"),
    BadInput("y 浮点", lambda: ch.train_classifier(NET, Z2, Y2.double()), "y_train", TypeError),
    BadInput("y 布尔", lambda: ch.train_classifier(NET, Z2, Y2.bool()), "y_train", TypeError),
    BadInput("y 长度", lambda: ch.train_classifier(NET, Z2, Y2[:3]), "y_train"),
    BadInput("y 越界", lambda: ch.train_classifier(NET, Z2, Y2 + 2), "y_train"),
    BadInput("y 负数", lambda: ch.train_classifier(NET, Z2, Y2 - 1), "y_train"),
    BadInput("y_val 越界", lambda: ch.train_classifier(NET, Z2, Y2, Z2, Y2 + 5), "y_val"),
    BadInput("只给 X_val", lambda: ch.train_classifier(NET, Z2, Y2, Z2), "y_val"),
    BadInput("X_val 列数", lambda: ch.train_classifier(NET, Z2, Y2, Z2[:, :1], Y2), "X_val"),
    BadInput("epochs=0", lambda: ch.train_classifier(NET, Z2, Y2, epochs=0), "epochs"),
    BadInput("lr 负", lambda: ch.train_classifier(NET, Z2, Y2, lr=-0.1), "lr"),
    BadInput("lr nan", lambda: ch.train_classifier(NET, Z2, Y2, lr=float("nan")), "lr"),
    BadInput("momentum=1", lambda: ch.train_classifier(NET, Z2, Y2, momentum=1.0), "momentum"),
    BadInput("weight_decay 负", lambda: ch.train_classifier(NET, Z2, Y2, weight_decay=-1e-3), "weight_decay"),
    BadInput("batch_size=0", lambda: ch.train_classifier(NET, Z2, Y2, batch_size=0), "batch_size"),
    BadInput("patience 无验证集", lambda: ch.train_classifier(NET, Z2, Y2, patience=3), "patience"),
    BadInput("patience=0", lambda: ch.train_classifier(NET, Z2, Y2, Z2, Y2, patience=0), "patience"),
]


@pytest.mark.parametrize("case", bad_input_params(BAD_INPUTS))
def test_bad_inputs(case):
    case.check()
