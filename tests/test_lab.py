"""读者在 JupyterLab（`make lab`）里打开 book/ 下的源文件：它应当作为带输出的笔记本打开。"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS
from test_notebooks import CHAPTERS

from mlbook.notebooks import ROOT


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        "--ServerApp.token=", "--ServerApp.password=", "--allow-root", f"--ServerApp.root_dir={ROOT}",
        # 打开文件时 JupyterLab 会建检查点；放到临时目录，测试不在 book/ 下留下 .ipynb_checkpoints
        f"--FileCheckpoints.checkpoint_dir={tmp_path_factory.mktemp('checkpoints')}",
    ]
    # 自己的进程组：结束时连同它启动的内核一起结束，不留下进程与端口
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(base + "/api/status", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab 60 秒内没有启动")
        yield base
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """先 SIGTERM 整个进程组，grace 秒后仍未退出就 SIGKILL；JupyterLab 有时忽略 SIGTERM。"""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_source_opens_as_paired_notebook_with_outputs(lab, md):
    rel = md.relative_to(ROOT).as_posix()
    with urllib.request.urlopen(f"{lab}/api/contents/{rel}?type=notebook&content=1", timeout=60) as r:
        model = json.load(r)
    assert model["type"] == "notebook"
    code = [c for c in model["content"]["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("outputs") is not None for c in code)
    # 输出来自配对的 notebooks/*.ipynb
    assert sum(bool(c["outputs"]) for c in code) >= len(code) // 2, "配对的 .ipynb 输出没有被读入"


@pytest.mark.skipif(CHROMIUM is None, reason="没有 Chromium（见 test_browser.py）")
def test_double_click_opens_notebook_view(lab):
    from playwright.sync_api import sync_playwright

    rel = CHAPTERS[0].relative_to(ROOT).as_posix()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{lab}/lab/tree/{rel}")
            # 长笔记本按窗口渲染，屏幕外的 cell 不算“可见”：只要求它们已在 DOM 里
            page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached", timeout=60000)
            page.wait_for_selector(".jp-Notebook .jp-OutputArea-output", state="attached", timeout=30000)
            assert page.locator(".jp-Notebook .jp-Cell").count() > 10
        finally:
            browser.close()
