# The two commands: `make demo` and `make test`. Both create .venv from the lock first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-output

.PHONY: install demo test lint typecheck pytest bench bench-quick lock clean browser wrk

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crm-meetings demo --out $(DEMO_OUT)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy src

# pytest exits 5 when it collected no tests; make treats every non-zero exit as a failure.
# The tests run on one pytest-xdist worker per CPU (PYTEST_WORKERS=0: in this process).
PYTEST_WORKERS ?= auto
# compileall first: where PYTHONDONTWRITEBYTECODE is set (this machine kind sets it),
# every process the tests start would compile the package from source again (0.5 s each
# here); Python still reads bytecode that exists, and ignores it once a source changes.
pytest: $(STAMP) browser
	$(BIN)/python -m compileall -q src
	$(BIN)/pytest -n $(PYTEST_WORKERS)

# The browser tests drive Debian's chromium (Playwright with executable_path; no downloads).
browser:
	test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

# The throughput benchmarks drive Debian's wrk (a native load generator; without it they
# fall back to a Python one that shares the cores with the server, and say so).
wrk:
	test -x /usr/bin/wrk || (apt-get update && apt-get install -y wrk)

bench: $(STAMP) wrk
	$(BIN)/python -m benchmarks

# The same benchmarks at N <= 1,000; writes benchmarks/results/quick.json.
bench-quick: $(STAMP) wrk
	BENCH_QUICK=1 $(BIN)/python -m benchmarks

# Regenerate the lock after changing dependencies in pyproject.toml.
lock:
	$(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile pyproject.toml --extra postgres --extra celery --extra dev \
		--python-version 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
