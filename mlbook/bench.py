"""性能基准：`make bench`。性能目标写在这里，而不是写成计时的测试。

一次运行打印一张表，并把结果追加到 book/appendix/data/bench.json（保留历次提交的运行，慢了看得出来）；
“性能与复现”一页读这个文件画表和图。

    python -m mlbook.bench              # 章节执行时间 + 实现与参考实现的对照（几分钟）
    python -m mlbook.bench --pipeline   # 另加：全新环境、冷构建、改一章后的增量构建、make test 的耗时

每项取若干次中最快的一次；与参考实现在同一次运行里并列，给出比值（本书 / 参考）。
目标按 2 核 CPU 设定；检查的是复杂度与数量级，而不是微秒级差异。未达到目标时退出码为 1。
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mlbook.notebooks import ROOT, execute, is_chapter, read_source, sources, twin

DATA = ROOT / "book" / "appendix" / "data" / "bench.json"


@dataclass
class Row:
    group: str            # 表里的分组：流水线 / 章节执行 / 实现对照 / 扩展性
    name: str
    ours: float           # 秒（或字节，见 unit）
    ref: float | None = None
    target: float | None = None
    unit: str = "s"
    n: int | None = None  # 扩展性曲线的横坐标

    @property
    def ok(self) -> bool:
        return self.target is None or self.ours <= self.target


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "torch": torch.__version__, "system": platform.platform(terse=True),
        "load": round(os.getloadavg()[0], 1),  # 开始时的 1 分钟平均负载：别的进程在抢 CPU 时数字偏大
    }


# ---------------------------------------------------------------------------------------------- 流水线
def _run(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


def pipeline_rows() -> list[Row]:
    rows = []
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        t = _run([py, "-m", "venv", str(venv)])
        t += _run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", str(ROOT / "requirements.txt")])
        rows.append(Row("流水线", "全新环境（venv + pip install，本机 pip 缓存）", t, target=600))
    jb = str(Path(py).with_name("jupyter-book"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [jb, "build", str(ROOT), "--builder", "html", "--path-output", tmp, "-W", "-n", "--keep-going"]
        rows.append(Row("流水线", "冷构建网站（全部页面）", _run(cmd, env=env), target=120))
        chapter = twin(next(md for md in sources() if md.parent.name != "appendix" and md.parent.name != "book"))
        chapter.touch()
        rows.append(Row("流水线", "改一章后的增量构建", _run(cmd, env=env), target=15))
    rows.append(Row("流水线", "make test", _run(["make", "test"], cwd=ROOT), target=180))
    return rows


# ---------------------------------------------------------------------------------------------- 章节
def chapter_rows() -> list[Row]:
    import nbformat  # noqa: F401  （execute 需要）

    rows = []
    for md in sources():
        if not is_chapter(md):  # 附录页（其中“性能与复现”读的正是本文件）不计
            continue
        nb = read_source(md)
        if not any(c.cell_type == "code" for c in nb.cells):
            continue
        t0 = time.perf_counter()
        execute(nb, twin(md).parent)
        rows.append(Row("章节执行", md.relative_to(ROOT / "book").with_suffix("").as_posix(),
                        time.perf_counter() - t0, target=10.0))
    return sorted(rows, key=lambda r: -r.ours)


# ---------------------------------------------------------------------------------------------- 实现对照
def _have(name: str):
    from mlbook import chapters

    try:
        return chapters.load(name)
    except ModuleNotFoundError:
        return None


def implementation_rows() -> list[Row]:
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    rows: list[Row] = []

    sm = _have("softmax_cross_entropy")
    z = rng.normal(size=(4096, 1000))
    t = rng.integers(0, 1000, size=4096)
    zt, tt = torch.as_tensor(z), torch.as_tensor(t)
    rows.append(Row("实现对照", "softmax（4096×1000）vs torch.softmax", best_of(lambda: sm.softmax(z)),
                    best_of(lambda: torch.softmax(zt, -1)), 1.0))
    rows.append(Row("实现对照", "cross_entropy（4096×1000）vs F.cross_entropy",
                    best_of(lambda: sm.cross_entropy(z, t)), best_of(lambda: F.cross_entropy(zt, tt)), 1.5))

    roc = _have("roc_pr_auc")
    for n in (1_000_000, 10_000_000):
        y = rng.integers(0, 2, size=n)
        s = np.round(rng.normal(size=n) + y, 3)  # 有大量并列
        rows.append(Row("实现对照", f"roc_auc_score 秩公式 n={n:.0e} vs sklearn",
                        best_of(lambda y=y, s=s: roc.roc_auc_score(y, s), 2),
                        best_of(lambda y=y, s=s: roc_auc_score(y, s), 2), 3.0 * n / 1e6))
        rows.append(Row("实现对照", f"一次 np.argsort(s) n={n:.0e}（排序法 AUC 的下限）",
                        best_of(lambda s=s: np.argsort(s, kind="stable"), 2)))
    for n in (100, 300, 1_000, 3_000, 10_000):
        y = rng.integers(0, 2, size=n)
        y[:2] = [0, 1]
        s = rng.normal(size=n) + y
        rows.append(Row("扩展性", "auc_pairwise O(n²)", best_of(lambda y=y, s=s: roc.auc_pairwise(y, s)), n=n))
        rows.append(Row("扩展性", "roc_auc_score 秩公式 O(n log n)",
                        best_of(lambda y=y, s=s: roc.roc_auc_score(y, s)), n=n))

    rows += _autograd_rows()

    rows += _optional_rows(rng)
    return rows


_CHAIN = """
import gc, sys, time
from mlbook.chapters.autograd_mlp import {cls} as V
sys.setrecursionlimit(10**6)
{gc}
t0 = time.perf_counter()
x = V(0.5); y = x
for _ in range({ops} // 2):
    y = y + x * 0.0
t1 = time.perf_counter(); y.backward(); t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def _autograd_rows() -> list[Row]:
    """10⁵ 个运算的链（连同常数约 1.5·10⁵ 个节点），每种情形在新进程里跑：

    前向的耗时大半来自分代垃圾回收在图变大时的全量扫描，进程里已有多少对象会影响它。
    """
    rows, ops = [], 100_000
    for cls, label in (("Value", "加固版 Value"), ("MiniValue", "面试版 MiniValue")):
        for gc_on in (True, False):
            code = _CHAIN.format(cls=cls, ops=ops, gc="" if gc_on else "gc.disable()")
            runs = []
            for _ in range(2):
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
                runs.append([float(v) for v in out.stdout.split()])
            fwd, bwd = min(r[0] for r in runs), min(r[1] for r in runs)
            tag = "回收开启" if gc_on else "回收关闭"
            target = 1.0 if (cls == "Value" and gc_on) else None
            rows.append(Row("实现对照", f"{label}：10⁵ 个运算的前向 + 反向（{tag}）", fwd + bwd, target=target))
            if gc_on:
                rows.append(Row("实现对照", f"{label}：反向每个节点", bwd / (1.5 * ops) * 1e6, unit="µs"))
    return rows


def _optional_rows(rng) -> list[Row]:
    """后写成的章节：存在时才加入对照（各章的名字见 CONTRIBUTING 的“谁拥有哪个名字”）。"""
    import torch

    rows: list[Row] = []
    bn = _have("batchnorm_layernorm")
    if bn is not None and hasattr(bn, "layer_norm"):
        x = rng.normal(size=(256, 64, 128))
        xt = torch.as_tensor(x)
        rows.append(Row("实现对照", "layer_norm（256×64×128）vs F.layer_norm",
                        best_of(lambda: bn.layer_norm(x, (128,))),
                        best_of(lambda: torch.nn.functional.layer_norm(xt, (128,)))))
    if bn is not None and hasattr(bn, "batch_norm"):
        x = rng.normal(size=(256, 64, 128))
        xt = torch.as_tensor(x)
        rm, rv = np.zeros(64), np.ones(64)
        rmt, rvt = torch.zeros(64, dtype=torch.float64), torch.ones(64, dtype=torch.float64)
        rows.append(Row("实现对照", "batch_norm 训练模式（256×64×128）vs F.batch_norm",
                        best_of(lambda: bn.batch_norm(x, rm, rv, training=True)),
                        best_of(lambda: torch.nn.functional.batch_norm(xt, rmt, rvt, training=True))))
    opt = _have("optimizers")
    if opt is not None and hasattr(opt, "Adam"):
        p, g = rng.normal(size=10**6), rng.normal(size=10**6)
        pt = torch.tensor(p, requires_grad=True)
        pt.grad = torch.as_tensor(g)
        ours, ref = opt.Adam([p.copy()], lr=1e-3), torch.optim.Adam([pt], lr=1e-3)
        rows.append(Row("实现对照", "Adam 一步（10⁶ 个参数）vs torch.optim.Adam",
                        best_of(lambda: ours.step([g])), best_of(ref.step)))
    attn = _have("self_attention")
    if attn is not None and hasattr(attn, "scaled_dot_product_attention"):
        q = rng.normal(size=(4, 8, 512, 64))
        qt = torch.as_tensor(q)
        rows.append(Row("实现对照", "scaled_dot_product_attention（4×8×512×64）vs SDPA",
                        best_of(lambda: attn.scaled_dot_product_attention(q, q, q)),
                        best_of(lambda: torch.nn.functional.scaled_dot_product_attention(qt, qt, qt))))
    fa = _have("flash_attention")
    if fa is not None and attn is not None and hasattr(fa, "flash_attention_forward"):
        rows += _flash_rows(rng, fa, attn)
    return rows


def _peak_bytes(fn) -> float:
    """fn() 期间 NumPy 额外分配的内存峰值（tracemalloc 记录 NumPy 的数组缓冲区）。"""
    import tracemalloc

    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return float(peak)


def _flash_rows(rng, fa, attn) -> list[Row]:
    """分块注意力 vs 朴素注意力：T 增大时的额外内存峰值（MiB），以及与 torch SDPA 的耗时。"""
    import torch

    rows = []
    for T in (1024, 4096):
        q = rng.normal(size=(1, T, 64))
        qt = torch.as_tensor(q)

        def tiled(q=q):
            return fa.flash_attention_forward(q, q, q, block_size_q=128, block_size_k=128)

        rows.append(Row("实现对照", f"FlashAttention 分块前向 T={T}：额外内存峰值 vs 朴素注意力",
                        _peak_bytes(tiled) / 2**20, _peak_bytes(lambda q=q: attn.attention_naive(q, q, q)) / 2**20,
                        unit="MiB"))
        rows.append(Row("实现对照", f"FlashAttention 分块前向 T={T}（NumPy）vs SDPA",
                        best_of(tiled, 1),
                        best_of(lambda qt=qt: torch.nn.functional.scaled_dot_product_attention(qt, qt, qt), 2)))
    return rows


# ---------------------------------------------------------------------------------------------- 输出
def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"
    return f"{v:.3g} {unit}"


def print_table(rows: list[Row]) -> None:
    group = None
    for r in rows:
        if r.group != group:
            group = r.group
            print(f"\n== {group} ==")
        ratio = f"{r.ours / r.ref:6.2f}×" if r.ref else "       "
        target = f"≤ {_fmt(r.target, r.unit)}" if r.target is not None else ""
        name = r.name + (f" (n={r.n:,})" if r.n else "")
        print(f"{'✓' if r.ok else '✗'} {name}\n    本书 {_fmt(r.ours, r.unit):>10}   参考 {_fmt(r.ref, r.unit):>10}"
              f"   比值 {ratio}   {target}")


def save(rows: list[Row], data: Path = DATA) -> None:
    history = json.loads(data.read_text(encoding="utf-8")) if data.exists() else {"runs": []}
    history["runs"].append({
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "rows": [asdict(r) for r in rows],
    })
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(json.dumps(history, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- 页面
# “性能与复现”一页（book/appendix/performance.md）用这些函数把 bench.json 画成表和图。
def load_runs(data: Path = DATA) -> list[dict]:
    return json.loads(data.read_text(encoding="utf-8"))["runs"]


def _html_table(head: list[str], rows: list[list[str]]):
    from IPython.display import HTML

    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return HTML(f"<table class='table'><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>")


def results_table(run: dict):
    rows = []
    for r in (Row(**d) for d in run["rows"] if d["group"] != "扩展性"):
        ratio = f"{r.ours / r.ref:.2f}×" if r.ref else ""
        target = "" if r.target is None else "≤ " + _fmt(r.target, r.unit)
        rows.append([r.group, r.name, _fmt(r.ours, r.unit), _fmt(r.ref, r.unit), ratio, target, "✓" if r.ok else "✗"])
    return _html_table(["分组", "项目", "本书", "参考", "比值", "目标", ""], rows)


def history_table(runs: list[dict], names: list[str]):
    rows = []
    for run in runs:
        vals = {d["name"]: d for d in run["rows"]}
        cells = [_fmt(vals[k]["ours"], vals[k]["unit"]) if k in vals else "—" for k in names]
        rows.append([run["date"], f"{run['machine']['cores']} 核", *cells])
    return _html_table(["日期", "机器", *names], rows)


def series(run: dict, group: str, name: str | None = None) -> list[Row]:
    return [Row(**d) for d in run["rows"] if d["group"] == group and (name is None or d["name"] == name)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlbook.bench")
    parser.add_argument("--pipeline", action="store_true", help="另测全新环境、冷/增量构建与 make test（约 10 分钟）")
    parser.add_argument("--no-chapters", action="store_true", help="不重新执行各章")
    parser.add_argument("--no-save", action="store_true", help=f"不写 {DATA.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if shutil.which("make") is None and args.pipeline:
        parser.error("--pipeline 需要 make")
    rows: list[Row] = []
    if args.pipeline:
        rows += pipeline_rows()
    if not args.no_chapters:
        rows += chapter_rows()
    rows += implementation_rows()
    print_table(rows)
    if not args.no_save:
        save(rows)
        print(f"\n已追加到 {DATA.relative_to(ROOT)}（共 {len(json.loads(DATA.read_text())['runs'])} 次运行）")
        # “性能与复现”一页的输出来自这个文件：重新执行它，提交时两者一致（nbval 才能通过）
        from mlbook.notebooks import build

        build(ROOT / "book" / "appendix" / "performance.md")
    failed = [r.name for r in rows if not r.ok]
    if failed:
        print(f"\n未达到目标：{failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
