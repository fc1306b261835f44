"""整本书的 PDF：用 Chromium 打印网站拼成的全书页面，再用 pdftotext 取出文字检查。"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from mlbook.chapters import chapter_sources
from mlbook.notebooks import read_source, sources
from mlbook.pdf import build_pdf, find_chromium

pytestmark = pytest.mark.skipif(
    find_chromium() is None or shutil.which("pdftotext") is None,
    reason="需要 Chromium 与 pdftotext：sudo apt-get install chromium fonts-noto-cjk poppler-utils（.ci/run 会安装）",
)


def longest_code_line() -> str:
    lines = [
        line.strip()
        for md in chapter_sources().values()
        for c in read_source(md).cells if c.cell_type == "code"
        for line in c.source.splitlines() if not line.lstrip().startswith(("#", ":"))
    ]
    return max(lines, key=len)


@pytest.fixture(scope="module")
def pdf_text(site):
    out = build_pdf(site)  # 写到网站的 _downloads/，首页的下载链接指向它
    info = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True, check=True).stdout
    text = subprocess.run(["pdftotext", "-layout", str(out), "-"], capture_output=True, text=True, check=True).stdout
    return info, text


def test_pdf_has_every_title_and_pages(pdf_text):
    info, text = pdf_text
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert pages > 10 * len(chapter_sources())
    for md in sources():
        title = next(line[2:].strip() for line in md.read_text(encoding="utf-8").splitlines() if line.startswith("# "))
        title = title.replace("`", "")  # 行内代码的反引号只是 Markdown 记号
        assert title in text, f"PDF 里没有标题“{title}”"


def test_long_code_lines_wrap_instead_of_being_cut(pdf_text):
    _, text = pdf_text
    squashed = re.sub(r"\s+", "", text)
    line = longest_code_line()
    assert re.sub(r"\s+", "", line) in squashed, f"最长的代码行在 PDF 里不完整：{line}"


def test_pdf_math_and_solutions_are_printed(pdf_text):
    _, text = pdf_text
    assert re.search(r"\(\d+\.\d+\)", text), "应有公式编号"
    assert "点击展开" not in text and "Click to show" not in text, "答案应展开打印"
    assert text.count("解答") + text.count("Solution") >= len(chapter_sources())
