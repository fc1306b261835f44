"""手撕练习：每章的练习版由源文件生成；原样运行时在第一个检查处报“还没写”，放回本章实现后与章节完全一致；
离线包解压到空目录即可运行（不依赖仓库）。"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import zipfile

import nbformat
import pytest

from mlbook.chapters import EXPORT_TAG, chapter_sources
from mlbook.notebooks import read_source
from mlbook.practice import ARCHIVE_NAME, MARK, build_archive, practice_notebook, restore_solutions

CHAPTERS = chapter_sources()
IDS = sorted(CHAPTERS)


def code(nb):
    return [c.source for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("stem", IDS)
def test_practice_blanks_only_this_chapters_functions(stem):
    md = CHAPTERS[stem]
    nb, names = practice_notebook(md)
    assert names, f"{stem} 的练习版没有要手写的函数"
    blanked = []
    for c in nb.cells:
        if c.cell_type == "code" and EXPORT_TAG in c.metadata.get("tags", ()):
            for node in ast.walk(ast.parse(c.source)):
                if isinstance(node, ast.FunctionDef) and ast.unparse(node.body[-1]).startswith(
                    f"raise NotImplementedError('{MARK}"
                ):
                    body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
                    assert len(body) == 1, f"{node.name} 除了 raise 还留下了实现"
                    blanked.append(node.name)
    assert sorted(blanked) == sorted(n.rsplit(".", 1)[-1] for n in names)
    # 导入前面章节的行原样保留：练习版只要求写本章自己的函数
    for src in code(nb):
        assert "from mlbook.chapters." not in src or "NotImplementedError" not in src.split("from mlbook.chapters.")[0]


@pytest.mark.parametrize("stem", IDS)
def test_practice_with_solutions_put_back_is_the_chapter(stem):
    """放回本章实现后，代码与章节逐 cell 相同（只多一个 practice_mode 调用）；章节本身由 nbval 执行并比对。"""
    md = CHAPTERS[stem]
    nb, _ = practice_notebook(md)
    restored = [s for s in code(restore_solutions(nb, md)) if not s.startswith("mlbook.practice_mode()")]
    assert restored == code(read_source(md))


@pytest.mark.parametrize("stem", IDS)
def test_practice_as_generated_fails_with_not_implemented(stem):
    """原样执行练习版：第一个出错的 cell 报 NotImplementedError（手撕：…），而不是别的错误。"""
    import matplotlib

    matplotlib.use("Agg")
    nb, _ = practice_notebook(CHAPTERS[stem])
    ns: dict = {"__name__": f"practice_{stem}"}
    cwd = os.getcwd()
    os.chdir(CHAPTERS[stem].parent)
    try:
        for i, src in enumerate(code(nb)):
            lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines()]
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile("\n".join(lines), f"practice:{stem}:{i}", "exec"), ns)
            except NotImplementedError as e:
                assert str(e).startswith(MARK)
                return
            except Exception as e:  # noqa: BLE001
                pytest.fail(f"{stem} 练习版第 {i + 1} 个代码 cell 先报了 {type(e).__name__}: {e}，应先报“还没写”")
    finally:
        os.chdir(cwd)
        import matplotlib.pyplot as plt

        plt.close("all")
    pytest.fail(f"{stem} 的练习版原样运行没有任何检查失败：检查调用不到要手写的函数")


def _execute(path, cwd, env_root):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    probe = nbformat.v4.new_code_cell(
        "import mlbook, mlbook.chapters.softmax_cross_entropy as _m\n"
        f"assert mlbook.__file__.startswith({str(env_root)!r}), mlbook.__file__\n"
        f"assert _m.__file__.startswith({str(env_root)!r}), _m.__file__"
    )
    nb.cells.insert(0, probe)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(env_root)  # 内核只看得到解压出来的 mlbook 与 book/
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    return nb


def test_archive_runs_from_an_empty_directory(tmp_path):
    archive = build_archive(tmp_path / ARCHIVE_NAME)
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        z.extractall(tmp_path / "x")
    root = tmp_path / "x" / "shousi-ml"
    for must in ["使用说明.md", "requirements.txt", "pyproject.toml", "mlbook/__init__.py",
                 "mlbook/chapters/__init__.py", "notebooks/classification_losses/softmax_cross_entropy.ipynb",
                 "practice/classification_losses/softmax_cross_entropy.ipynb",
                 "book/classification_losses/softmax_cross_entropy.md"]:
        assert f"shousi-ml/{must}" in names, f"离线包缺少 {must}"
    assert len([n for n in names if n.startswith("shousi-ml/practice/")]) == len(CHAPTERS)
    # 一章：原样运行（Focal Loss 从两章前面的章节导入函数，离线包里的 book/ 必须供得上）
    chapter = root / "notebooks" / "classification_losses" / "focal_loss.ipynb"
    _execute(chapter, chapter.parent, root)
    # 一个练习版：放回本章实现（模拟读者写对），每个检查都通过
    practice = root / "practice" / "classification_losses" / "focal_loss.ipynb"
    md = root / "book" / "classification_losses" / "focal_loss.md"
    nbformat.write(restore_solutions(nbformat.read(practice, as_version=4), md), practice)
    nb = _execute(practice, practice.parent, root)
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "✗" not in outputs and outputs.count("✓") >= 5
