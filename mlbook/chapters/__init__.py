"""章节之间的复用：``from mlbook.chapters.<章> import <名字>``。

每一章里标了 ``export`` 标签的代码 cell（只含 import 与定义）按顺序执行成模块
``mlbook.chapters.<章>``，``<章>`` 是 book/ 下源文件的文件名（全书唯一）：

    from mlbook.chapters.softmax_cross_entropy import log_softmax

同一行在章节笔记本（包括 ``make lab`` 打开的）、tests/ 与 ``make bench`` 里都能用；
没有生成的副本，改了源文件就是改了实现。只有 export cell 会被执行，
章节里其他 cell（打印、画图、常见错误的演示）导入不到。
tests/test_chapters.py 检查：导出的名字只在一章里定义；一章只从 _toc.yml 里排在它前面的章导入。
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import re
import sys
from pathlib import Path

EXPORT_TAG = "export"


def chapter_sources() -> dict[str, Path]:
    """章名（文件名去掉 .md）→ 源文件；只含章节（首页与附录之外的页面）。"""
    from mlbook.notebooks import is_chapter, sources

    return {md.stem: md for md in sources() if is_chapter(md)}


_FENCE = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_TAGS = re.compile(r"^\s*:?tags:\s*\[([^\]]*)\]", re.M)


def export_cells(md: Path) -> list[str]:
    """源文件中所有打了 export 标签的代码 cell 的源码，按出现顺序。

    直接读 MyST 的代码块，不经过 jupytext（导入它要 ~1.5 s，而每章导入别章时都会走到这里）；
    tests/test_chapters.py 检查结果与 jupytext 读出的完全一致。
    """
    cells = []
    for m in _FENCE.finditer(md.read_text(encoding="utf-8")):
        body = m.group(1)
        if body.startswith("---\n"):  # YAML 形式的选项块
            head, _, code = body[4:].partition("\n---\n")
        else:  # 简写形式 :key: value，后面空一行
            lines = body.split("\n")
            n = 0
            while n < len(lines) and lines[n].startswith(":"):
                n += 1
            head, code = "\n".join(lines[:n]), "\n".join(lines[n:])
        tags = _TAGS.search(head)
        if tags and EXPORT_TAG in [t.strip().strip("'\"") for t in tags.group(1).split(",")]:
            cells.append(code.strip("\n"))
    return cells


class _ChapterImporter(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """把 ``mlbook.chapters.<章>`` 映射到 book/<部分>/<章>.md 的 export cell。"""

    prefix = __name__ + "."

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.prefix) or "." in fullname[len(self.prefix):]:
            return None
        md = chapter_sources().get(fullname[len(self.prefix):])
        if md is None:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=str(md))

    def create_module(self, spec):
        return None  # 用默认的模块对象

    def exec_module(self, module):
        md = Path(module.__spec__.origin)
        module.__file__ = str(md)
        cells = export_cells(md)
        if not cells:
            raise ImportError(f"{md} 里没有标 {EXPORT_TAG!r} 的代码 cell", name=module.__name__)
        for i, src in enumerate(cells):
            exec(compile(src, f"{md}:export[{i}]", "exec"), module.__dict__)


if not any(isinstance(f, _ChapterImporter) for f in sys.meta_path):
    sys.meta_path.insert(0, _ChapterImporter())


def load(name: str):
    """按章名（``softmax_cross_entropy``）或 ``部分/章`` 导入一章的 export 模块。"""
    stem = name.rsplit("/", 1)[-1]
    if stem not in chapter_sources():
        raise ModuleNotFoundError(f"没有这一章：{name}（book/ 下找不到 {stem}.md）", name=f"{__name__}.{stem}")
    return importlib.import_module(f"{__name__}.{stem}")


def __dir__():
    return sorted(chapter_sources())
