"""让 tests/ 直接使用章节里的实现，而不是把代码复制一份。

章节里凡是标了 ``export`` 标签的代码 cell（导入、函数、类）按顺序执行到一个模块里：

    ```{code-cell} ipython3
    :tags: [export]

    def softmax(z): ...
    ```

测试里：

    from mlbook.chapter import load_chapter
    ch = load_chapter("classification_losses/softmax_cross_entropy")
    ch.softmax(...)
"""

from __future__ import annotations

import functools
import sys
import types

from mlbook.notebooks import BOOK, read_source

EXPORT_TAG = "export"


@functools.cache
def load_chapter(name: str) -> types.ModuleType:
    """执行 book/<name>.md 中所有 export cell，返回得到的模块（每个进程只执行一次）。"""
    md = BOOK / f"{name}.md"
    if not md.exists():
        raise FileNotFoundError(f"没有这一章：{md}")
    cells = [
        c.source
        for c in read_source(md).cells
        if c.cell_type == "code" and EXPORT_TAG in c.get("metadata", {}).get("tags", ())
    ]
    if not cells:
        raise ValueError(f"{md} 里没有标 {EXPORT_TAG!r} 的代码 cell")
    module = types.ModuleType(f"chapters.{name.replace('/', '.')}")
    module.__file__ = str(md)
    sys.modules[module.__name__] = module  # dataclass 等需要能按名字找到模块
    for i, src in enumerate(cells):
        exec(compile(src, f"{md}:export[{i}]", "exec"), module.__dict__)
    return module
