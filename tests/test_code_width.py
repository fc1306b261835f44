"""代码不出栏：book/ 下每个代码 cell 的每一行最多 77 列（东亚宽字符算 2 列）。

网页与 PDF 里代码块的宽度约 77 个等宽字符，再长就要横向滚动或被截断。
cell 开头的选项（``:tags:``、``---`` 之间的 YAML，如图注）不是代码，不计。
"""

from __future__ import annotations

import unicodedata

import pytest

from mlbook.notebooks import BOOK, read_source, sources

MAX_WIDTH = 77
PAGES = sources()


def display_width(line: str) -> int:
    """等宽字体下一行占的列数：东亚宽字符（W/F）占 2 列，其余占 1 列。"""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


def test_display_width():
    assert display_width("abc") == 3
    assert display_width("损失 loss") == 9
    assert display_width("（，）") == 6


@pytest.mark.parametrize("md", PAGES, ids=[str(p.relative_to(BOOK).with_suffix("")) for p in PAGES])
def test_code_lines_fit_the_column(md):
    text = md.read_text(encoding="utf-8").splitlines()
    at = 0  # 在源文件里顺序查找每一行，报告源文件的行号
    too_long = []
    for cell in read_source(md).cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            at = next((k for k in range(at, len(text)) if text[k] == line), at)
            w = display_width(line)
            if w > MAX_WIDTH:
                too_long.append(f"  第 {at + 1} 行：{w} 列  {line.strip()[:50]}")
    assert not too_long, (
        f"book/{md.relative_to(BOOK)} 有 {len(too_long)} 行代码超过 {MAX_WIDTH} 列"
        f"（东亚宽字符算 2 列）：\n" + "\n".join(too_long)
    )
