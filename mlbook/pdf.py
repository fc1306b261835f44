"""整本书的 PDF：把网站各页的正文按 _toc.yml 的顺序拼成一页，用系统的 Chromium（无头）打印。

    python -m mlbook.pdf            # 需要先 make book；输出 _build/html/_downloads/shousi-ml.pdf

打印完读回 PDF 检查（pdf_problems：每页标题在正文与书签里、最长的代码行完整、公式编号、答案展开），
不合格则退出码为 1，所以 make book / make pdf 本身就验证整本 PDF。测试（tests/test_pdf.py）用同一套
打印与检查跑几页样张：整本六百多页要打印一分多钟，放在 make test 里会占掉测试时间的一半。

为什么不用 LaTeX：离线的 xelatex + ctex 要装几百 MB 的 TeX Live；网站里已经有排好版的中文、
MathJax 公式、图和带编号的标题，Chromium（浏览器测试本来就要用）直接打印它们即可。
打印样式（代码换行而不是截断、答案展开、去掉界面按钮、每章另起一页）在 mlbook/static/mlbook.css 的 @media print。
PDF 带目录页与书签（Chromium 按 h1/h2/h3 生成大纲）。
"""

from __future__ import annotations

import functools
import html as htmllib
import http.server
import posixpath
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from mlbook.notebooks import ROOT, is_chapter, page_source, page_title, read_source, toc_files

SITE = ROOT / "_build" / "html"
PRINT_PAGE = "notebooks/_print/book.html"   # 与章节页同样深两层，章节里的相对链接无须改写
PDF_NAME = "shousi-ml.pdf"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
_ARTICLE = re.compile(r'<article class="bd-article"[^>]*>(.*?)</article>', re.S)
_URL = re.compile(r'(?P<attr>\b(?:src|href))="(?P<url>[^"#:?]*)(?P<rest>[#?][^"]*)?"')
_TITLE = re.compile(r"<h1>(.*?)<a class=\"headerlink\"", re.S)
_TAG = re.compile(r"<[^>]+>")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, ["chromium", "chromium-browser"]) if p), None)


def _rebase(body: str, page_dir: str, print_dir: str, pages: set[str], page: str | None = None) -> str:
    """把页面里的相对地址改成相对于打印页；指向书中（打印的）页面的链接改成页内锚点。

    各页的 id 在拼起来之后会重复（Sphinx 每页都从 id1 编起），所以 page 给出时锚点都加上页名前缀，
    与 _prefix_ids 一致：#id5 → #notebooks-a-b--id5。
    """

    def fix(m: re.Match) -> str:
        url, rest = m.group("url"), m.group("rest") or ""
        if not url:
            if page and m.group("attr") == "href" and rest.startswith("#") and len(rest) > 1:
                return f'href="#{_slug(page)}--{rest[1:]}"'
            return m.group(0)
        target = posixpath.normpath(posixpath.join(page_dir, url))
        if m.group("attr") == "href" and target.removesuffix(".html") in pages:
            slug = _slug(target.removesuffix(".html"))
            anchor = f"#{slug}--{rest[1:]}" if rest.startswith("#") and len(rest) > 1 else f"#page-{slug}"
            return f'href="{anchor}"'
        return f'{m.group("attr")}="{posixpath.relpath(target, print_dir)}{rest}"'

    return _URL.sub(fix, body)


_ID = re.compile(r'\bid="([^"]+)"')


def _prefix_ids(body: str, page: str) -> str:
    return _ID.sub(lambda m: f'id="{_slug(page)}--{m.group(1)}"', body)


def _slug(page: str) -> str:
    return page.replace("/", "-")


def combined_html(site: Path = SITE, pages: list[str] | None = None) -> str:
    """全书（或 pages 这几页）正文拼成的一页 HTML（使用网站自己的样式与 MathJax）。"""
    pages = pages or toc_files()
    index = (site / f"{pages[0]}.html").read_text(encoding="utf-8")
    head = index[: index.index("<body")]
    print_dir = posixpath.dirname(PRINT_PAGE)
    head = _rebase(head, posixpath.dirname(pages[0]), print_dir, set())
    head = re.sub(r"<title>.*?</title>", "<title>手撕机器学习</title>", head, flags=re.S)  # PDF 的文档标题
    parts, toc = [], []
    for page in pages:
        text = (site / f"{page}.html").read_text(encoding="utf-8")
        m = _ARTICLE.search(text)
        if not m:
            raise ValueError(f"{page}.html 里找不到正文 <article class=\"bd-article\">")
        body = _prefix_ids(_rebase(m.group(1), posixpath.dirname(page), print_dir, set(pages), page), page)
        title = _TITLE.search(body)
        name = " ".join(_TAG.sub("", title.group(1)).split()) if title else page
        if page != pages[0]:
            toc.append(f'<li><a href="#page-{_slug(page)}">{name}</a></li>')
        parts.append(f'<section class="mlbook-chapter-break" id="page-{_slug(page)}">{body}</section>')
    cover = (
        '<section class="mlbook-cover"><h1>手撕机器学习</h1>'
        "<p>面试里要“手撕”的机器学习公式与代码：逐行推导、从零实现、与参考实现逐元素对照。</p>"
        f'<h2>目录</h2><ul class="mlbook-print-toc">{"".join(toc)}</ul></section>'
    )
    return (
        f"{head}<body class=\"mlbook-print\"><main class=\"bd-main\"><div class=\"bd-content\">"
        f'<article class="bd-article">{cover}{"".join(parts)}</article></div></main></body></html>'
    )


def _expand_solutions_js() -> str:
    # 折叠的答案与隐藏的代码全部展开（打印时看不到“点击展开”）
    return """() => {
        document.querySelectorAll('details').forEach(d => d.open = true);
        document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
        document.querySelectorAll('button.toggle-button').forEach(b => b.remove());
    }"""


def build_pdf(site: Path = SITE, out: Path | None = None, pages: list[str] | None = None) -> Path:
    """打印 pages（默认整本书，按 _toc.yml 的顺序）为 PDF，返回文件路径。"""
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("没有找到 Chromium：sudo apt-get install chromium fonts-noto-cjk（.ci/run 会自动安装）")
    from playwright.sync_api import sync_playwright

    out = out or site / "_downloads" / PDF_NAME
    page_file = site / PRINT_PAGE
    page_file.parent.mkdir(parents=True, exist_ok=True)
    page_file.write_text(combined_html(site, pages), encoding="utf-8")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 900, "height": 1200})
                # 整本书是一个几百页的 HTML：加载、排版公式与打印在忙的机器上都远超默认的 30 秒
                page.set_default_timeout(900_000)
                page.set_default_navigation_timeout(900_000)
                page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(
                    f"http://127.0.0.1:{httpd.server_address[1]}") or r.request.url.startswith("data:") else r.abort())
                page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/{PRINT_PAGE}", wait_until="load")
                page.wait_for_function("() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)")
                page.evaluate("() => MathJax.startup.promise")
                page.evaluate(_expand_solutions_js())
                page.emulate_media(media="print")
                out.parent.mkdir(parents=True, exist_ok=True)
                page.pdf(
                    path=str(out), format="A4", outline=True, tagged=True, print_background=True,
                    margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"},
                    display_header_footer=True, header_template="<span></span>",
                    footer_template=(
                        '<div style="font-size:8px;width:100%;text-align:center;color:#666">'
                        f'{htmllib.escape("手撕机器学习")} · <span class="pageNumber"></span> / '
                        '<span class="totalPages"></span></div>'
                    ),
                )
            finally:
                browser.close()
    finally:
        httpd.shutdown()
    fix_doubled_bookmarks(out)
    return out


def longest_code_line(mds: list[Path]) -> str:
    """这些源文件的代码 cell 里最长的一行（注释与 cell 选项行除外）：PDF 里它必须完整（换行而不是截断）。"""
    lines = [
        line.strip()
        for md in mds
        for c in read_source(md).cells if c.cell_type == "code"
        for line in c.source.splitlines() if not line.lstrip().startswith(("#", ":"))
    ]
    return max(lines, key=len)


_OUTLINE_TITLE = re.compile(rb"/Title (?:<FEFF(?P<hex>[0-9A-Fa-f]*)>|\((?P<lit>(?:[^()\\]|\\.)*)\))")
_SECTION_NUMBER = re.compile(r"(?:\d+\.)+ ")


def bookmarks(pdf: Path) -> list[str]:
    """PDF 书签（大纲）的标题。Chromium 把大纲写成未压缩的 /Title 条目：UTF-16BE 十六进制或字面串。"""
    raw = pdf.read_bytes()
    if b"/Outlines" not in raw:
        return []
    return [(bytes.fromhex(m["hex"].decode()).decode("utf-16-be") if m["hex"] is not None
             else m["lit"].decode("latin-1")).rstrip() for m in _OUTLINE_TITLE.finditer(raw)]


def undoubled(title: str) -> str:
    """Chromium 给从新一页开头的标题写书签时，把标题第一行的每段文字各写了两遍：
    “1.4. 1.4. 检查检查”“全书地图全书地图”“4.4.2. 4.4.2. 秩亏…给秩亏…给出最小范数解”。还原成只写一遍。"""
    m = _SECTION_NUMBER.match(title)
    if m and title.startswith(m.group(0) * 2):
        number, rest = m.group(0), title[2 * len(m.group(0)):]
        k = max((k for k in range(1, len(rest) // 2 + 1) if rest[k:2 * k] == rest[:k]), default=0)
        return number + rest[k:]
    half = len(title) // 2
    if len(title) % 2 == 0 and half >= 2 and title[:half] == title[half:]:
        return title[:half]
    return title


def fix_doubled_bookmarks(pdf: Path) -> int:
    """就地改正书签里写了两遍的文字，返回改了几条。

    新标题更短，末尾用空格补齐到原来的字节数，文件里其余对象的偏移（xref）不变，不需要 PDF 库。
    """
    raw = pdf.read_bytes()
    fixed = 0

    def repl(m: re.Match) -> bytes:
        nonlocal fixed
        if m["hex"] is None:  # 字面串只出现在纯 ASCII 标题里；带转义的不动
            old = m["lit"].decode("latin-1")
            new = undoubled(old)
            if new == old or "\\" in old:
                return m.group(0)
            fixed += 1
            return b"/Title (" + new.ljust(len(old)).encode("latin-1") + b")"
        old = bytes.fromhex(m["hex"].decode()).decode("utf-16-be")
        new = undoubled(old)
        if new == old:
            return m.group(0)
        fixed += 1
        body = new.encode("utf-16-be").hex()
        body = body.upper() if m["hex"].isupper() else body
        return b"/Title <FEFF" + (body + "0020" * ((len(m["hex"]) - len(body)) // 4)).encode() + b">"

    patched = _OUTLINE_TITLE.sub(repl, raw)
    if len(patched) != len(raw):  # pragma: no cover - 补齐保证长度不变
        raise RuntimeError("改正书签后 PDF 长度变了")
    pdf.write_bytes(patched)
    return fixed


def squash(s: str) -> str:
    """去掉所有空白（pdftotext 与书签里中英文之间的空格、换行与源文件不同）。"""
    return re.sub(r"\s+", "", s)


def pdf_problems(pdf: Path, pages: list[str] | None = None) -> list[str]:
    """读回打印出的 PDF（pdfinfo、pdftotext），返回它的问题；空列表 = 合格。"""
    pages = pages or toc_files()
    mds = [page_source(p) for p in pages]
    chapters = [md for md in mds if is_chapter(md)]
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat, marks = squash(text), [squash(m) for m in bookmarks(pdf)]
    problems = []
    n_pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    if n_pages < 10 * len(chapters):
        problems.append(f"只有 {n_pages} 页，{len(chapters)} 章至少应有 {10 * len(chapters)} 页")
    doubled = [m for m in bookmarks(pdf) if undoubled(m) != m]
    if doubled:
        problems.append(f"{len(doubled)} 条书签的文字写了两遍，如“{doubled[0]}”")
    for md in mds:
        title = page_title(md)
        if squash(title) not in flat:
            problems.append(f"正文里没有标题“{title}”")
        if not any(m.endswith(squash(title)) for m in marks):
            problems.append(f"书签里没有“{title}”")
    if chapters:
        line = longest_code_line(chapters)
        if squash(line) not in flat:
            problems.append(f"最长的代码行不完整（被截断了？）：{line}")
        if not re.search(r"\(\d+\.\d+\)", text):
            problems.append("没有公式编号")
        solutions = text.count("解答") + text.count("Solution")
        if solutions < len(chapters):
            problems.append(f"只找到 {solutions} 处答案，{len(chapters)} 章每章都有练习答案")
    if "点击展开" in text or "Click to show" in text:
        problems.append("答案没有展开打印（PDF 里还有“点击展开”）")
    return problems


def main(argv: list[str] | None = None) -> int:
    site = Path(argv[0]) if argv else SITE
    if not (site / "index.html").exists():
        print(f"先构建网站：make book（找不到 {site / 'index.html'}）", file=sys.stderr)
        return 1
    out = build_pdf(site)
    print(f"PDF：{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}（{out.stat().st_size / 1e6:.1f} MB）")
    if shutil.which("pdftotext") is None or shutil.which("pdfinfo") is None:
        print("（没有 pdftotext，跳过读回检查：sudo apt-get install poppler-utils）")
        return 0
    problems = pdf_problems(out)
    for p in problems:
        print(f"✗ {p}", file=sys.stderr)
    if not problems:
        print(f"✓ 读回检查：{len(toc_files())} 页的标题都在正文与书签里，最长的代码行完整，公式编号与答案都在")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
