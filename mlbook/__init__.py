"""《手撕机器学习》各章共用的小工具。

每章第一个代码 cell 只需要：

    import mlbook
    mlbook.setup()

之后用 ``mlbook.check_close`` 打印并断言与参考实现（torch / sklearn / numpy）的误差。
这里只放每章都要用的东西；某一章自己的实现留在那一章里。
"""

from __future__ import annotations

import random
from importlib import resources

import numpy as np

__all__ = ["setup", "seed_everything", "check_close", "numeric_grad", "to_numpy", "practice_mode", "CJK_FONT"]

# mplfonts 随包附带的思源黑体（Noto Sans CJK SC），不依赖系统是否装了中文字体
CJK_FONT = "Noto Sans CJK SC"
_FONT_FILE = "NotoSansCJKsc-Regular.otf"


def _cjk_font_path() -> str:
    return str(resources.files("mplfonts") / "fonts" / _FONT_FILE)


def setup_matplotlib() -> None:
    """注册中文字体、统一绘图风格。可重复调用。"""
    import matplotlib as mpl
    from matplotlib import font_manager

    path = _cjk_font_path()
    if CJK_FONT not in {f.name for f in font_manager.fontManager.ttflist}:
        font_manager.fontManager.addfont(path)
    mpl.rcParams.update(
        {
            "font.family": "sans-serif",
            # 中文用思源黑体；其余字形回退到 DejaVu Sans
            "font.sans-serif": [CJK_FONT, "DejaVu Sans"],
            # 思源黑体的 U+2212 负号与数字不等宽，统一用 ASCII 减号
            "axes.unicode_minus": False,
            "mathtext.fontset": "dejavusans",
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
        }
    )


def _retina_figures() -> None:
    """在笔记本里以 2 倍分辨率输出 PNG（网页上按原尺寸显示，放大与高分屏上依然清晰）。"""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return
    if get_ipython() is None:
        return
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("retina")


def seed_everything(seed: int = 0) -> np.random.Generator:
    """给 random、numpy、torch 的全局生成器播种，并返回一个新的 numpy Generator。"""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  旧代码与第三方库仍用全局生成器
    try:
        import torch
    except ImportError:  # pragma: no cover - torch 是必装依赖
        pass
    else:
        torch.manual_seed(seed)
    return np.random.default_rng(seed)


def setup(seed: int = 0) -> np.random.Generator:
    """每章开头调用一次：中文字体、绘图风格、打印精度、随机种子。返回 numpy Generator。"""
    setup_matplotlib()
    _retina_figures()
    # 打印 4 位有效小数：不同 CPU 上浮点最后几位可能不同，少打几位才能让 nbval 稳定比对
    np.set_printoptions(precision=4, suppress=True)
    try:
        import torch
    except ImportError:  # pragma: no cover
        pass
    else:
        torch.set_printoptions(precision=4, sci_mode=False)
        # 书里的张量都很小：多线程只剩同步开销，在核数少、负载高的机器上能慢几十倍
        torch.set_num_threads(1)
    return seed_everything(seed)


def to_numpy(x) -> np.ndarray:
    """torch 张量 / 列表 / 标量 → float64 的 numpy 数组（会 detach）。"""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def check_close(name: str, ours, ref, *, atol: float, rtol: float = 0.0) -> None:
    """比较从零实现与参考实现：断言 ``|ours - ref| <= atol + rtol·|ref|`` 逐元素成立，并打印最大误差。

    打印的就是断言的容差：``✓ 名称: max|Δ| = 1.234e-16 (atol=1e-15)``，给了 rtol 时再加 ``rtol=…``。
    误差的具体数值随 CPU 变化，nbval 比对时会把它替换掉（见 tests/nbval_sanitize.cfg），
    真正把关的是这里的断言。两边同为 nan、或同为同号 inf 视为一致。
    不通过时抛出 AssertionError，信息里是第一个超出容差的元素（下标、两边的值、误差与允许值），而不是整个数组。
    """
    a, b = to_numpy(ours), to_numpy(ref)
    if a.shape != b.shape:
        raise ValueError(f"{name}: 形状不一致，ours {a.shape} vs ref {b.shape}")
    if atol < 0 or rtol < 0:
        raise ValueError(f"{name}: 容差不能为负（atol={atol}, rtol={rtol}）")
    tol = f"atol={atol:g}" + (f", rtol={rtol:g}" if rtol else "")
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
        same = (np.isnan(a) & np.isnan(b)) | (a == b)
        diff = np.where(same, 0.0, diff)
        allowed = atol + rtol * np.abs(b)
        bad = ~(same | (diff <= allowed))  # diff 为 nan（一边是 nan）也算超出
    err = float(np.nanmax(np.where(np.isnan(diff), np.inf, diff))) if diff.size else 0.0
    if bad.any():
        idx = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape))
        where = f"第一个在 {list(idx)}：" if a.ndim else ""
        raise AssertionError(
            f"✗ {name}: {int(bad.sum())}/{bad.size} 个元素超出容差（{tol}）；{where}"
            f"ours={float(a[idx])!r}, ref={float(b[idx])!r}, |Δ|={diff[idx]:.3e} > 允许 {allowed[idx]:.3e}"
        )
    # 不返回误差：cell 末尾的返回值会被显示出来，而它的最后几位随机器变化
    print(f"✓ {name}: max|Δ| = {err:.3e} ({tol})")


def practice_mode() -> None:
    """练习版笔记本用：检查不通过（AssertionError）或函数还没写（NotImplementedError）时只打印一行 ✗。"""
    from IPython import get_ipython

    ip = get_ipython()
    if ip is None:
        return

    def short(shell, etype, value, tb, tb_offset=None):
        msg = str(value)
        if issubclass(etype, NotImplementedError):
            msg = f"✗ 还没写：{msg.removeprefix('手撕：')}（填好函数体后从头运行）"
        elif not msg.startswith("✗"):
            msg = f"✗ {etype.__name__}: {msg}"
        print(msg)

    ip.set_custom_exc((AssertionError, NotImplementedError), short)


def numeric_grad(f, x, h: float = 1e-6) -> np.ndarray:
    """中心差分 (f(x + h e_k) - f(x - h e_k)) / 2h，逐元素；f 把与 x 同形状的 float64 数组映射为标量。

    截断误差 O(h²)、舍入误差 O(ε/h)，h = 1e-6 时误差约 1e-10。用来检验手推的梯度公式。
    """
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        g[idx] = (f(x + e) - f(x - e)) / (2 * h)
    return g
