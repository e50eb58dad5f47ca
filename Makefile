# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_DIR ?= .cache/demo

.PHONY: setup test lint demo docs bench bench-site browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Browser tests drive Debian's Chromium (never a downloaded browser); install it when missing.
browser:
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

test: lint browser
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/python -m heritage.demo $(DEMO_DIR)

# Generated documentation: docs/schema.md from the index's column comments.
docs: setup
	$(BIN)/python -m heritage.index.schema_doc > docs/schema.md
	$(BIN)/python -m heritage.cli.reference > docs/cli.md

bench: setup
	$(BIN)/python bench/read.py
	$(BIN)/python bench/lineage.py
	$(BIN)/python bench/index.py
	$(BIN)/python bench/hub.py

bench-site: setup
	$(BIN)/python bench/site.py

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
