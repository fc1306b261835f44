"""公共模块 mlbook 自身的测试：对照打印、字体、笔记本检查、章节加载、检索词典。"""

from __future__ import annotations

import warnings

import matplotlib
import nbformat
import numpy as np
import pytest
import torch
from matplotlib import font_manager

import mlbook
from mlbook import chapters
from mlbook.notebooks import execution_problems
from mlbook.sphinx_ext import glossary_terms


def test_check_close_prints_and_passes(capsys):
    mlbook.check_close("相同", np.array([1.0, 2.0]), torch.tensor([1.0, 2.0], dtype=torch.float64), atol=0)
    assert "✓ 相同: max|Δ| = 0.000e+00" in capsys.readouterr().out


def test_check_close_fails_beyond_tolerance():
    with pytest.raises(AssertionError):
        mlbook.check_close("差太多", [1.0, 2.0], [1.0, 2.0 + 1e-6], atol=1e-9, rtol=0)


def test_check_close_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="形状不一致"):
        mlbook.check_close("形状", np.zeros(3), np.zeros((3, 1)), atol=0)


def test_check_close_handles_scalars_nan_and_inf(capsys):
    mlbook.check_close("标量", 1.0, np.float64(1.0), atol=0)
    mlbook.check_close("特殊值", [np.nan, np.inf, -np.inf], [np.nan, np.inf, -np.inf], atol=0)
    assert capsys.readouterr().out.count("max|Δ| = 0.000e+00") == 2
    with pytest.raises(AssertionError):
        mlbook.check_close("nan 不等于数", [np.nan], [0.0], atol=1)
    with pytest.raises(AssertionError):
        mlbook.check_close("inf 符号", [np.inf], [-np.inf], atol=1)


def test_setup_registers_cjk_font_and_seeds():
    rng = mlbook.setup(seed=3)
    assert matplotlib.rcParams["font.sans-serif"][0] == mlbook.CJK_FONT
    assert matplotlib.rcParams["axes.unicode_minus"] is False
    font = font_manager.findfont(font_manager.FontProperties(family=mlbook.CJK_FONT), fallback_to_default=False)
    # 系统装了同名字体时 matplotlib 可能用系统的那份；两者都是思源黑体
    assert font_manager.get_font(font).family_name == mlbook.CJK_FONT
    assert rng.integers(1000) == np.random.default_rng(3).integers(1000)
    a = torch.rand(2)
    mlbook.setup(seed=3)
    assert torch.equal(a, torch.rand(2))


def test_chinese_labels_render_without_missing_glyphs():
    import matplotlib.pyplot as plt

    mlbook.setup()
    fig, ax = plt.subplots()
    ax.set(title="交叉熵损失", xlabel="真实类别的 logit $z_t$", ylabel="梯度")
    ax.plot([-1, 1], [-1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # “Glyph … missing from font” 是 UserWarning
        fig.canvas.draw()
    plt.close(fig)


def _nb(cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return nb


def test_execution_problems_detects_unexecuted_and_errors():
    ok = nbformat.v4.new_code_cell("1", execution_count=1)
    assert execution_problems(_nb([ok])) == []
    unexecuted = nbformat.v4.new_code_cell("2")
    assert "execution_count 为 None" in execution_problems(_nb([ok, unexecuted]))[0]
    err = nbformat.v4.new_code_cell("1/0", execution_count=1)
    err.outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero")]
    assert "ZeroDivisionError" in execution_problems(_nb([err]))[0]
    err.metadata["tags"] = ["raises-exception"]
    assert execution_problems(_nb([err])) == []


def test_chapter_import_errors_are_clear():
    with pytest.raises(ModuleNotFoundError, match="没有这一章"):
        chapters.load("no_such_part/no_such_chapter")
    with pytest.raises(ModuleNotFoundError):
        import mlbook.chapters.glossary  # noqa: F401  附录不是章节，没有可导入的实现


def test_chapter_import_is_the_same_module_everywhere():
    import importlib

    from mlbook.chapters.softmax_cross_entropy import log_softmax

    from mlbook.chapters import softmax_cross_entropy as a

    assert a is chapters.load("classification_losses/softmax_cross_entropy")
    assert a is importlib.import_module("mlbook.chapters.softmax_cross_entropy")
    assert log_softmax is a.log_softmax
    assert a.__file__.endswith("softmax_cross_entropy.md")
    assert "softmax_cross_entropy" in dir(chapters)


def test_check_close_asserts_exactly_what_it_prints(capsys):
    """rtol 默认为 0：相对误差 5e-8 在 atol=1e-15 下必须失败（以前 assert_allclose 的默认 rtol=1e-7 放过了它）。"""
    ref = np.array([0.3, 0.7])
    with pytest.raises(AssertionError, match=r"2/2 个元素超出容差（atol=1e-15）；第一个在 \[0\]"):
        mlbook.check_close("相对误差 5e-8", ref * (1 + 5e-8), ref, atol=1e-15)
    mlbook.check_close("给了 rtol 才放宽", ref * (1 + 5e-8), ref, atol=1e-15, rtol=1e-7)
    assert "(atol=1e-15, rtol=1e-07)" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="超出容差"):
        mlbook.check_close("恰好超出", [1.0 + 2e-15], [1.0], atol=1e-15)
    with pytest.raises(ValueError, match="容差不能为负"):
        mlbook.check_close("负容差", [1.0], [1.0], atol=-1)


def test_glossary_terms_feed_the_search_dictionary():
    terms = glossary_terms()
    for word in ["交叉熵", "注意力", "反向传播", "召回率"]:
        assert word in terms
    assert not any(t.startswith(" ") for t in terms)


def test_numeric_grad_matches_analytic_gradient():
    x = np.array([[0.3, -1.2], [2.0, 0.5]])
    g = mlbook.numeric_grad(lambda v: np.sum(v**3) + v[0, 1] * v[1, 0], x)
    expected = 3 * x**2 + np.array([[0.0, x[1, 0]], [x[0, 1], 0.0]])
    np.testing.assert_allclose(g, expected, atol=1e-8)
    assert mlbook.numeric_grad(np.sin, 0.0) == pytest.approx(1.0, abs=1e-10)  # 标量输入
