"""`make venv` 的最后一步：让新环境开箱即用。

1. JupyterLab 里双击 book/*.md 直接以笔记本打开（jupytext 的 defaultViewers），且不联网查新闻；
2. 预先建好 matplotlib 的字体缓存，否则第一次 import 时的提示会混进笔记本的 stderr 输出。

用法：python -m mlbook.setup_env .venv
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LAB_OVERRIDES = {
    "@jupyterlab/docmanager-extension:plugin": {
        "defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}
    },
    # 离线使用：不去网上查新闻与新版本
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"},
}


def main(venv: str) -> None:
    settings = Path(venv) / "share" / "jupyter" / "lab" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "overrides.json").write_text(json.dumps(LAB_OVERRIDES, indent=2) + "\n")

    import matplotlib.pyplot  # noqa: F401  建字体缓存

    from mlbook import setup_matplotlib

    setup_matplotlib()
    print(f"环境就绪：{venv}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".venv")
