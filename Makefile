# The two commands that matter: `make demo` starts everything, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_RECORDS ?= 100000

.PHONY: demo test bench lint venv lock clean screenshots

venv: $(STAMP)

# The virtual environment, from the lock file; rebuilt when the lock or the project metadata change.
$(STAMP): requirements.lock pyproject.toml
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# exec: make waits for the demo itself, which stops its children on Ctrl-C before make returns.
demo: venv
	SYNCPLANE_DEMO=1 exec $(BIN)/syncplane demo

test: venv
	$(BIN)/pytest

bench: venv
	SYNCPLANE_DEVTOOLS=1 $(BIN)/syncplane bench servicenow --records $(BENCH_RECORDS) --json var/bench-servicenow.json

# The README's screenshots, taken by the browser tests (needs Debian's chromium).
screenshots: venv
	SYNCPLANE_SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest -q tests/browser

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Re-pin every dependency after changing pyproject.toml (needs the package registry).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	.lock-venv/bin/pip freeze --exclude-editable > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) var
