"""在真正的浏览器（Debian 的 Chromium，无头）里打开网站的每一页。

- 页面加载时没有控制台错误，且没有任何请求离开本机的回环服务器；
- MathJax 真正排版了公式（页面可见文字里没有残留的 $$ 或 \\frac）；
- 每张图片都加载成功（naturalWidth > 0）；
- 检索页能搜到中文词。

没有 Chromium 时跳过并说明如何安装；.ci/run 会安装它，所以 CI 上总是运行。
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path

import pytest

from mlbook.notebooks import is_chapter, page_source, toc_files

CHROMIUM = next((p for p in map(shutil.which, ["chromium", "chromium-browser"]) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="没有找到 Chromium：sudo apt-get install chromium fonts-noto-cjk 后再运行（CI 的 .ci/run 会自动安装）",
)
PAGES = toc_files()
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions",
]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open_page(browser, server):
    """新的浏览器上下文与页面：记录控制台错误与离开回环服务器的请求（并拦截它们）。"""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    p = context.new_page()
    p.console_errors, p.external = [], []
    p.on("console", lambda m: m.type == "error" and p.console_errors.append(m.text))
    p.on("pageerror", lambda e: p.console_errors.append(str(e)))

    def route(r):
        if r.request.url.startswith(server) or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            p.external.append(r.request.url)
            r.abort()

    p.route("**/*", route)
    return context, p


@pytest.fixture
def page(browser, server):
    context, p = _open_page(browser, server)
    yield p
    context.close()


@pytest.fixture(scope="module")
def reader(browser, server):
    """逐页浏览用的一个标签页（像读者一样从一页跳到下一页）：省去每页新建上下文与渲染进程。"""
    context, p = _open_page(browser, server)
    yield p
    context.close()


def wait_for_mathjax(p) -> None:
    p.wait_for_function(
        "() => !window.MathJax || (MathJax.startup && MathJax.startup.promise"
        " && (window.__mjDone || (MathJax.startup.promise.then(() => window.__mjDone = true), false)))",
        timeout=30000,
    )


# 会放不下的块：显示公式、代码与输出、表格、图。放不下时它自己必须是横向滚动的框（CSS 给了阴影提示），
# 而且整个块不能伸出正文栏之外被裁掉。
CLIPPED_JS = """() => {
    const article = document.querySelector('.bd-article') || document.body;
    const right = article.getBoundingClientRect().right;
    const blocks = document.querySelectorAll(
        'mjx-container[display="true"], div.math, div.highlight pre, div.cell_output pre, table, .bd-article img');
    const bad = [];
    for (const el of blocks) {
        if (el.closest('.toggle-hidden, details:not([open]), .bd-sidebar-primary, .bd-sidebar-secondary')) continue;
        const r = el.getBoundingClientRect();
        if (r.width === 0) continue;
        const ox = getComputedStyle(el).overflowX;
        const scrolls = ox === 'auto' || ox === 'scroll';
        const what = el.tagName + ' ' + (el.getAttribute('src') || el.textContent.slice(0, 50));
        if (el.scrollWidth > el.clientWidth + 1 && !scrolls) bad.push('不滚动却放不下: ' + what);
        if (r.right > right + 2 && !el.closest('div.math, div.highlight, div.cell_output, table'))
            bad.push('伸出正文栏: ' + what);
    }
    return bad;
}"""


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_offline(reader, server, path):
    page = reader
    page.console_errors.clear(), page.external.clear()
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{server}/{path}.html", wait_until="load")
    wait_for_mathjax(page)
    info = page.evaluate(
        """() => ({
            text: document.querySelector('main, article, body').innerText,
            math: document.querySelectorAll('mjx-container').length,
            rawMath: document.querySelectorAll('.math:not(:has(mjx-container))').length,
            images: [...document.images].map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0]),
            alts: [...document.querySelectorAll('figure img')].map(i => i.alt),
            english: [...document.querySelectorAll('[title], [aria-label], [placeholder]')]
                .flatMap(e => [e.title, e.getAttribute('aria-label'), e.placeholder])
                .filter(t => t && /^(Toggle|Search|Color|Link to|Click|Show code|Download)/.test(t)),
        })"""
    )
    assert page.external == [], f"请求离开了本机：{page.external}"
    assert page.console_errors == [], f"控制台错误：{page.console_errors}"
    assert "$$" not in info["text"], "页面上残留未排版的 $$"
    assert not re.search(r"\\(frac|sum|mathrm|log)\b", info["text"]), "页面上残留未排版的 LaTeX 命令"
    assert info["rawMath"] == 0, f"{info['rawMath']} 个公式没有被 MathJax 排版"
    broken = [src for src, ok in info["images"] if not ok]
    assert not broken, f"图片没有加载：{broken}"
    assert not [a for a in info["alts"] if not a or "_images/" in a or a.endswith(".png")], "图的 alt 应是图注"
    assert info["english"] == [], f"界面里还有英文：{info['english']}"
    assert not re.search(r"列印|Click to|Show code cell|Copyright", info["text"]), "界面应为简体中文"
    for width, height in [(1280, 800), (390, 844)]:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(50)
        clipped = page.evaluate(CLIPPED_JS)
        assert clipped == [], f"{width}px 宽时被裁掉的块：{clipped[:5]}"
    if is_chapter(page_source(path)):
        assert info["math"] > 0, "章节页面应当有排版后的公式"
        assert any("_images/" in src for src, _ in info["images"]), "章节页面应当有图"


def test_phone_navigation_by_tapping(browser, server):
    """390 px 宽的手机上：点目录按钮打开导航，再点一章就到了那一章。"""
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    p = context.new_page()
    try:
        p.goto(f"{server}/notebooks/index.html", wait_until="load")
        toggle = p.locator(".primary-toggle:visible").first
        toggle.tap()
        dialog = p.locator("#pst-primary-sidebar-modal")
        dialog.wait_for(state="visible", timeout=5000)
        target = PAGES[2]
        dialog.locator(f"a[href$='{target.rsplit('/', 1)[-1]}.html']").first.tap()
        p.wait_for_url(f"**/{target}.html", timeout=10000)
        # 本页目录按钮同样可用
        p.locator(".secondary-toggle:visible").first.tap()
        p.locator("#pst-secondary-sidebar-modal").wait_for(state="visible", timeout=5000)
    finally:
        context.close()


def test_desktop_toggle_collapses_sidebar(page, server):
    page.goto(f"{server}/{PAGES[1]}.html", wait_until="load")
    sidebar = page.locator("#pst-primary-sidebar")
    assert sidebar.is_visible()
    page.locator(".primary-toggle:visible").first.click()
    page.wait_for_timeout(300)
    assert "pst-sidebar-hidden" in (sidebar.get_attribute("class") or "")


@pytest.mark.parametrize("query", ["交叉熵", "注意力", "反向传播"])
def test_search_finds_chinese(page, server, query):
    page.goto(f"{server}/search.html?q={query}", wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=30000)
    page.wait_for_function(
        "() => !document.querySelector('#search-results .search-summary') ||"
        " [...document.querySelectorAll('#search-results ul.search li')].every(li => li.querySelector('p'))",
        timeout=30000,
    )
    hits = page.evaluate(
        """() => [...document.querySelectorAll('#search-results ul.search li')].map(li => [
            li.querySelector('a').getAttribute('href').split('#')[0], li.innerText])"""
    )
    assert hits
    pages = [h for h, _ in hits]
    assert len(pages) == len(set(pages)), f"同一页在结果里出现了多次：{pages}"
    for _, text in hits:
        assert not re.search(r"\\\(|\\\[|\\math|\\frac", text), f"摘要里有原始 LaTeX：{text[:120]}"
        assert not re.search(r"\.ipynb \.md|目录 \d+\.\d+\. 本节", text), f"摘要里有页面框架：{text[:120]}"
    assert page.external == [] and page.console_errors == []


def test_screenshot_of_a_chapter(page, server, site):
    page.goto(f"{server}/notebooks/classification_losses/softmax_cross_entropy.html", wait_until="load")
    wait_for_mathjax(page)
    page.locator("img[src*='_images/']").first.scroll_into_view_if_needed()
    # 截图放在 _build/screenshots，不进网站目录
    out = Path(site).parent / "screenshots" / "softmax_cross_entropy.png"
    out.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(out), full_page=False)
    assert out.stat().st_size > 10_000


def test_opens_from_file_url_without_server(browser, site):
    """README 说可以直接打开 _build/html/index.html：不经服务器（file://）时首页、公式与检索也都要能用。"""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    errors, external = [], []
    p.on("console", lambda m: m.type == "error" and errors.append(m.text))
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("request", lambda r: r.url.startswith("file://") or r.url.startswith("data:") or external.append(r.url))
    try:
        p.goto((Path(site) / "index.html").as_uri(), wait_until="load")
        p.wait_for_url("**/notebooks/index.html", timeout=10000)
        p.goto((Path(site) / "notebooks/classification_losses/softmax_cross_entropy.html").as_uri())
        wait_for_mathjax(p)
        assert p.locator("mjx-container").count() > 0
        assert errors == [], f"控制台错误：{errors}"
        p.goto((Path(site) / "search.html").as_uri() + "?q=交叉熵")
        p.wait_for_selector("#search-results ul.search li", timeout=30000)
        assert external == [], f"请求离开了本机：{external}"
        # file:// 下浏览器禁止 fetch 其他页面：mlbook.js 不去取摘要，检索结果只列标题（make serve 可看到摘要），
        # 所以没有任何 “Failed to fetch” 错误
        p.wait_for_timeout(500)
        assert errors == [], f"控制台错误：{errors}"
    finally:
        context.close()
