"""章节之间的规则：复用靠导入、导出的名字全书唯一、只从前面的章导入、标签带章节前缀。

一章复用前面一章的实现只有一种写法：``from mlbook.chapters.<章> import <名字>``（见 mlbook/chapters）。
这里静态地检查所有章节的源文件（不执行代码），保证这条路是唯一的路。
"""

from __future__ import annotations

import ast
import re
from functools import cache

import pytest

from mlbook.chapters import chapter_sources, export_cells
from mlbook.notebooks import BOOK, ROOT, read_source, sources, toc_files

CHAPTERS = chapter_sources()
IDS = sorted(CHAPTERS)
PREFIX = "mlbook.chapters."


def toc_order() -> list[str]:
    """_toc.yml 里章节的顺序（章名）。"""
    return [f.rsplit("/", 1)[-1] for f in toc_files() if f.rsplit("/", 1)[-1] in CHAPTERS]


@cache
def code_cells(stem: str) -> list[tuple[bool, str]]:
    """(是否 export, 源码)，按顺序；去掉 IPython 魔法行后可被 ast 解析。"""
    cells = []
    for c in read_source(CHAPTERS[stem]).cells:
        if c.cell_type != "code":
            continue
        src = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in c.source.splitlines())
        cells.append(("export" in c.get("metadata", {}).get("tags", ()), src))
    return cells


def chapter_imports(stem: str) -> list[tuple[str, list[str]]]:
    """本章所有代码 cell 里对 mlbook.chapters.<章> 的导入：[(章, [名字…])]。"""
    found = []
    for _, src in code_cells(stem):
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith(PREFIX):
                    found.append((node.module[len(PREFIX):], [a.name for a in node.names]))
                elif node.module == PREFIX[:-1]:
                    found.extend((a.name, []) for a in node.names)
            elif isinstance(node, ast.Import):
                found.extend((a.name[len(PREFIX):], []) for a in node.names if a.name.startswith(PREFIX))
    return found


@cache
def exported_names(stem: str) -> set[str]:
    """export cell 顶层定义的名字（函数、类、赋值），不含导入进来的名字。"""
    names = set()
    for src in export_cells(CHAPTERS[stem]):
        for node in ast.parse(src).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return {n for n in names if not n.startswith("__")}


def chapter_label(stem: str) -> str:
    m = re.search(r"^\(([a-z0-9-]+)\)=\s*$", CHAPTERS[stem].read_text(encoding="utf-8"), re.M)
    assert m, f"{stem}.md 的标题前应有章节标签 (label)="
    return m.group(1)


def test_chapter_names_are_unique():
    stems = [md.stem for md in sources()]
    assert len(stems) == len(set(stems)), "book/ 下的文件名必须全书唯一（mlbook.chapters.<章> 按文件名导入）"


@pytest.mark.parametrize("stem", IDS)
def test_imports_only_from_earlier_chapters(stem):
    order = toc_order()
    for src, names in chapter_imports(stem):
        assert src in CHAPTERS, f"{stem} 导入了不存在的章 {src}"
        assert order.index(src) < order.index(stem), (
            f"{stem} 从 {src} 导入，但 {src} 在 _toc.yml 里排在它后面：只能从前面的章导入"
        )
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{stem} 从 {src} 导入了私有名字 {private}：只导入公开的函数、类与常量"
        missing = set(names) - exported_names(src)
        assert not missing, (
            f"{stem} 从 {src} 导入的 {sorted(missing)} 不是 {src} 的 export cell 里定义的名字"
            "（只能导入 export cell 里的函数、类与常量）"
        )


@pytest.mark.parametrize("stem", IDS)
def test_imported_chapters_are_linked_from_the_page(stem):
    text = CHAPTERS[stem].read_text(encoding="utf-8")
    for src in {s for s, _ in chapter_imports(stem)}:
        label = chapter_label(src)
        assert re.search(rf"\{{ref\}}`([^`<]*<)?{re.escape(label)}>?`", text), (
            f"{stem} 导入了 {src} 的实现，正文应链接到推导它的地方：{{ref}}`{label}`"
        )


def test_no_exported_name_defined_in_two_chapters():
    where: dict[str, list[str]] = {}
    for stem in IDS:
        for name in exported_names(stem) - {n for n in exported_names(stem) if n.startswith("_")}:
            where.setdefault(name, []).append(stem)
    dup = {n: s for n, s in where.items() if len(s) > 1}
    assert not dup, f"这些导出的名字在多章里定义（应从第一章导入）：{dup}"


@pytest.mark.parametrize("stem", IDS)
def test_export_cells_only_import_and_define(stem):
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
    for i, src in enumerate(export_cells(CHAPTERS[stem])):
        for node in ast.parse(src).body:
            is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            assert isinstance(node, allowed) or is_docstring, (
                f"{stem} 第 {i + 1} 个 export cell 第 {node.lineno} 行是 {type(node).__name__}："
                "export cell 只放 import 与定义（打印、画图放到别的 cell）"
            )


@pytest.mark.parametrize("stem", IDS)
def test_nothing_reaches_non_export_cells(stem):
    """导入得到的模块只有 export cell 里的名字：非 export cell 定义的变量导入不到。"""
    import importlib

    module = importlib.import_module(PREFIX + stem)
    only_elsewhere = set()
    for is_export, src in code_cells(stem):
        if not is_export:
            for node in ast.parse(src).body:
                if isinstance(node, ast.Assign):
                    only_elsewhere |= {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    leaked = {n for n in only_elsewhere - exported_names(stem) if hasattr(module, n)}
    # export cell 里 import 进来的名字（np、torch……）不算泄漏
    leaked = {n for n in leaked if not _imported_in_exports(stem, n)}
    assert not leaked, f"{stem} 的非 export cell 里的 {sorted(leaked)} 出现在了导入的模块里"


def _imported_in_exports(stem: str, name: str) -> bool:
    for src in export_cells(CHAPTERS[stem]):
        for node in ast.parse(src).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                    return True
    return False


def test_tests_and_bench_use_the_import_mechanism():
    """tests/ 与 mlbook/ 不自己去执行 book/ 里的代码：章节只经由 mlbook.chapters 导入。"""
    offenders = []
    for path in [*(ROOT / "tests").glob("*.py"), *(ROOT / "mlbook").glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        if path.name != "test_chapters.py" and re.search(r"load_chapter|export_cells\(|read_source\(.*\bexec\(", text):
            offenders.append(path.relative_to(ROOT).as_posix())
    assert not offenders, f"这些文件绕过了 mlbook.chapters：{offenders}"


LABEL = re.compile(r"\((eq|fig|tbl|ex)-([a-z0-9-]+)\)|name: (fig|tbl)-([a-z0-9-]+)|:label: (ex|eq)-([a-z0-9-]+)")


def chapter_prefix(stem: str) -> str:
    """章节前缀：章节标签的第一个词（softmax-cross-entropy → softmax）。"""
    return chapter_label(stem).split("-")[0]


def test_chapter_prefixes_are_unique():
    prefixes = [chapter_prefix(s) for s in IDS]
    dup = {p for p in prefixes if prefixes.count(p) > 1}
    assert not dup, f"章节标签的第一个词是该章所有 eq-/fig-/ex- 标签的前缀，必须全书唯一：{dup}"


@pytest.mark.parametrize("stem", IDS)
def test_labels_carry_the_chapter_prefix(stem):
    prefix = chapter_prefix(stem)
    text = CHAPTERS[stem].read_text(encoding="utf-8")
    bad = []
    for m in LABEL.finditer(text):
        kind, rest = next((k, r) for k, r in zip(m.groups()[::2], m.groups()[1::2]) if k)
        if not (rest == prefix or rest.startswith(prefix + "-")):
            bad.append(f"{kind}-{rest}")
    assert not bad, f"{stem} 的标签应以 <类型>-{prefix}- 开头（{prefix} 来自章节标签）：{bad}"


def test_every_page_is_under_book():
    assert all(md.is_relative_to(BOOK) for md in CHAPTERS.values())


RAW_LABEL = re.compile(r"\b(?:eq|fig|ex)-[a-z][A-Za-z0-9_-]*")


@pytest.mark.parametrize("stem", IDS)
def test_no_raw_labels_where_they_are_not_rendered(stem):
    """代码、输出与图注里的 "式 (eq-…)" 原样显示给读者：那里只能用文字描述公式，不能写标签。"""
    bad = []
    for _export, src in code_cells(stem):
        bad += [line.strip() for line in src.splitlines() if RAW_LABEL.search(line)]
    text = CHAPTERS[stem].read_text(encoding="utf-8")
    captions = [line for line in text.splitlines() if line.lstrip().startswith("caption:")]
    bad += [line.strip() for line in captions if RAW_LABEL.search(line)]
    assert not bad, f"{stem}：代码或图注里有读者看不到编号的标签：{bad}"


@pytest.mark.parametrize("stem", IDS)
def test_light_export_reader_agrees_with_jupytext(stem):
    """mlbook.chapters 不经 jupytext 直接读 export cell（快）：读出的必须与 jupytext 一字不差。"""
    want = [c.source for c in read_source(CHAPTERS[stem]).cells
            if c.cell_type == "code" and "export" in c.get("metadata", {}).get("tags", ())]
    assert export_cells(CHAPTERS[stem]) == want
