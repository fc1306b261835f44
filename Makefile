# 《手撕机器学习》的全部常用命令。README 里只需要两条：`make book` 与 `make test`。
SHELL  := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BOOK   := $(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going
export PATH := $(abspath $(VENV))/bin:$(PATH)
# 章节、测试与笔记本内核都从这个目录导入 mlbook（git worktree 共用一个 .venv 时也是本目录的代码）
export PYTHONPATH := $(CURDIR)
# make test CH=<部分>/<章>：只测这一章（笔记本、测试、页面与静态检查）
CH ?=

.PHONY: venv book pdf test notebooks notebook check practice determinism serve lab bench lint clean

# 虚拟环境：requirements.txt 或 pyproject.toml 变了就重装
$(STAMP): requirements.txt pyproject.toml mlbook/setup_env.py
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m mlbook.setup_env $(VENV)
	touch $(STAMP)

venv: $(STAMP)

## 构建网站到 _build/html（按需创建环境）
book: $(STAMP)
	$(BOOK)
	@if command -v chromium >/dev/null 2>&1; then $(PY) -m mlbook.pdf; \
	else echo "（没有 Chromium，跳过整书 PDF：sudo apt-get install chromium fonts-noto-cjk 后 make pdf）"; fi
	@echo "网站已生成：$(abspath _build/html/index.html)"

## 整本书的 PDF（用系统的 Chromium 打印网站）：_build/html/_downloads/shousi-ml.pdf
pdf: $(STAMP)
	$(BOOK)
	$(PY) -m mlbook.pdf

## 运行全部测试：ruff、nbval、笔记本同步、参考实现对照、网站构建与浏览器测试
## make test CH=classification_losses/softmax_cross_entropy 只测一章
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest $(if $(CH),--chapter=$(CH))

## 从 book/ 源文件重新生成并执行与之不同步的笔记本（单向：md → ipynb）
notebooks: $(STAMP)
	$(PY) -m mlbook.notebooks build

## 强制重新生成并执行一章：make notebook NB=book/classification_losses/softmax_cross_entropy.md
notebook: $(STAMP)
	$(PY) -m mlbook.notebooks build --force $(NB)

## 只检查同步与执行状态（不执行任何代码）
check: $(STAMP)
	$(PY) -m mlbook.notebooks check

## 由章节源文件生成全部练习版（手撕）与离线包到 _build/practice/（网站构建时也会生成）
practice: $(STAMP)
	$(PY) -m mlbook.practice

## 在 http://127.0.0.1:8000 预览网站（直接打开 index.html 也可以，只是检索结果没有摘要）
serve: book
	$(PY) -m http.server --bind 127.0.0.1 --directory _build/html 8000

## 本地打开 JupyterLab：book/ 下的 .md 双击即以笔记本打开
lab: $(STAMP)
	$(VENV)/bin/jupyter lab

## 确定性：每个笔记本重新执行 3 次，文本输出与提交的逐字节相同（不属于测试，耗时几分钟）
determinism: $(STAMP)
	$(PY) -m mlbook.determinism --runs 3

## 性能基准（不在测试里计时）
bench: $(STAMP)
	$(PY) -m mlbook.bench

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf _build
