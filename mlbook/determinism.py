"""确定性：重新执行每个笔记本若干次，文本输出与提交的笔记本逐字节相同。

    python -m mlbook.determinism [--runs 3] [book/<部分>/<章>.md …]     # make determinism

nbval 比对前会清洗“max|Δ| = …”与内存地址；这里不清洗，检查的是同一台机器上重复执行的输出完全一致
（所有随机数都播了种、不打印耗时与路径）。只比较文本输出（图片的 PNG 字节随 matplotlib 版本变化，不在此列）。
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat

from mlbook.notebooks import ROOT, execute, read_source, sources, text_outputs, twin


def check(md: Path, runs: int) -> list[str]:
    committed = text_outputs(nbformat.read(twin(md), as_version=4))
    problems = []
    for run in range(1, runs + 1):
        nb = read_source(md)
        if not any(c.cell_type == "code" for c in nb.cells):
            return []
        got = text_outputs(execute(nb, twin(md).parent))
        for i, (a, b) in enumerate(zip(committed, got)):
            if a != b:
                k = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                problems.append(f"第 {run} 次执行，第 {i + 1} 个代码 cell 第 {k} 个字符起不同："
                                f"提交的 {a[k:k + 40]!r} ≠ 本次 {b[k:k + 40]!r}")
                break
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlbook.determinism")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args(argv)
    targets = [p.resolve() for p in args.paths] or sources()
    t0 = time.perf_counter()
    bad = 0
    for md in targets:
        t = time.perf_counter()
        problems = check(md, args.runs)
        bad += bool(problems)
        mark = "✗" if problems else "✓"
        print(f"{mark} {md.relative_to(ROOT)}（{args.runs} 次，{time.perf_counter() - t:.1f} s）", flush=True)
        for p in problems:
            print(f"    {p}")
    print(f"{len(targets) - bad}/{len(targets)} 个笔记本 {args.runs} 次重新执行的文本输出与提交的逐字节相同，"
          f"共 {time.perf_counter() - t0:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
