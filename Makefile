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

bench-proxy: $(STAMP)
	$(PY) bench/proxy.py

bench: bench-proxy

clean:
	rm -rf $(VENV) build *.egg-info
