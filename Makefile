# Two commands a newcomer types: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.qstack-installed
SOURCES := $(shell find qstack -name '*.py' -o -name '*.pyx' -o -name '*.pxd') setup.py pyproject.toml requirements-dev.txt

.PHONY: demo test bench install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) $(SOURCES)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	QSTACK_REQUIRE_CYTHON=1 $(PY) -m pip install --quiet --no-build-isolation -e ".[test,all]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m qstack.demo

test: $(STAMP)
	QSTACK_REQUIRE_CYTHON=1 $(PY) -m pytest

bench: $(STAMP)
	$(PY) -m benchmarks.run --out benchmarks/results.json

clean:
	rm -rf build $(VENV) qstack/**/*.so qstack/**/*.c
