"""整本书的 PDF：把网站各页的正文按 _toc.yml 的顺序拼成一页，用系统的 Chromium（无头）打印。

    python -m mlbook.pdf            # 需要先 make book；输出 _build/html/_downloads/shousi-ml.pdf

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
import sys
import threading
from pathlib import Path

from mlbook.notebooks import ROOT, toc_files

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


def _rebase(body: str, page_dir: str, print_dir: str, pages: set[str]) -> str:
    """把页面里的相对地址改成相对于打印页；指向书中其他页面的链接改成页内锚点。"""

    def fix(m: re.Match) -> str:
        url, rest = m.group("url"), m.group("rest") or ""
        if not url:
            return m.group(0)
        target = posixpath.normpath(posixpath.join(page_dir, url))
        if m.group("attr") == "href" and target.removesuffix(".html") in pages:
            anchor = rest if rest.startswith("#") else f"#page-{_slug(target.removesuffix('.html'))}"
            return f'href="{anchor}"'
        return f'{m.group("attr")}="{posixpath.relpath(target, print_dir)}{rest}"'

    return _URL.sub(fix, body)


def _slug(page: str) -> str:
    return page.replace("/", "-")


def combined_html(site: Path = SITE) -> str:
    """全书正文拼成的一页 HTML（使用网站自己的样式与 MathJax）。"""
    pages = toc_files()
    index = (site / f"{pages[0]}.html").read_text(encoding="utf-8")
    head = index[: index.index("<body")]
    print_dir = posixpath.dirname(PRINT_PAGE)
    head = _rebase(head, posixpath.dirname(pages[0]), print_dir, set())
    parts, toc = [], []
    for page in pages:
        text = (site / f"{page}.html").read_text(encoding="utf-8")
        m = _ARTICLE.search(text)
        if not m:
            raise ValueError(f"{page}.html 里找不到正文 <article class=\"bd-article\">")
        body = _rebase(m.group(1), posixpath.dirname(page), print_dir, set(pages))
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


def build_pdf(site: Path = SITE, out: Path | None = None) -> Path:
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("没有找到 Chromium：sudo apt-get install chromium fonts-noto-cjk（.ci/run 会自动安装）")
    from playwright.sync_api import sync_playwright

    out = out or site / "_downloads" / PDF_NAME
    page_file = site / PRINT_PAGE
    page_file.parent.mkdir(parents=True, exist_ok=True)
    page_file.write_text(combined_html(site), encoding="utf-8")

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
    return out


def main(argv: list[str] | None = None) -> int:
    site = Path(argv[0]) if argv else SITE
    if not (site / "index.html").exists():
        print(f"先构建网站：make book（找不到 {site / 'index.html'}）", file=sys.stderr)
        return 1
    out = build_pdf(site)
    print(f"PDF：{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}（{out.stat().st_size / 1e6:.1f} MB）")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
