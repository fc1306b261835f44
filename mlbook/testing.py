"""tests/ 共用的小工具：float64 张量、可复现的随机输入、坏输入表。每个测试文件都从这里导入，不各写一份。

    from mlbook.testing import t64, seeded, assert_close, BadInput, bad_input_params

    BAD = [
        BadInput("logits 不是二维", lambda: ch.f(np.zeros(3)), match="logits"),
        ...
    ]

    @pytest.mark.parametrize("case", bad_input_params(BAD))
    def test_bad_inputs(case):
        case.check()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlbook import check_close, to_numpy

__all__ = [
    "t64",
    "seeded",
    "assert_close",
    "extreme_logits",
    "BadInput",
    "bad_input_params",
    "bad_input_catalogue",
    "describe_bad_input",
    "to_numpy",
]


def t64(x, requires_grad: bool = False):
    """数组 / 列表 / 标量 → float64 的 torch 张量（复制一份；requires_grad 时是叶子节点）。"""
    import torch

    return torch.tensor(np.asarray(x, dtype=np.float64), dtype=torch.float64, requires_grad=requires_grad)


def seeded(seed: int) -> np.random.Generator:
    """测试里的随机输入一律来自播过种的生成器：seeded(0).normal(size=(3, 4))。"""
    return np.random.default_rng(seed)


def assert_close(ours, ref, *, atol: float, rtol: float = 0.0, name: str = "") -> None:
    """与章节里 mlbook.check_close 同一个判据（|Δ| <= atol + rtol·|ref|，rtol 默认 0），但不打印。"""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        check_close(name or "对照", ours, ref, atol=atol, rtol=rtol)


def extreme_logits() -> dict[str, np.ndarray]:
    """各章共用的极端 logit：都是 (N, C) 的 float64 数组。"""
    return {
        "巨大正数": np.array([[1e308, 0.0, -1e308], [800.0, 799.0, 0.0]]),
        "巨大负数": np.array([[-1000.0, -1001.0, -1002.0], [-1e308, -1e308, 0.0]]),
        "全部并列": np.zeros((2, 4)),
        "单个类别": np.array([[3.0], [-7.0]]),
        "含 -inf": np.array([[-np.inf, 0.0, 1.0], [2.0, -np.inf, -np.inf]]),
    }


@dataclass(frozen=True)
class BadInput:
    """坏输入表的一行：调用 call() 应抛出 exc，且信息匹配 match（通常是出错参数的名字）。"""

    id: str
    call: Callable[[], object]
    match: str
    exc: type[BaseException] | tuple[type[BaseException], ...] = ValueError

    def check(self) -> None:
        import pytest

        with pytest.raises(self.exc, match=self.match):
            self.call()


def bad_input_params(cases: list[BadInput]):
    """BadInput 列表 → pytest.param 列表（测试 id 就是这一行的 id）。"""
    import pytest

    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"坏输入表里有重复的 id：{sorted(dup)}")
    return [pytest.param(c, id=c.id) for c in cases]


def bad_input_catalogue() -> dict[str, list[BadInput]]:
    """每章的坏输入表：tests/test_<章>.py 里所有 BadInput 列表，按 _toc.yml 的顺序（章名 → 各行）。

    “性能与复现”一页据此列出全书的坏输入目录，tests/test_bad_inputs.py 检查每章都有。
    """
    import importlib.util
    from pathlib import Path

    from mlbook.chapters import chapter_sources
    from mlbook.notebooks import toc_files

    tests = Path(__file__).resolve().parents[1] / "tests"
    chapters = chapter_sources()
    order = [f.rsplit("/", 1)[-1] for f in toc_files()]
    out: dict[str, list[BadInput]] = {}
    for stem in sorted(chapters, key=lambda s: order.index(s) if s in order else len(order)):
        path = tests / f"test_{stem}.py"
        rows: list[BadInput] = []
        if path.exists():
            spec = importlib.util.spec_from_file_location(f"_bad_inputs_of_{stem}", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            for value in vars(mod).values():
                if isinstance(value, list) and value and all(isinstance(v, BadInput) for v in value):
                    rows += value
        out[stem] = rows
    return out


def describe_bad_input(case: BadInput) -> tuple[str, str]:
    """执行一行坏输入，返回（异常类型名, 信息）；没有报错时返回 ("", "")。"""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.call()
    except Exception as e:  # noqa: BLE001  目录要记录任何异常
        return type(e).__name__, str(e)
    return "", ""


# ---- 网站只构建一次：测试会话一开始就在后台构建，用到网站的测试（排在最后）等它 ----

def site_build_cmd(quick: bool = False) -> list[str]:
    """严格构建网站（-W -n --keep-going）。quick（make test CH=…）时增量构建，只重建改过的页面。"""
    import sys
    from pathlib import Path

    from mlbook.notebooks import ROOT

    cmd = [
        str(Path(sys.executable).with_name("jupyter-book")), "build", str(ROOT), "--builder", "html",
        "--warningiserror", "--nitpick", "--keep-going",
    ]
    return cmd if quick else [*cmd, "--all"]


def build_site_once(shared, quick: bool = False) -> dict:
    """在 shared 目录里记一次构建结果（返回码与日志尾部）；已经有人构建过（或正在构建）就等它、直接用。

    文件锁跨进程有效：会话开始时的后台构建、以及各 xdist 进程里的 site 夹具，谁先拿到锁谁构建。
    """
    import json
    import subprocess
    from pathlib import Path

    from filelock import FileLock

    from mlbook.notebooks import ROOT

    shared = Path(shared)
    record = shared / "site-build.json"
    with FileLock(str(shared / "site-build.lock")):
        if not record.exists():
            proc = subprocess.run(site_build_cmd(quick), cwd=ROOT, capture_output=True, text=True)
            log = proc.stdout + proc.stderr
            record.write_text(json.dumps({"returncode": proc.returncode, "log": log[-20000:]}))
        return json.loads(record.read_text())


if __name__ == "__main__":  # python -m mlbook.testing <共享目录> [--quick]：测试会话的后台构建
    import sys

    build_site_once(sys.argv[1], quick="--quick" in sys.argv[2:])
