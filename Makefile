# turnout: the two commands are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: test lint demo bench bench-proxy venv clean

$(PY):
	python3 -m venv $(VENV)

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --upgrade pip >/dev/null
	$(PIP) install -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

demo: $(STAMP)
	$(PY) -m gateway.demo

# `make bench-proxy BENCH_PROXY_ARGS="--compare-chain"`: the proxy benchmark alone (bench/proxy.py).
# `make bench BENCH_ARGS="--quick"`: every benchmark, rewriting bench/RESULTS.md (bench/run_all.py).
BENCH_PROXY_ARGS ?=
BENCH_ARGS ?=
bench-proxy: $(STAMP)
	$(PY) bench/proxy.py $(BENCH_PROXY_ARGS)

bench: $(STAMP)
	$(PY) bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

# `make loadtest SCENARIO=ab USERS=50 DURATION=20s`: one Locust scenario, headless, against the demo
# stack (started for the run when it is not up). Scenarios and their summaries: loadtests/README.md.
# Defaults: the mixed OIP scenario, with the runner's own defaults; LOADTEST_ARGS go to the scenario
# (e.g. LOADTEST_ARGS="--user-pool 5000").
SCENARIO ?= oip
USERS ?= 20
DURATION ?= 20s
LOADTEST_ARGS ?=
.PHONY: loadtest
loadtest: $(STAMP)
	$(PY) -m loadtests.run --scenario $(SCENARIO) --users $(USERS) --duration $(DURATION) -- $(LOADTEST_ARGS)
