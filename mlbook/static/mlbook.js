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
