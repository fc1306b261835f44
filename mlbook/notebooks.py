"""book/ 的 MyST 源文件 → notebooks/ 里带输出的 .ipynb（单向，从不反写源文件）。

    python -m mlbook.notebooks build            # 重新生成并执行所有与源文件不同步的笔记本
    python -m mlbook.notebooks build --force F  # 强制重建指定章节（F 为 book/ 下的 .md）
    python -m mlbook.notebooks check            # 只检查：同步、全部执行、无意外报错

判断“是否同步”只看内容（cell 类型、源码、标签与图注等元数据），不看时间戳。
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = ROOT / "notebooks"
FIX_HINT = "make notebook NB={md}"


def sources() -> list[Path]:
    """book/ 下所有页面的源文件（排序，保证输出稳定；跳过 .ipynb_checkpoints 等隐藏目录）。"""
    return sorted(p for p in BOOK.rglob("*.md") if not any(part.startswith(".") for part in p.relative_to(BOOK).parts))


def is_chapter(md: Path) -> bool:
    """首页与附录之外的页面都是章节：要求章节结构、公式、图、练习……"""
    return md.parent not in (BOOK, BOOK / "appendix")


def toc_files() -> list[str]:
    """_toc.yml 里按顺序出现的所有页面（root 在前），如 notebooks/a/b。_toc.yml 是全书唯一的章节清单。"""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc.get("parts", []))
    return files


def twin(md: Path) -> Path:
    """book/a/b.md → notebooks/a/b.ipynb"""
    return NOTEBOOKS / md.resolve().relative_to(BOOK).with_suffix(".ipynb")


def source_of(ipynb: Path) -> Path:
    """notebooks/a/b.ipynb → book/a/b.md"""
    return BOOK / ipynb.resolve().relative_to(NOTEBOOKS).with_suffix(".md")


def page_source(page: str) -> Path:
    """网站页面名（即 _toc.yml 里的 file，如 notebooks/a/b）→ book/a/b.md"""
    return source_of(ROOT / f"{page}.ipynb")


def page_title(md: Path) -> str:
    """源文件的一级标题（去掉行内代码的反引号：它们只是 Markdown 记号）。"""
    line = next(x for x in md.read_text(encoding="utf-8").splitlines() if x.startswith("# "))
    return line[2:].strip().replace("`", "")


# 执行或在 JupyterLab 里浏览时会变、但不属于源文件内容的 cell 元数据
_VOLATILE_METADATA = {"execution", "collapsed", "scrolled", "jupyter", "editable", "deletable", "trusted"}


def _signature(nb) -> list[tuple[str, str, str]]:
    """cell 类型、源码、元数据（标签、图注等）；比较源文件与笔记本是否同步时只看这些。"""
    return [
        (
            c.cell_type,
            c.source.strip(),
            json.dumps({k: v for k, v in c.get("metadata", {}).items() if k not in _VOLATILE_METADATA},
                       sort_keys=True, ensure_ascii=False),
        )
        for c in nb.cells
    ]


def read_source(md: Path):
    import jupytext  # 导入要 ~1.5 s：只在真正读写笔记本时才导入（各章导入别章时用不到）

    return jupytext.read(md, fmt="md:myst")


def sync_problem(md: Path) -> str | None:
    """源文件与其 .ipynb 不一致时返回原因，一致时返回 None。"""
    import nbformat

    ipynb = twin(md)
    if not ipynb.exists():
        return f"{ipynb.relative_to(ROOT)} 不存在"
    want = _signature(read_source(md))
    have = _signature(nbformat.read(ipynb, as_version=4))
    if want == have:
        return None
    for i, (w, h) in enumerate(zip(want, have)):
        if w != h:
            part, a, b = next((name, a, b) for name, a, b in zip(("类型", "源码", "元数据"), w, h) if a != b)
            k = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            lo = max(0, k - 20)
            return f"第 {i + 1} 个 cell 的{part}不同：源文件 …{a[lo:k + 40]!r} ≠ 笔记本 …{b[lo:k + 40]!r}"
    return f"cell 数不同：源文件 {len(want)} 个，笔记本 {len(have)} 个"


def execution_problems(nb) -> list[str]:
    """每个代码 cell 都必须按顺序执行过；报错只允许出现在标了 raises-exception 的 cell 里。"""
    problems = []
    expected = 1
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.execution_count != expected:
            problems.append(f"第 {i + 1} 个 cell 的 execution_count 为 {cell.execution_count}，应为 {expected}")
        expected += 1
        allowed = "raises-exception" in cell.get("metadata", {}).get("tags", ())
        for out in cell.get("outputs", []):
            if out.output_type == "error" and not allowed:
                problems.append(f"第 {i + 1} 个 cell 报错：{out.ename}: {out.evalue}")
    return problems


def _stable_ids(nb) -> None:
    """用源码的哈希做 cell id，避免每次重建都产生随机 id 的 diff。"""
    seen: dict[str, int] = {}
    for cell in nb.cells:
        base = hashlib.sha1(cell.source.encode()).hexdigest()[:8]
        n = seen.get(base, 0)
        seen[base] = n + 1
        cell.id = base if n == 0 else f"{base}-{n}"


def _code_signature(nb) -> list[tuple[str, str, str]]:
    return [s for s in _signature(nb) if s[0] == "code"]


def _reuse_outputs(nb, old) -> bool:
    """只改了文字（markdown cell）时，代码 cell 与已执行的笔记本完全相同：沿用它们的输出，不再执行。"""
    if _code_signature(nb) != _code_signature(old):
        return False
    old_code = iter(c for c in old.cells if c.cell_type == "code")
    for cell in nb.cells:
        if cell.cell_type == "code":
            prev = next(old_code)
            cell.outputs, cell.execution_count = prev.outputs, prev.execution_count
    return not execution_problems(nb)


def execute(nb, cwd: Path, timeout: int = 600):
    """在 cwd 下用 python3 内核执行笔记本（原地填入输出）。构建、确定性检查、基准都用它。"""
    from nbclient import NotebookClient

    os.environ.pop("MPLBACKEND", None)  # 内核用 inline 后端出图，见 tests/conftest.py
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def text_outputs(nb) -> list[str]:
    """每个代码 cell 的文本输出（stream、text/plain、报错信息）：比较“输出是否逐字节相同”时只看这些。

    相邻的同名 stream 输出合在一起比较：内核把 print 的内容分几块送出，分块的位置取决于时机，不属于输出本身。
    """
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts, last_stream = [], None
        for o in cell.get("outputs", []):
            if o.output_type == "stream" and last_stream == o.name:
                parts[-1] += o.text
                continue
            last_stream = o.name if o.output_type == "stream" else None
            if o.output_type == "stream":
                parts.append(f"[{o.name}]{o.text}")
            elif o.output_type in ("execute_result", "display_data"):
                parts.append(o.get("data", {}).get("text/plain", ""))
            elif o.output_type == "error":
                parts.append(f"{o.ename}: {o.evalue}")
        out.append("\n".join(parts))
    return out


def build(md: Path, timeout: int = 600, force: bool = True) -> Path:
    """读取源文件、在其目录下执行、写出 .ipynb。任何未预期的报错都会让构建失败。

    force=False 且只有文字变了（代码 cell 与现有笔记本逐一相同）时不执行，沿用现有输出。
    """
    import nbformat

    nb = read_source(md)
    out = twin(md)
    out.parent.mkdir(parents=True, exist_ok=True)
    nb.metadata.pop("jupytext", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    reused = not force and out.exists() and _reuse_outputs(nb, nbformat.read(out, as_version=4))
    if reused:
        print("  （只改了文字：沿用已执行的输出）", flush=True)
    elif any(c.cell_type == "code" for c in nb.cells):
        execute(nb, out.parent, timeout)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    _stable_ids(nb)
    problems = execution_problems(nb)
    if problems:
        raise RuntimeError(f"{md.relative_to(ROOT)}：\n  " + "\n  ".join(problems))
    nbformat.write(nb, out)
    return out


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(prog="python -m mlbook.notebooks")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="重新生成并执行笔记本")
    b.add_argument("--force", action="store_true", help="即使已同步也重建")
    b.add_argument("paths", nargs="*", type=Path, help="book/ 下的 .md；缺省为全部")
    sub.add_parser("check", help="检查同步与执行状态")
    args = parser.parse_args(argv)

    if args.cmd == "check":
        bad = 0
        for md in sources():
            msg = sync_problem(md)
            if msg is None:
                msg = "; ".join(execution_problems(nbformat.read(twin(md), as_version=4))) or None
            if msg:
                bad += 1
                print(f"✗ {md.relative_to(ROOT)}: {msg}\n  修复：{FIX_HINT.format(md=md.relative_to(ROOT))}")
        print(f"{len(sources()) - bad}/{len(sources())} 个源文件与笔记本一致")
        return 1 if bad else 0

    targets = [p.resolve() for p in args.paths] or sources()
    for md in targets:
        if not md.is_relative_to(BOOK) or md.suffix != ".md":
            parser.error(f"{md} 不是 book/ 下的 .md 源文件")
        if args.force or sync_problem(md):
            print(f"执行 {md.relative_to(ROOT)} …", flush=True)
            print(f"  → {build(md, force=args.force).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
