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

# Reinstall only when the project's dependencies change. The dev extra includes every other one
# (workers, reports), so the demo and the tests have everything.
$(STAMP): pyproject.toml | $(PY)
	@echo "turnout [$$(date +%T)]: installing turnout and its dev tools into $(VENV): about 2-3 minutes and 1 GB the first time ..."
	$(PIP) install --upgrade pip 'setuptools>=77' wheel >/dev/null
	TURNOUT_PURE_PYTHON=1 $(PIP) install --no-build-isolation -e '.[dev]'
	@# xds-protos (mesh) carries an older copy of opentelemetry-proto's files; whichever package pip
	@# installed last wins, so the exporter's own copy is put back (tracing refuses the old one).
	$(PIP) install --force-reinstall --no-deps "opentelemetry-proto==$$($(PY) -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')" >/dev/null
	touch $(STAMP)
	@echo "turnout [$$(date +%T)]: install done"

# Compile the data path (setup.py) with the venv's own mypy, again whenever one of its sources
# changes; without a C compiler this leaves the pure-Python modules in place.
$(NATIVE): $(STAMP) setup.py $(COMPILED_SOURCES)
	@echo "turnout [$$(date +%T)]: compiling the data path with mypyc: about 3-4 minutes on 2 cores, silent while it works (TURNOUT_PURE_PYTHON=1 skips it) ..."
	$(PIP) install --no-build-isolation --no-deps -e . >/dev/null
	touch $(NATIVE)
	@echo "turnout [$$(date +%T)]: data path compiled"

venv: $(NATIVE)

test: $(NATIVE)
	@echo "turnout [$$(date +%T)]: running the test suite (about 2,000 tests, several minutes on 2 cores) ..."
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

demo: $(NATIVE)
	@echo "turnout [$$(date +%T)]: starting the demo (the first run also trains its models: about 20 seconds) ..."
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
	rm -f *__mypyc.*.so gateway/core/native_build.json

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
