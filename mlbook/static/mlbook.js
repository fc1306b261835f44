// 《手撕机器学习》网站脚本补丁。
// 1. 侧栏按钮：pydata-sphinx-theme 0.17 与 sphinx-book-theme 1.3 的页面上各有一个 .primary-toggle
//    （以及 .secondary-toggle），两个主题的脚本都只绑定了第一个——那个是隐藏的。
//    点可见的按钮时，转发给被绑定的那一个：手机上打开导航对话框，宽屏上收起侧栏。
(function () {
  function forward(selector) {
    var all = document.querySelectorAll(selector);
    if (all.length < 2) return;
    var bound = all[0];
    for (var i = 1; i < all.length; i++) {
      all[i].addEventListener("click", function (event) {
        event.preventDefault();
        event.stopPropagation();
        bound.click();
      });
    }
  }
  function ready() {
    forward(".primary-toggle");
    forward(".secondary-toggle");
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();

// 2. 检索结果：摘要里不要页面框架（按钮、目录）与原始 LaTeX；同一页只列一次；
//    以 file:// 打开时浏览器不允许读取其他页面，不去取摘要（否则每个结果一个 “Failed to fetch”）。
// searchtools.js 在本脚本之后加载、在 DOMContentLoaded 时运行 Search.init；
// 本脚本先注册的监听器先执行，所以在那时改写 Search 正好赶在检索开始之前。
function mlbookPatchSearch() {
  if (typeof Search === "undefined") return;
  var TEX = [
    [/\\in\b/g, "∈"], [/\\le(q)?\b/g, "≤"], [/\\ge(q)?\b/g, "≥"], [/\\ne(q)?\b/g, "≠"],
    [/\\sum\b/g, "Σ"], [/\\prod\b/g, "Π"], [/\\partial\b/g, "∂"], [/\\approx\b/g, "≈"],
    [/\\times\b/g, "×"], [/\\cdot\b/g, "·"], [/\\infty\b/g, "∞"], [/\\to\b/g, "→"],
    [/\\sigma\b/g, "σ"], [/\\alpha\b/g, "α"], [/\\beta\b/g, "β"], [/\\gamma\b/g, "γ"],
    [/\\lambda\b/g, "λ"], [/\\theta\b/g, "θ"], [/\\mu\b/g, "μ"], [/\\varepsilon\b/g, "ε"], [/\\epsilon\b/g, "ε"],
    [/\\(left|right|big|Big|bigg|Bigg)\b/g, ""], [/\\[,;:!]/g, " "], [/\\\\/g, " "],
    [/\\[A-Za-z]+/g, ""], [/[{}]/g, ""], [/\\\(|\\\)|\\\[|\\\]/g, ""], [/&/g, " "]
  ];
  function texToText(tex) {
    var s = tex;
    TEX.forEach(function (r) { s = s.replace(r[0], r[1]); });
    return s.replace(/\s+/g, " ").trim();
  }
  var original = Search.htmlToText;
  Search.htmlToText = function (htmlString, anchor) {
    var doc = new DOMParser().parseFromString(htmlString, "text/html");
    doc.querySelectorAll(
      ".header-article, .bd-header-article, .prev-next-area, .bd-sidebar-secondary, nav, .toggle-button, " +
      ".onlyprint, #jb-print-docs-body, .tag_hide-input .cell_input"
    ).forEach(function (el) { el.remove(); });
    doc.querySelectorAll(".math").forEach(function (el) { el.textContent = " " + texToText(el.textContent) + " "; });
    return original(doc.documentElement.outerHTML, anchor);
  };
  var perform = Search._performSearch;
  if (perform) {
    Search._performSearch = function () {
      var results = perform.apply(this, arguments);
      // 结果按分数升序排列、从末尾开始显示：每页只保留分数最高（最靠后）的那一条
      var seen = {};
      var kept = [];
      for (var i = results.length - 1; i >= 0; i--) {
        if (!seen[results[i][0]]) { seen[results[i][0]] = true; kept.unshift(results[i]); }
      }
      return kept;
    };
  }
  if (window.location.protocol === "file:" && typeof DOCUMENTATION_OPTIONS !== "undefined") {
    DOCUMENTATION_OPTIONS.SHOW_SEARCH_SUMMARY = false;
  }
}
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", mlbookPatchSearch);
} else {
  mlbookPatchSearch();
}
