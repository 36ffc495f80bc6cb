# turnout: the two commands are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
NATIVE := $(VENV)/.compiled
# The data-path modules compiled with mypyc (gateway/core/native.py lists them).
COMPILED_SOURCES := $(shell python3 gateway/core/native.py)

.PHONY: test lint demo bench bench-proxy venv clean

$(PY):
	python3 -m venv $(VENV)

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --upgrade pip 'setuptools>=77' wheel >/dev/null
	TURNOUT_PURE_PYTHON=1 $(PIP) install --no-build-isolation -e '.[dev]'
	touch $(STAMP)

# Compile the data path (setup.py) with the venv's own mypy, again whenever one of its sources
# changes; without a C compiler this leaves the pure-Python modules in place.
$(NATIVE): $(STAMP) setup.py $(COMPILED_SOURCES)
	$(PIP) install --no-build-isolation --no-deps -e . >/dev/null
	touch $(NATIVE)

venv: $(NATIVE)

test: $(NATIVE)
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

demo: $(NATIVE)
	$(PY) -m gateway.demo

# `make bench-proxy BENCH_PROXY_ARGS="--compare-chain"`: the proxy benchmark alone (bench/proxy.py).
# `make bench BENCH_ARGS="--quick"`: every benchmark, rewriting bench/RESULTS.md (bench/run_all.py).
BENCH_PROXY_ARGS ?=
BENCH_ARGS ?=
bench-proxy: $(NATIVE)
	$(PY) bench/proxy.py $(BENCH_PROXY_ARGS)

bench: $(NATIVE)
	$(PY) bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
	find gateway routing -name "*.so" -delete
	rm -f *__mypyc.*.so

# `make loadtest SCENARIO=ab USERS=50 DURATION=20s`: one Locust scenario, headless, against the demo
# stack (started for the run when it is not up). Scenarios and their summaries: loadtests/README.md.
# Defaults: the mixed OIP scenario, with the runner's own defaults; LOADTEST_ARGS go to the scenario
# (e.g. LOADTEST_ARGS="--user-pool 5000").
SCENARIO ?= oip
USERS ?= 20
DURATION ?= 20s
LOADTEST_ARGS ?=
.PHONY: loadtest
loadtest: $(NATIVE)
	$(PY) -m loadtests.run --scenario $(SCENARIO) --users $(USERS) --duration $(DURATION) -- $(LOADTEST_ARGS)
