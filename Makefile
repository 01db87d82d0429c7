# Two commands do everything on a fresh machine: `make run` and `make test`.
# Both create .venv when it is missing and (re)install when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install browser lint bench faults clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# A kernel that runs this venv's Python, for papermill and Voila.
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (memlab)" >/dev/null
	@# ...that logs only errors, so no kernel start-up warning lands in an executed notebook's output.
	$(BIN)/python -m memlab.notebook >/dev/null
	@touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the dashboard's browser test (Playwright drives it; no browser download).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = "0" ]; then \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "warning: could not install chromium; the browser test will be skipped"; \
		else echo "warning: /usr/bin/chromium missing and not root; the browser test will be skipped"; fi; \
	fi

run: install
	$(BIN)/memlab demo

# On every core, each test file whole on one worker (its module fixtures run once).
test: install browser
	$(BIN)/python -m pytest -n auto --dist loadfile

lint: install
	$(BIN)/ruff check memlab tests benchmarks

bench: install
	@for b in benchmarks/*_bench.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# 100 kill -9s of a paper session while signed alerts arrive, compared with an uninterrupted
# run (tests/faults/kill9.py; a 5-kill sample runs in `make test`). Prints a summary table.
faults: install
	$(BIN)/python -m tests.faults.kill9 --kills 100

clean:
	rm -rf $(VENV) runs .pytest_cache
