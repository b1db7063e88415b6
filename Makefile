# The two commands: `make demo` runs the sample site, `make test` runs every check.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

NODE_STAMP := node_modules/.installed

.PHONY: demo test lint typecheck unit jstest clean fuzz bench soak

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# The bundled country database (Apache-2.0). Its package pins maxminddb 1.5.4, which would drag
	# geoip2 back to 3.x: install it alone; the middleware finds the file by itself.
	$(BIN)/python -m pip install --quiet --no-deps 'python-geoacumen==2024.6.23'
	@touch $(STAMP)

# The banner script's tests: Node's built-in runner with jsdom (from package-lock.json).
$(NODE_STAMP): package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "need Node.js 20+ and npm for the banner script tests"; exit 1; }
	npm ci --silent --no-audit --no-fund
	@touch $(NODE_STAMP)

demo: $(STAMP)
	$(BIN)/uvicorn examples.site:app --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# The 5-minute soak (issue 8), not part of `test` (tests/test_soak.py runs 15 s of it): 64 connections of
# mixed traffic through uvicorn, every answer checked, the server's memory flat after the warm-up.
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --duration 300 --connections 64

# The speed benchmarks (issue 7), not part of `test`: HTTP through uvicorn with wrk (about 40 minutes on a
# quiet 2-core machine; needs wrk: apt-get install wrk), then the in-process figures.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.bench_http
	$(BIN)/python -m benchmarks.bench_inprocess
	if command -v valgrind >/dev/null; then $(BIN)/python -m benchmarks.bench_instructions; \
	else echo "valgrind is not installed: no instruction counts"; fi

jstest: $(NODE_STAMP)
	node --test tests/js/

# The long fuzz run (README, "Fuzzing"): FUZZ_EXAMPLES inputs per target of tests/fuzz, about 10 minutes
# on two cores. `make test` runs the same targets with the default example count.
FUZZ_EXAMPLES ?= 12000
fuzz: $(STAMP)
	CONSENT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/fuzz -q -p no:randomly --hypothesis-show-statistics

test: lint typecheck jstest unit

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
