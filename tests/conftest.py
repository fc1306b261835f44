"""测试共用的夹具：整本书只构建一次（多个 xdist 进程共享同一次构建）。"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from mlbook.notebooks import ROOT

HTML = ROOT / "_build" / "html"

# nbval 启动的内核继承这个进程的环境；MPLBACKEND=Agg 之类的设置会让 plt.show() 不再输出图，
# 与提交的输出对不上。笔记本里的绘图一律走内核默认的 inline 后端。
os.environ.pop("MPLBACKEND", None)
BUILD_CMD = [
    str(Path(sys.executable).with_name("jupyter-book")),
    "build", str(ROOT), "--builder", "html", "--all",
    "--warningiserror", "--nitpick", "--keep-going",
]
# make test CH=… 只测一章：增量构建（只重建改过的页面），快得多
QUICK_BUILD_CMD = [a for a in BUILD_CMD if a != "--all"]


def pytest_addoption(parser):
    parser.addoption(
        "--chapter", default="",
        help="只测一章（make test CH=<部分>/<章>，多章用逗号分隔）：它的笔记本、测试文件、页面与各项静态检查",
    )


# 必须整组在同一个 xdist 进程里跑的测试：一个笔记本的所有 cell（共用一个内核）、
# 以及模块级夹具昂贵的文件（PDF 只打印一次、JupyterLab 只启动一次）。其余测试逐个分配给空闲的进程，
# 两个核一直都有活干（按文件分配时，一个大文件会让另一个核空等）。
_WHOLE_FILE = {"test_pdf.py", "test_lab.py"}


@pytest.hookimpl(optionalhook=True)  # 不用 xdist（-p no:xdist）时这个钩子不存在
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class BookScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if path.endswith(".ipynb") or Path(path).name in _WHOLE_FILE:
                return path
            return nodeid

    return BookScheduling(config, log)


# 需要系统工具才能重新执行的笔记本：没有该工具时跳过它的 nbval 比对（并说明怎么装），而不是报告输出不同
NEEDS_TOOL = {"cpp_erase_if.ipynb": ("g++", "没有 g++，附录 C++20 一页无法编译运行：sudo apt-get install g++")}


def pytest_collection_modifyitems(config, items):
    """--chapter 时只保留与这一章有关的测试：nodeid 里带章名的，以及不涉及具体章节的静态检查。"""
    import shutil

    for item in items:
        tool = NEEDS_TOOL.get(Path(str(item.fspath)).name)
        if tool and shutil.which(tool[0]) is None:
            item.add_marker(pytest.mark.skip(reason=tool[1]))
    chapter = config.getoption("chapter")
    if not chapter:
        return
    stems = []
    for one in chapter.split(","):  # 也可以一次测几章：CH=a/b,c/d
        one = one.strip().strip("/").removesuffix(".md")
        if not (ROOT / "book" / f"{one}.md").exists():
            raise pytest.UsageError(f"--chapter={one}：book/ 下没有这一章")
        stems.append(one.rsplit("/", 1)[-1])
    static = {"test_chapters.py", "test_notebooks.py"}
    keep, drop = [], []
    for item in items:
        path = Path(str(item.fspath))
        mine = any(stem in item.nodeid for stem in stems)
        cheap = path.name in static and "[" not in item.nodeid
        (keep if mine or cheap else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


@pytest.fixture(scope="session")
def site(tmp_path_factory, request) -> Path:
    """以 -W -n --keep-going 完整构建网站，返回 _build/html。构建失败（含任何警告）则测试失败。"""
    # xdist 下各进程的临时目录有共同的父目录（本次运行独有）；不用 xdist 时就用自己的临时目录
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if hasattr(request.config, "workerinput") else base
    record = shared / "site-build.json"
    with FileLock(str(shared / "site-build.lock")):
        if not record.exists():
            cmd = QUICK_BUILD_CMD if request.config.getoption("chapter") else BUILD_CMD
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            log = proc.stdout + proc.stderr
            record.write_text(json.dumps({"returncode": proc.returncode, "log": log[-20000:]}))
        result = json.loads(record.read_text())
    if result["returncode"] != 0:
        pytest.fail(f"网站构建失败（{' '.join(BUILD_CMD[1:])}）：\n{result['log'][-6000:]}")
    return HTML
