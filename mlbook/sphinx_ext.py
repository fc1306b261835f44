"""本书的 Sphinx 小扩展（在 _config.yml 的 extra_extensions 里启用）。

1. 每个由笔记本生成的页面，下载菜单里除了 .ipynb 再加上它的 MyST 源文件 .md；
2. 构建时检查每个笔记本：代码 cell 都按顺序执行过、没有意外的报错输出；否则发出警告，
   `-W` 下构建失败（网站不执行笔记本，这一步保证它不会展示没跑过或跑崩了的结果）；
3. 去掉 sphinx-thebe 注入的脚本：本书不启用 thebe，而它会把同一段 `const THEBE_JS_URL`
   内联脚本加两次，浏览器里报 “has already been declared” 错误，还带着一个 CDN 地址；
4. 把术语表里的中文术语交给 jieba 作为自定义词典，让“交叉熵”“多头注意力”这类词
   作为整词进入全文检索索引（否则 jieba 会把它们切碎，搜整词就搜不到）；
5. 由章节源文件生成练习版笔记本与离线包（mlbook.practice），放在 _practice/ 下，
   并在每个章节页的下载菜单里加“练习版 .ipynb”；
6. 手机与打印：mlbook/static 下的样式（公式、代码、表格放不下时在自己的框里滚动并有阴影提示）与脚本
   （修正两个主题版本不配套导致侧栏按钮无效）；
7. 界面全部用简体中文（主题里没有翻译或是繁体的字符串在构建结束时替换），图的 alt 文字用图注；
8. 只发布页面用到的东西：删掉 MathJax 用不到的组件与 source map。
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
from sphinx.application import Sphinx
from sphinx.util import logging

from mlbook.notebooks import BOOK, FIX_HINT, ROOT, execution_problems, is_chapter, page_source, page_title

logger = logging.getLogger(__name__)

GLOSSARY = BOOK / "appendix" / "glossary.md"
_CJK = re.compile(r"[\u4e00-\u9fff]")


def glossary_terms(path: Path = GLOSSARY) -> list[str]:
    """术语表 glossary 指令块中的中文术语。"""
    terms: list[str] = []
    in_block = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```{glossary}"):
            in_block = True
            continue
        if in_block and line.startswith("```"):
            in_block = False
            continue
        # glossary 指令里顶格的行是术语，缩进的行是解释，“:” 开头的是指令选项
        if in_block and line[:1] not in ("", " ", ":") and _CJK.search(line):
            terms.append(line.strip())
    return terms


def _write_search_dict(app: Sphinx) -> None:
    out = Path(app.doctreedir).parent / "jieba_dict.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    words: set[str] = set()
    for term in glossary_terms():
        # 术语行可能是“交叉熵（cross-entropy）”这种形式，拆出中文词
        words.update(w for w in re.split(r"[\s（）()，,、/]+", term) if _CJK.search(w))
    # 高词频保证 jieba 把整词切出来（cut_for_search 仍会额外给出子词）
    out.write_text("".join(f"{w} 100000\n" for w in sorted(words)), encoding="utf-8")
    app.config.html_search_options = {**(app.config.html_search_options or {}), "dict": str(out)}


def fast_chinese_search() -> None:
    """让中文检索的建索引从 O(n²) 变回 O(n)（整站构建快 20 多秒）。

    Sphinx 7 的 SearchChinese 把见过的每个拉丁词追加进一个列表 latin_terms，stem() 再对每个词
    `word in latin_terms` 线性查找；全书几万个词时这一步占了构建时间的一半。换成集合，查找结果不变。
    """
    from sphinx.search import zh

    if isinstance(zh.SearchChinese.latin_terms, set):
        return
    zh.SearchChinese.latin_terms = set(zh.SearchChinese.latin_terms)

    def split(self, input: str) -> list[str]:
        chinese = list(zh.jieba.cut_for_search(input)) if zh.JIEBA else []
        latin1 = [term.strip() for term in self.latin1_letters.findall(input)]
        self.latin_terms.update(latin1)
        return chinese + latin1

    zh.SearchChinese.split = split


def _source_md(docname: str) -> Path | None:
    if not docname.startswith("notebooks/"):
        return None
    md = page_source(docname)
    return md if md.exists() else None


def _add_md_download(app: Sphinx, pagename: str, templatename, context, doctree) -> None:
    md = _source_md(pagename)
    if md is None:
        return
    rel = f"{pagename}.md"
    target = Path(app.outdir) / "_sources" / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(md, target)
    _add_download_button(context, 1, f"{context['pathto']('_sources', 1)}/{rel}", ".md",
                         f"下载 MyST 源文件（{md.relative_to(ROOT)}）", "fab fa-markdown", "download-myst-button")


def _add_download_button(context, position: int, url: str, text: str, tooltip: str, icon: str, label: str) -> None:
    """在主题的下载菜单（header_buttons 里的 download-buttons 组）第 position 个位置插入一个链接。"""
    for group in context.get("header_buttons", []):
        if group.get("label") == "download-buttons":
            group["buttons"].insert(position, {"type": "link", "url": url, "text": text, "tooltip": tooltip,
                                               "icon": icon, "label": label})


def _add_practice_download(app: Sphinx, pagename: str, templatename, context, doctree) -> None:
    """章节页的下载菜单里加“练习版 .ipynb”（由 build-finished 生成到 _practice/）。"""
    md = _source_md(pagename)
    if md is None or not is_chapter(md):
        return
    rel = md.relative_to(BOOK).with_suffix(".ipynb").as_posix()
    _add_download_button(context, 2, f"{context['pathto']('_practice', 1)}/{rel}", "练习版 .ipynb",
                         "下载本章的练习版（手撕）：要写的函数只留签名，检查会打 ✓ 或 ✗", "fas fa-pen",
                         "download-practice-button")


PRACTICE_PAGE = "notebooks/appendix/practice"
_PRACTICE_LIST = re.compile(r'<div class="mlbook-practice-list">.*?</div>', re.S)


def practice_table_html(page_dir: str) -> str:
    """“手撕练习”页上的表：按 _toc.yml 的顺序，每章一行（章节链接、练习版下载、要写的函数个数）。"""
    import html as htmllib
    import posixpath

    from mlbook.chapters import chapter_sources
    from mlbook.notebooks import toc_files
    from mlbook.practice import practice_notebook

    rows = []
    for page in toc_files():
        md = chapter_sources().get(page.rsplit("/", 1)[-1])
        if md is None:
            continue
        rel = md.relative_to(BOOK).with_suffix("").as_posix()
        title = page_title(md)
        _, names = practice_notebook(md)
        chapter_url = posixpath.relpath(page, page_dir) + ".html"
        practice_url = posixpath.relpath(f"_practice/{rel}.ipynb", page_dir)
        rows.append(f'<tr><td><a href="{chapter_url}">{htmllib.escape(title)}</a></td>'
                    f'<td><a href="{practice_url}">练习版 .ipynb</a></td><td>{len(names)}</td></tr>')
    head = "<th>章节</th><th>下载</th><th>要写的函数</th>"
    return (f'<div class="mlbook-practice-list"><p>共 {len(rows)} 章。</p><table class="table">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


_BAD_INPUTS = re.compile(r'<div class="mlbook-bad-inputs">.*?</div>', re.S)
PERFORMANCE_PAGE = "notebooks/appendix/performance"


def bad_inputs_html() -> str:
    """“性能与复现”页的坏输入目录：每章一个可展开的表（id、异常类型、信息），按 _toc.yml 的顺序。"""
    import html as htmllib

    from mlbook.testing import bad_input_catalogue, describe_bad_input

    catalogue = bad_input_catalogue()
    parts = []
    for stem, cases in catalogue.items():
        rows, kinds = [], {}
        for case in cases:
            kind, msg = describe_bad_input(case)
            kind = kind or "没有报错"
            kinds[kind] = kinds.get(kind, 0) + 1
            rows.append(f"<tr><td><code>{htmllib.escape(case.id)}</code></td><td>{kind}</td>"
                        f"<td>{htmllib.escape(msg)}</td></tr>")
        summary = "，".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        parts.append(f"<details><summary><b>{stem}</b>：{len(cases)} 行（{summary}）</summary>"
                     '<table class="table"><thead><tr><th>坏输入</th><th>异常</th><th>信息</th></tr></thead>'
                     f"<tbody>{''.join(rows)}</tbody></table></details>")
    total = sum(len(v) for v in catalogue.values())
    return (f'<div class="mlbook-bad-inputs"><p>{len(catalogue)} 章，共 {total} 行坏输入。</p>'
            f"{''.join(parts)}</div>")


def _write_bad_inputs(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    page = Path(app.outdir) / f"{PERFORMANCE_PAGE}.html"
    if page.exists():
        text = page.read_text(encoding="utf-8")
        page.write_text(_BAD_INPUTS.sub(lambda m: bad_inputs_html(), text), encoding="utf-8")


def _write_practice(app: Sphinx, exception) -> None:
    """构建结束时生成全部练习版与离线包：_practice/<部分>/<章>.ipynb、_practice/shousi-ml.zip。"""
    if exception is not None or app.builder.format != "html":
        return
    from mlbook.practice import ARCHIVE_NAME, build_all, build_archive

    out = Path(app.outdir) / "_practice"
    build_all(out)
    build_archive(out / ARCHIVE_NAME, out)
    page = Path(app.outdir) / f"{PRACTICE_PAGE}.html"
    if page.exists():
        table = practice_table_html(PRACTICE_PAGE.rsplit("/", 1)[0])
        page.write_text(_PRACTICE_LIST.sub(lambda m: table, page.read_text(encoding="utf-8")), encoding="utf-8")


def _drop_thebe_scripts(app: Sphinx, pagename: str, templatename, context, doctree) -> None:
    scripts = context.get("script_files", [])
    context["script_files"] = [
        s for s in scripts
        if "THEBE_JS_URL" not in (getattr(s, "attributes", {}).get("body") or "")
        and "sphinx-thebe.js" not in str(s)
        and "thebe@" not in str(s)
    ]


def _check_executed(app: Sphinx, docname: str, source: list[str]) -> None:
    path = Path(app.env.doc2path(docname))
    if path.suffix != ".ipynb":
        return
    problems = execution_problems(nbformat.reads(source[0], as_version=4))
    md = _source_md(docname)
    hint = f"；修复：{FIX_HINT.format(md=md.relative_to(ROOT))}" if md else ""
    for problem in problems:
        logger.warning(f"{problem}{hint}", location=docname)


STATIC = Path(__file__).with_name("static")

# 主题与扩展里没有简体中文翻译（或给的是繁体）的界面字符串
UI_ZH = {
    '"Toggle primary sidebar"': '"打开或收起目录"',
    '"Toggle secondary sidebar"': '"打开或收起本页目录"',
    '"Color mode"': '"配色"',
    '"System Settings"': '"跟随系统"',
    '"Search..."': '"搜索…"',
    '"Search"': '"搜索"',
    '"Link to this heading"': '"链接到此标题"',
    '"Link to this equation"': '"链接到此公式"',
    '"Link to this image"': '"链接到此图"',
    '"Link to this table"': '"链接到此表"',
    '"Link to this code"': '"链接到此代码"',
    '"Link to this term"': '"链接到此术语"',
    '"Toggle hidden content"': '"展开或收起"',
    '"Main"': '"主导航"',
    '"Page"': '"本页"',
    "列印成 PDF": "打印为 PDF",
    "© Copyright": "© 版权所有",
    '"Light"': '"浅色"',
    '"Dark"': '"深色"',
    '"Fullscreen mode"': '"全屏"',
    '"Download this page"': '"下载本页"',
    '"Download source file"': '"下载源文件"',
    '"Download notebook file"': '"下载笔记本"',
    ">Contents<": ">目录<",
    '"Previous page"': '"上一页"',
    '"Next page"': '"下一页"',
    '"Back to top"': '"回到顶部"',
    ">Back to top<": ">回到顶部<",
    '"Skip to main content"': '"跳到正文"',
    ">Skip to main content<": ">跳到正文<",
}
_FIGURE = re.compile(r'(<figure[^>]*>.*?</figure>)', re.S)
_CAPTION = re.compile(r'<figcaption>(.*?)</figcaption>', re.S)
_TAG = re.compile(r"<[^>]+>")


def _figure_alt(match: re.Match) -> str:
    """图的 alt 文字用图注（去掉“图 2.1”编号与标签），而不是图片文件的路径。"""
    fig = match.group(1)
    cap = _CAPTION.search(fig)
    if not cap:
        return fig
    text = " ".join(_TAG.sub(" ", cap.group(1)).split()).replace('"', "&quot;")
    text = re.sub(r"^图\s*[\d.]+\s*", "", text).rstrip("#¶ ")
    return re.sub(r'(<img [^>]*alt=")[^"]*(")', lambda m: f"{m.group(1)}{text}{m.group(2)}", fig, count=1)


def localize_html(html: str) -> str:
    for en, zh in UI_ZH.items():
        html = html.replace(en, zh)
    return _FIGURE.sub(_figure_alt, html)


# MathJax：页面只用 tex-chtml.js、它的字体与按需加载的 TeX 扩展
_MATHJAX_KEEP = ("tex-chtml.js", "output/chtml/", "input/tex/extensions/", "ui/", "a11y/", "adaptors/")


def _finish_site(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    for html in out.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        new = localize_html(text)
        if new != text:
            html.write_text(new, encoding="utf-8")
    for js in (out / "_static").rglob("*.js"):
        if "togglebutton" in js.name or js.name == "translations.js":
            text = js.read_text(encoding="utf-8")
            new = (text.replace('"Click to show"', '"点击展开"').replace('"Click to hide"', '"点击收起"')
                   .replace('"Toggle hidden content"', '"展开或收起"'))
            if new != text:
                js.write_text(new, encoding="utf-8")
    for f in (out / "_static").rglob("*.map"):
        f.unlink()
    mathjax = out / "_static" / "mathjax"
    if mathjax.is_dir():
        for f in sorted(mathjax.rglob("*"), reverse=True):
            rel = f.relative_to(mathjax).as_posix()
            if f.is_file() and not rel.startswith(_MATHJAX_KEEP):
                f.unlink()
            elif f.is_dir() and not any(f.iterdir()):
                f.rmdir()


def _chapter_references(app: Sphinx, doctree, docname: str) -> None:
    """每章“参考”一节末尾列出本章引用过的文献（格式与参考文献页相同，链接到那里的条目）。

    不在每章放一个 {bibliography} 指令：同一条文献出现在多个指令里，sphinxcontrib-bibtex 会报重复引用。
    """
    from docutils import nodes
    from pybtex.plugin import find_plugin

    md = _source_md(docname)
    if md is None or not is_chapter(md) or app.builder.format != "html":
        return
    domain = app.env.get_domain("cite")
    keys = list(dict.fromkeys(t.key for ref in domain.citation_refs if ref.docname == docname for t in ref.targets))
    citations = {c.key: c for c in domain.citations}
    section = next((s for s in doctree.findall(nodes.section)
                    if s.children and s[0].astext().rstrip().endswith("参考")), None)
    if section is None or not keys:
        return
    backend = find_plugin("pybtex.backends", "docutils")()
    items = nodes.bullet_list(classes=["mlbook-chapter-references"])
    for key in sorted(k for k in keys if k in citations):
        c = citations[key]
        uri = app.builder.get_relative_uri(docname, c.bibliography_key.docname) + "#" + c.citation_id
        para = nodes.paragraph()
        para += nodes.reference("", f"[{c.formatted_entry.label}]", refuri=uri, internal=True)
        para += nodes.Text(" ")
        para.extend(c.formatted_entry.text.render(backend))
        items += nodes.list_item("", para)
    section += nodes.rubric(text="本章引用的文献")
    section += items


def _readable_term_anchors(app: Sphinx, doctree) -> None:
    """术语表里中文术语的锚点 Sphinx 只给 term-0、term-1……；另加一个可读的 term-交叉熵（引用仍用原锚点）。"""
    from docutils import nodes

    if app.env.docname != "notebooks/appendix/glossary":
        return
    for term in doctree.findall(nodes.term):
        text = term.astext().strip()
        if _CJK.search(text):
            readable = "term-" + re.sub(r"\s+", "-", text)
            if readable not in term["ids"]:
                term["ids"].append(readable)


def _register_author_year_style() -> None:
    """参考文献列表用与正文引用相同的“作者, 年份”标签（正文是 [Bridle, 1990]，列表也是），按作者排序。"""
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.plain import Style as PlainStyle
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            for entry in sorted_entries:
                people = entry.persons.get("author") or entry.persons.get("editor") or []
                names = [" ".join(p.last_names) for p in people]
                who = (names[0] if len(names) == 1 else f"{names[0]} and {names[1]}" if len(names) == 2
                       else f"{names[0]} et al." if names else entry.fields.get("title", entry.key))
                yield f"{who}, {entry.fields.get('year', 'n.d.')}"

    class AuthorYearStyle(PlainStyle):
        default_label_style = AuthorYearLabels

    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle, force=True)


def _add_static(app: Sphinx) -> None:
    app.config.html_static_path.append(str(STATIC))


def setup(app: Sphinx) -> dict:
    _register_author_year_style()
    fast_chinese_search()
    app.connect("builder-inited", _add_static)
    app.add_css_file("mlbook.css")
    app.add_js_file("mlbook.js", priority=900)  # 在 searchtools.js 之后加载
    app.connect("build-finished", _finish_site)
    app.connect("doctree-resolved", _chapter_references, priority=900)
    app.connect("doctree-read", _readable_term_anchors)
    app.connect("source-read", _check_executed)
    app.connect("builder-inited", _write_search_dict)
    # sphinx-book-theme 在优先级 501 生成下载按钮，这里排在它之后
    app.connect("html-page-context", _add_md_download, priority=600)
    app.connect("html-page-context", _drop_thebe_scripts, priority=600)
    app.connect("html-page-context", _add_practice_download, priority=601)
    app.connect("build-finished", _write_practice)
    app.connect("build-finished", _write_bad_inputs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
