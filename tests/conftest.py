"""测试共用的夹具：整本书只构建一次（多个 xdist 进程共享同一次构建）。"""

from __future__ import annotations

import os

# 每个核上已经有一个 xdist 进程（外加它启动的内核、浏览器）：BLAS 与 OpenMP 再各开线程只会互相抢核、
# 空转等待。单线程时 nbval 与参考实现测试少用约三成 CPU（实测 173 → 140 CPU 秒），结果逐字节相同
# （torch 在各章里本来就由 mlbook.setup() 设为单线程）。xdist 进程与 nbval 的内核都继承这里的环境。
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from mlbook.notebooks import ROOT  # noqa: E402
from mlbook.testing import build_site_once, site_build_cmd  # noqa: E402

HTML = ROOT / "_build" / "html"

# nbval 启动的内核继承这个进程的环境；MPLBACKEND=Agg 之类的设置会让 plt.show() 不再输出图，
# 与提交的输出对不上。笔记本里的绘图一律走内核默认的 inline 后端。
os.environ.pop("MPLBACKEND", None)


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


def _run_order(item) -> int:
    """xdist 按收集顺序派活：用不到网站的排在前面（最长的几项打头），用到网站的排在最后，
    这样会话开始时的后台构建（pytest_sessionstart）与笔记本、参考实现测试同时进行，没有进程空等它。"""
    name = Path(str(item.fspath)).name
    if "site" in getattr(item, "fixturenames", ()):
        return 4 if name != "test_pdf.py" else 3
    if name in _WHOLE_FILE or "archive" in item.name:
        return 0
    return 1 if name.endswith(".ipynb") else 2


def pytest_collection_modifyitems(config, items):
    """排定运行顺序；--chapter 时只保留与这一章有关的测试：nodeid 里带章名的，以及不涉及具体章节的静态检查。"""
    import shutil

    for item in items:
        tool = NEEDS_TOOL.get(Path(str(item.fspath)).name)
        if tool and shutil.which(tool[0]) is None:
            item.add_marker(pytest.mark.skip(reason=tool[1]))
    items.sort(key=_run_order)  # 稳定排序：同一组内保持收集顺序（各 xdist 进程得到同样的顺序）
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


def _shared_dir(config) -> Path:
    """本次运行各进程共用的临时目录：xdist 进程的 basetemp 是控制进程 basetemp 下的 popen-gwN。"""
    base = config._tmp_path_factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


_BACKGROUND: list[subprocess.Popen] = []


def pytest_sessionstart(session):
    """控制进程一开始就在后台构建网站（用到网站的测试要等它；构建只占一个核）。"""
    config = session.config
    if hasattr(config, "workerinput") or config.getoption("collectonly"):
        return
    from _pytest.config import Config

    wanted = ("test_site", "test_browser", "test_pdf")
    if config.args_source != Config.ArgsSource.TESTPATHS and not config.getoption("chapter") and not any(
        w in arg for arg in config.args for w in wanted
    ):
        return  # 只跑了几个不用网站的测试文件：不必构建
    quick = ["--quick"] if config.getoption("chapter") else []
    _BACKGROUND.append(subprocess.Popen(
        [sys.executable, "-m", "mlbook.testing", str(_shared_dir(config)), *quick],
        cwd=ROOT, start_new_session=True,
    ))


def pytest_sessionfinish(session):
    for proc in _BACKGROUND:  # 测试提前结束（-x、Ctrl-C）时不留下构建进程
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="session")
def site(request) -> Path:
    """以 -W -n --keep-going 完整构建网站（整个运行只构建一次），返回 _build/html。构建失败（含任何警告）则测试失败。"""
    quick = bool(request.config.getoption("chapter"))
    result = build_site_once(_shared_dir(request.config), quick)
    if result["returncode"] != 0:
        pytest.fail(f"网站构建失败（{' '.join(site_build_cmd(quick)[1:])}）：\n{result['log'][-6000:]}")
    return HTML
