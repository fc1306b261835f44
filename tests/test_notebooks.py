"""笔记本与源文件：同步、全部执行、没有意外报错、与目录一一对应。

nbval 只会逐个 cell 重新执行并比对输出；它不会发现“源文件改了但笔记本没重建”，
也会悄悄跳过从未执行过的 cell。这里补上这些检查。
"""

from __future__ import annotations

import nbformat
import pytest

from mlbook.notebooks import (
    BOOK,
    FIX_HINT,
    NOTEBOOKS,
    ROOT,
    execution_problems,
    is_chapter,
    source_of,
    sources,
    sync_problem,
    toc_files,
    twin,
)

SOURCES = sources()
IDS = [str(p.relative_to(BOOK)) for p in SOURCES]
CHAPTERS = [p for p in SOURCES if is_chapter(p)]


def test_there_are_chapters():
    assert len(SOURCES) >= 3, "book/ 下应至少有首页与附录"


@pytest.mark.parametrize("md", SOURCES, ids=IDS)
def test_source_and_notebook_in_sync(md):
    problem = sync_problem(md)
    assert problem is None, f"{problem}\n修复：{FIX_HINT.format(md=md.relative_to(ROOT))}"


@pytest.mark.parametrize("md", SOURCES, ids=IDS)
def test_every_code_cell_executed_in_order(md):
    nb = nbformat.read(twin(md), as_version=4)
    problems = execution_problems(nb)
    assert not problems, "\n".join(problems) + f"\n修复：{FIX_HINT.format(md=md.relative_to(ROOT))}"


def test_no_orphan_notebooks():
    orphans = [
        p.relative_to(ROOT)
        for p in NOTEBOOKS.rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts and not source_of(p).exists()
    ]
    assert not orphans, f"这些笔记本没有 book/ 下的源文件：{orphans}"


def test_toc_matches_sources():
    in_toc = set(toc_files())
    expected = {f"notebooks/{p.relative_to(BOOK).with_suffix('').as_posix()}" for p in SOURCES}
    assert in_toc - expected == set(), f"_toc.yml 里有不存在的源文件：{sorted(in_toc - expected)}"
    assert expected - in_toc == set(), f"这些源文件没有写进 _toc.yml：{sorted(expected - in_toc)}"


@pytest.mark.parametrize("md", CHAPTERS, ids=[str(p.relative_to(BOOK)) for p in CHAPTERS])
def test_chapter_shape(md):
    """每章都有规定的小节、至少一个 export cell、一个检查和一个练习。"""
    text = md.read_text(encoding="utf-8")
    for heading in ["本节目标", "定义与推导", "从零实现", "检查", "常见错误", "可视化", "小结", "练习", "参考"]:
        assert f"\n## {heading}" in text, f"{md.name} 缺少小节“{heading}”"
    assert "import mlbook" in text and "mlbook.setup(" in text, "第一个代码 cell 应调用 mlbook.setup()"
    assert ":tags: [export" in text or "- export" in text, "至少一个实现 cell 应打 export 标签供测试使用"
    assert "check_close(" in text, "应有可见的参考实现对照 cell"
    assert "```{exercise}" in text and "```{solution}" in text, "应有练习与折叠答案"
    assert "{cite}" in text, "应至少引用一篇文献"
    assert "{term}" in text, "应至少链接一个术语"
    assert "name: fig-" in text, "应至少有一张带名字的图"
