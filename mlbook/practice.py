"""手撕练习：由章节源文件生成练习版笔记本（练习版 .ipynb），从不手写。

练习版与章节的区别只有两处：

1. 本章 export cell 里的每个公开函数（以及类的公开方法和运算符方法）保留签名与 docstring，
   函数体换成 ``raise NotImplementedError("手撕：…")``；私有的检查函数（``_`` 开头）、
   从前面章节导入的函数都保持原样，所以每个练习版只要求写本章自己的函数；
2. 开头多一个说明 cell，并在 setup 之后调用 ``mlbook.practice_mode()``：检查失败时只打印一行
   “✗ 名称: 第一个不一致的元素 …”或“✗ 还没写：…”，而不是一整屏 traceback。

推导、检查（与参考实现的对照）、坏输入表都原样保留：读者填好函数体，从头运行，看每个检查是 ✓ 还是 ✗。

    python -m mlbook.practice            # 生成全部练习版到 _build/practice/
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import nbformat

from mlbook.chapters import EXPORT_TAG, chapter_sources
from mlbook.notebooks import BOOK, ROOT, _stable_ids, read_source

OUT = ROOT / "_build" / "practice"
MARK = "手撕："
# 这些特殊方法只是搭架子（构造、显示），保留；其余公开方法与运算符方法都要手写
_KEEP_DUNDERS = {"__init__", "__repr__", "__str__", "__post_init__", "__hash__", "__init_subclass__"}

INTRO = """\
```{{admonition}} 练习版（手撕）
:class: tip
这是“{title}”的练习版：本章要手写的 {n} 个函数只保留了签名和说明，函数体是 `raise NotImplementedError`。
逐个填好后**从头运行全部 cell**：每个检查都会与参考实现（PyTorch / scikit-learn / NumPy）对照，
通过时打印 ✓，不通过时打印 ✗ 和第一个不一致的元素。卡住时回到网站上的同名章节看推导。

要写的函数：{names}。
```
"""


def _blank_targets(tree: ast.Module) -> list[tuple[str, ast.FunctionDef]]:
    """(显示名, 函数节点)：顶层公开函数，及类里的公开方法与运算符方法。"""
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            out.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if not isinstance(item, ast.FunctionDef):
                    continue
                dunder = item.name.startswith("__") and item.name.endswith("__")
                if (dunder and item.name not in _KEEP_DUNDERS) or not item.name.startswith("_"):
                    out.append((f"{node.name}.{item.name}", item))
    return out


def blank_cell(src: str) -> tuple[str, list[str]]:
    """把一个 export cell 里要手写的函数体换成 raise NotImplementedError；返回新源码与函数名列表。"""
    tree = ast.parse(src)
    lines = src.splitlines()
    targets = _blank_targets(tree)
    # 从后往前替换，前面的行号不受影响
    for name, fn in sorted(targets, key=lambda t: t[1].lineno, reverse=True):
        body = fn.body
        doc = body[0]
        has_doc = isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)
        stub = " " * doc.col_offset + f'raise NotImplementedError("{MARK}{name}")'
        # 保留签名与 docstring，其后（到函数末尾）整段换成一行 raise
        first = doc.end_lineno + 1 if has_doc else doc.lineno
        lines[first - 1:fn.end_lineno] = [stub]
    return "\n".join(lines), [name for name, _ in targets]


def practice_notebook(md: Path) -> tuple[nbformat.NotebookNode, list[str]]:
    """由 book/<部分>/<章>.md 生成练习版笔记本（不执行）；返回笔记本与要手写的函数名。"""
    nb = read_source(md)
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    names: list[str] = []
    setup_done = False
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code" and EXPORT_TAG in cell.get("metadata", {}).get("tags", ()):
            cell.source, blanked = blank_cell(cell.source)
            names += blanked
        cells.append(cell)
        if cell.cell_type == "code" and not setup_done and "mlbook.setup(" in cell.source:
            cells.append(nbformat.v4.new_code_cell("mlbook.practice_mode()  # 检查失败时只打印一行 ✗"))
            setup_done = True
    if not setup_done:
        raise ValueError(f"{md.relative_to(ROOT)}：找不到调用 mlbook.setup() 的 cell")
    title = next((line[2:].strip() for c in nb.cells if c.cell_type == "markdown"
                  for line in c.source.splitlines() if line.startswith("# ")), md.stem)
    intro = INTRO.format(title=title, n=len(names), names="、".join(f"`{n}`" for n in names))
    nb.cells = [nbformat.v4.new_markdown_cell(intro), *cells]
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    _stable_ids(nb)
    return nb, names


def restore_solutions(practice: nbformat.NotebookNode, md: Path) -> nbformat.NotebookNode:
    """把本章的实现放回练习版（模拟读者全部写对）：export cell 按顺序换回源文件里的原样。"""
    originals = iter(c.source for c in read_source(md).cells
                     if c.cell_type == "code" and EXPORT_TAG in c.get("metadata", {}).get("tags", ()))
    nb = nbformat.from_dict(practice)
    for c in nb.cells:
        if c.cell_type == "code" and EXPORT_TAG in c.get("metadata", {}).get("tags", ()):
            c.source = next(originals)
    return nb


def practice_path(md: Path, out: Path = OUT) -> Path:
    return out / md.relative_to(BOOK).with_suffix(".ipynb")


def build_all(out: Path = OUT) -> list[Path]:
    written = []
    for md in chapter_sources().values():
        nb, names = practice_notebook(md)
        if not names:
            raise ValueError(f"{md.relative_to(ROOT)}：export cell 里没有要手写的公开函数")
        path = practice_path(md, out)
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        written.append(path)
    return written


ARCHIVE_NAME = "shousi-ml.zip"
README = """\
# 《手撕机器学习》离线包：使用说明

这个压缩包里有全书的笔记本和运行它们所需的一切：

- `notebooks/`：每一章带输出的笔记本（与网站上的内容相同）；
- `practice/`：每一章的练习版（手撕）：要写的函数只留签名和说明，检查会给你打 ✓ 或 ✗；
- `book/`：各章的 MyST 源文件（`mlbook.chapters` 从这里导入前面章节的实现）；
- `mlbook/`：各章共用的小模块；`requirements.txt`：固定版本的依赖。

## 第一次使用（需要 Python 3.11）

```bash
python3.11 -m venv .venv
.venv/bin/pip install -r requirements.txt     # torch 为 CPU 版 2.13.0
.venv/bin/pip install --no-deps -e .
.venv/bin/jupyter lab
```

Windows 上把 `.venv/bin/` 换成 `.venv\\Scripts\\`。

## 做练习

在 JupyterLab 里打开 `practice/<部分>/<章>.ipynb`，把每个 `raise NotImplementedError("手撕：…")`
换成你的实现，然后“Run All”。每个检查与 PyTorch / scikit-learn / NumPy 的参考实现对照：
通过打印 ✓，不通过打印 ✗ 和第一个不一致的元素。卡住了就打开 `notebooks/` 里的同名章节看推导。
"""

ARCHIVE_FILES = ["requirements.txt", "pyproject.toml", "jupytext.toml", "_toc.yml"]


def build_archive(dest: Path, practice_dir: Path | None = None) -> Path:
    """全部章节笔记本 + 练习版 + book/ 源文件 + mlbook + 依赖清单 + 使用说明，打成一个 zip。"""
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        practice_dir = practice_dir or Path(tmp)
        build_all(practice_dir)
        root = "shousi-ml"
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(f"{root}/使用说明.md", README)
            for name in ARCHIVE_FILES:
                z.write(ROOT / name, f"{root}/{name}")
            for folder in ("book", "notebooks", "mlbook"):
                for path in sorted((ROOT / folder).rglob("*")):
                    rel = path.relative_to(ROOT)
                    if path.is_file() and not any(p.startswith((".", "__pycache__")) for p in rel.parts):
                        z.write(path, f"{root}/{rel.as_posix()}")
            for path in sorted(practice_dir.rglob("*.ipynb")):
                z.write(path, f"{root}/practice/{path.relative_to(practice_dir).as_posix()}")
    return dest


def main(argv: list[str] | None = None) -> int:
    out = Path(argv[0]) if argv else OUT
    for path in build_all(out):
        print(f"  → {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    archive = build_archive(out / ARCHIVE_NAME, out)
    print(f"  → {archive.relative_to(ROOT) if archive.is_relative_to(ROOT) else archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
