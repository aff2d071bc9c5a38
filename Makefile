# One command each, on a fresh machine:  `make demo`  (set up + run the demo)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean browser

# The venv takes about 7 GB (on Linux x86_64 pip brings PyTorch's CUDA libraries); say so
# before pip fails half-way with "No space left on device".
NEED_GB := 8

$(STAMP): pyproject.toml requirements/constraints.txt
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
		[ "$${free:-99}" -ge $(NEED_GB) ] || \
		echo "warning: $${free} GB free here; installing imgclust's venv needs about $(NEED_GB) GB" >&2
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install imgclust with its test tools

demo: $(STAMP)  ## cluster the built-in demo photos into demo-out/
	$(BIN)/imgclust demo --out demo-out --photos demo-photos

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

browser:  ## headless Chromium for tests/test_browser.py (Debian packages; no browser download)
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }; } || \
		echo "no chromium: tests/test_browser.py will be skipped"

test: lint browser  ## lint, type-check and run the test suite (offline)
	$(BIN)/pytest -q

clean:
	rm -rf demo-out demo-photos .pytest_cache .mypy_cache .ruff_cache
