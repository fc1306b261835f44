"""构建好的网站：每个目录页面都在、不加载任何外部资源、中文检索可用、可下载 .ipynb 与 .md。"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mlbook.notebooks import is_chapter, page_source, toc_files

PAGES = toc_files()
EXTERNAL = re.compile(r"^(https?:)?//", re.I)


class AssetCollector(HTMLParser):
    """收集页面会自动加载的资源（脚本、样式、图片、iframe……），不包括普通超链接。"""

    def __init__(self):
        super().__init__()
        self.assets: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in {"script", "img", "iframe", "source", "video", "audio", "embed"} and a.get("src"):
            self.assets.append(a["src"])
        if tag == "link" and a.get("href"):
            rel = (a.get("rel") or "").lower()
            if any(r in rel for r in ("stylesheet", "preload", "icon", "modulepreload", "prefetch")):
                self.assets.append(a["href"])
        if tag == "object" and a.get("data"):
            self.assets.append(a["data"])


def page_html(site: Path, page: str) -> str:
    return (site / f"{page}.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PAGES)
def test_toc_page_exists_and_is_chinese(site, page):
    html = page_html(site, page)
    assert 'lang="zh-CN"' in html
    assert "<h1" in html


@pytest.mark.parametrize("page", PAGES)
def test_no_external_assets(site, page):
    collector = AssetCollector()
    collector.feed(page_html(site, page))
    external = [u for u in collector.assets if EXTERNAL.match(u)]
    assert not external, f"{page} 会从网络加载：{external}"
    for url in collector.assets:
        local = (site / page).parent / url.split("?")[0].split("#")[0]
        assert local.exists(), f"{page} 引用的本地资源不存在：{url}"


def test_css_and_js_make_no_network_requests(site):
    """样式表里的 @import / url() 与 MathJax 的加载路径都必须指向站内。"""
    offenders = []
    for css in (site / "_static").rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="ignore")
        for m in re.finditer(r"(@import\s+(url\()?|url\()\s*['\"]?(https?:)?//[^)'\"]+", text):
            offenders.append(f"{css.relative_to(site)}: {m.group(0)[:80]}")
    assert not offenders, "\n".join(offenders)
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists(), "MathJax 应随站点分发"


def test_mathjax_is_served_locally(site):
    html = page_html(site, "notebooks/classification_losses/softmax_cross_entropy")
    assert re.search(r'<script[^>]+src="[^"]*_static/mathjax/tex-chtml\.js', html)
    assert "cdn.jsdelivr" not in html


def _search_terms(site: Path) -> dict:
    text = (site / "searchindex.js").read_text(encoding="utf-8")
    index = json.loads(text[text.index("(") + 1 : text.rindex(")")])
    return index["terms"]


@pytest.mark.parametrize("word", ["交叉熵", "注意力", "反向传播", "召回率", "梯度"])
def test_search_index_has_chinese_terms(site, word):
    assert word in _search_terms(site), f"检索索引里没有“{word}”：中文分词或词典没有生效"


@pytest.mark.parametrize("page", [p for p in PAGES if p != "notebooks/index"])
def test_downloads_ipynb_and_md(site, page):
    html = page_html(site, page)
    for suffix in (".ipynb", ".md"):
        assert f'_sources/{page}{suffix}"' in html, f"{page} 缺少 {suffix} 下载按钮"
        assert (site / "_sources" / f"{page}{suffix}").exists()
    md = site / "_sources" / f"{page}.md"
    assert md.read_text(encoding="utf-8") == page_source(page).read_text(encoding="utf-8")


def test_chapters_show_figures_and_folded_solutions(site):
    chapters = [p for p in PAGES if is_chapter(page_source(p))]
    assert chapters
    for page in chapters:
        html = page_html(site, page)
        assert re.search(r'<img[^>]+src="[^"]*_images/', html), f"{page} 没有图"
        assert "solution" in html and "dropdown" in html, f"{page} 没有折叠的练习答案"
        assert 'class="reference internal" href="../appendix/glossary.html' in html, f"{page} 没有链接术语表"
        assert "bibliography.html" in html, f"{page} 没有链接到参考文献"


def test_home_page_map_is_the_toc(site):
    """首页的全书地图由 _toc.yml 生成（{tableofcontents}）：目录里的每一页都链接在地图里，顺序相同。"""
    html = page_html(site, "notebooks/index")
    start = html.index('class="toctree-wrapper')
    end = html.index("在本地运行任何一章", start)
    links = re.findall(r'<a class="reference internal" href="([^"#]+)\.html"', html[start:end])
    assert links == [p.removeprefix("notebooks/") for p in PAGES[1:]], links


@pytest.mark.parametrize("page", [p for p in PAGES if is_chapter(page_source(p))])
def test_chapter_offers_practice_notebook(site, page):
    html = page_html(site, page)
    links = re.findall(r'href="([^"]*_practice/[^"]+\.ipynb)"', html)
    assert links, f"{page} 的下载菜单里没有练习版"
    assert all(((site / page).parent / u).resolve().is_file() for u in links)


def test_practice_page_links_every_chapter_and_the_archive(site):
    html = page_html(site, "notebooks/appendix/practice")
    hrefs = re.findall(r'href="(\.\./\.\./_practice/[^"<]+)"', html)
    chapters = [p for p in PAGES if is_chapter(page_source(p))]
    assert "../../_practice/shousi-ml.zip" in hrefs
    assert len([h for h in hrefs if h.endswith(".ipynb")]) == len(chapters)
    for h in hrefs:
        assert (site / "notebooks" / "appendix" / h).resolve().is_file(), h


def _cited_keys(md) -> set[str]:
    return {k.strip() for group in re.findall(r"\{cite(?::[pt])?\}`([^`]+)`", md.read_text(encoding="utf-8"))
            for k in group.split(",")}


@pytest.mark.parametrize("page", [p for p in PAGES if is_chapter(page_source(p))])
def test_chapter_lists_its_own_references(site, page):
    html = page_html(site, page)
    assert "本章引用的文献" in html, f"{page} 的“参考”一节没有本章的文献列表"
    block = html[html.index("本章引用的文献"):]
    block = block[: block.index("</ul>")]
    links = re.findall(r'href="([^"]*bibliography\.html#[^"]+)"', block)
    assert len(links) == len(_cited_keys(page_source(page))), "列表里的条数应等于本章引用的文献数"
    bib = page_html(site, "notebooks/appendix/bibliography")
    for link in links:
        assert f'id="{link.split("#")[1]}"' in bib, f"{link} 在参考文献页上找不到"


def test_bibliography_lists_exactly_the_cited_works_author_year(site):
    bib = page_html(site, "notebooks/appendix/bibliography")
    labels = re.findall(r'<span class="label"><span class="fn-bracket">\[</span>([^<]*)<', bib)
    cited = set().union(*(_cited_keys(page_source(p)) for p in PAGES))
    assert len(labels) == len(cited), "参考文献页应只列被引用过的文献"
    assert all(re.fullmatch(r".+, \d{4}", label) for label in labels), f"标签应为“作者, 年份”：{labels[:3]}"


def test_glossary_chinese_first_with_readable_anchors(site):
    from mlbook.sphinx_ext import GLOSSARY, glossary_terms

    text = GLOSSARY.read_text(encoding="utf-8")
    body = text.split("```{glossary}\n", 1)[1].split("\n```", 1)[0]
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for entry in body.strip().split("\n\n"):
        first = entry.split("\n", 1)[0]
        assert cjk.search(first), f"术语表条目应中文在前、英文在后：{first}"
    html = page_html(site, "notebooks/appendix/glossary")
    for term in glossary_terms():
        anchor = "term-" + re.sub(r"\s+", "-", term)
        assert f'id="{anchor}"' in html, f"术语“{term}”没有可读的锚点"


def test_performance_page_lists_every_chapters_bad_inputs(site):
    """坏输入目录在构建时生成：每章一节，行数与 tests/ 里的表一致，信息是当场执行得到的。"""
    from mlbook.testing import bad_input_catalogue

    text = (site / "notebooks" / "appendix" / "performance.html").read_text(encoding="utf-8")
    assert "构建网站时生成。）" not in text, "占位符没有被替换"
    for stem, cases in bad_input_catalogue().items():
        assert f"<b>{stem}</b>：{len(cases)} 行" in text, stem
    assert "没有报错" not in text, "坏输入表里有一行没有报错"


def test_fast_chinese_search_splits_and_stems_like_sphinx():
    """构建提速的补丁（拉丁词表由列表换成集合）不改变检索索引：与 Sphinx 原来的分词、词干逐个相同。"""
    import importlib

    from sphinx.search import zh

    from mlbook.sphinx_ext import fast_chinese_search

    fast_chinese_search()
    patched = zh.SearchChinese
    original = importlib.reload(zh).SearchChinese  # 重新载入得到未打补丁的类
    try:
        assert isinstance(patched.latin_terms, set) and isinstance(original.latin_terms, list)
        a, b = original({}), patched({})
        texts = [
            "交叉熵 cross-entropy 与 KL 散度：softmax 的 logits was 与 has 是 ReLU、SGD、Adam 的 ties",
            "多头注意力 multi-head attention uses masks; AUC 与 ROC 曲线 its ones 的 BPR loss",
        ]
        for text in texts:
            words_a, words_b = a.split(text), b.split(text)
            assert words_a == words_b
            assert [a.stem(w) for w in words_a] == [b.stem(w) for w in words_b]
        assert a.stem("was") == "was" and b.stem("was") == "was"  # 见过的短拉丁词不被词干化成 "wa"
    finally:
        fast_chinese_search()  # 给重新载入的模块也打上补丁
