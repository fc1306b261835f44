"""整本书的 PDF：拼页、打印与读回检查。

整本（六百多页）由 make book / make pdf 打印，并由同一个 pdf_problems 读回检查，不合格则构建失败。
这里为了让 make test 保持在几分钟内：拼接整本书的打印页并检查它的链接与结构（不打印），
再用同一套流程打印样张（首页与代码行最长的一章）并读回检查。
"""

from __future__ import annotations

import collections
import re
import shutil

import pytest

from mlbook.chapters import chapter_sources
from mlbook.notebooks import page_source, page_title, toc_files
from mlbook.pdf import (
    bookmarks,
    build_pdf,
    combined_html,
    find_chromium,
    longest_code_line,
    pdf_problems,
    squash,
    undoubled,
)

needs_printer = pytest.mark.skipif(
    find_chromium() is None or shutil.which("pdftotext") is None,
    reason="需要 Chromium 与 pdftotext：sudo apt-get install chromium fonts-noto-cjk poppler-utils（.ci/run 会安装）",
)


def sample_pages() -> list[str]:
    pages = toc_files()
    line = longest_code_line(list(chapter_sources().values()))
    owner = next(p for p in pages if line in page_source(p).read_text(encoding="utf-8"))
    return list(dict.fromkeys([pages[0], owner]))


def test_whole_book_print_page_links_resolve(site):
    """整本书拼成一页后：每页都在、按 _toc.yml 的顺序，每章的标题都在，每个页内链接恰好指向一个 id。"""
    html = combined_html(site)
    starts = [html.index(f'id="page-{p.replace("/", "-")}"') for p in toc_files()]
    assert starts == sorted(starts), "打印页的顺序应与 _toc.yml 一致"
    h1s = [squash(re.sub(r"<[^>]+>|#", "", h)) for h in re.findall(r"<h1>(.*?)</h1>", html, re.S)]
    for page in toc_files():
        assert any(h.endswith(squash(page_title(page_source(page)))) for h in h1s), f"打印页里没有 {page} 的标题"
    ids = collections.Counter(re.findall(r'\bid="([^"]+)"', html))
    links = re.findall(r'href="#([^"]+)"', html)
    assert len(links) > 1000
    broken = sorted({x for x in links if ids[x] != 1})
    assert broken == [], f"打印页里指向不存在或重复 id 的链接：{broken[:10]}"


@pytest.mark.parametrize(("printed", "meant"), [
    ("1.4. 1.4. 检查检查", "1.4. 检查"),
    ("全书地图全书地图", "全书地图"),
    ("1.2.3. 1.2.3. Sigmoid、tanh 与 SoftplusSigmoid、tanh 与 Softplus", "1.2.3. Sigmoid、tanh 与 Softplus"),
    # 标题折行时只有第一行重复
    ("4.4.2. 4.4.2. 秩亏：lstsq 给秩亏：lstsq 给出最小范数解", "4.4.2. 秩亏：lstsq 给出最小范数解"),
    ("1.1. 本节目标", "1.1. 本节目标"),
    ("10.2.1. Softmax", "10.2.1. Softmax"),
    ("手撕机器学习 — 手撕机器学习", "手撕机器学习 — 手撕机器学习"),
    ("哈哈", "哈哈"),
])
def test_bookmark_written_twice_is_restored(printed, meant):
    """Chromium 给从新一页开头的标题写书签时，第一行的每段文字写两遍；其余标题原样不动。"""
    assert undoubled(printed) == meant


@pytest.fixture(scope="module")
def sample(site, tmp_path_factory):
    pages = sample_pages()
    out = build_pdf(site, tmp_path_factory.mktemp("pdf") / "sample.pdf", pages)
    return out, pages


@needs_printer
def test_sample_pdf_passes_the_same_check_as_the_whole_book(sample):
    out, pages = sample
    assert pdf_problems(out, pages) == []
    marks = [squash(m) for m in bookmarks(out)]
    for page in pages[1:]:  # 每章的 h1 进了书签（主题的打印样式曾把它们全部隐藏）
        assert any(m.endswith(squash(page_title(page_source(page)))) for m in marks), page


@needs_printer
def test_pdf_check_reports_what_is_missing(sample):
    """检查本身会失败：拿样张当整本书检查，缺的每一章都要报出来。"""
    out, pages = sample
    problems = pdf_problems(out)
    missing = [p for p in toc_files() if p not in pages]
    for page in missing:
        assert f"书签里没有“{page_title(page_source(page))}”" in problems
    assert any(p.startswith("只有") for p in problems)
