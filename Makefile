# Two commands a newcomer types: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.qstack-installed
SOURCES := $(shell find qstack -name '*.py' -o -name '*.pyx' -o -name '*.pxd') setup.py pyproject.toml requirements-dev.txt

.PHONY: demo test bench pgo install clean

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

# the whole suite compiled, then a representative part on the pure-Python twins
PURE_TESTS := tests/test_core_runtime_twins.py tests/test_physical_heralding_twins.py tests/test_core_protocol.py tests/test_sim_kernel.py \
	tests/test_sim_network.py tests/test_sim_speed.py tests/test_link_egp.py tests/test_network_stack.py \
	tests/test_network_swap.py tests/test_transport_protocol.py tests/test_driver_suite.py \
	tests/test_faults.py tests/test_link_schemes.py tests/test_network_rates.py tests/test_sim_gc.py \
	tests/test_compiled_protocols.py tests/test_physical_hot_paths.py tests/test_qnp_typed.py \
	tests/test_protocol_typed.py tests/test_physical_typed.py tests/test_network_one_link.py \
	tests/test_sim_probe.py
# The suite but its real-time tests runs on one worker per core (pytest-xdist,
# each file on one worker, in order, its module fixtures made once);
# the real-time ones (emulated nodes as processes, TLS servers, wall-clock
# timeouts) run after it, alone, so no other test's load skews their timing.
test: $(STAMP)
	QSTACK_REQUIRE_CYTHON=1 $(PY) -m pytest -n auto --dist loadfile -m "not realtime"
	QSTACK_REQUIRE_CYTHON=1 $(PY) -m pytest -m realtime
	QSTACK_PURE_PYTHON=1 $(PY) -m pytest -q -n auto --dist loadfile $(PURE_TESTS)

bench: $(STAMP)
	$(PY) -m benchmarks.run --out benchmarks/results.json

# The kernels rebuilt profile-guided, in place (setup.py, QSTACK_PGO): built to
# count, trained on the per-pair paths, rebuilt with the counts. About three
# builds' time; `make bench` after it measures that build. The next edit of a
# source rebuilds the plain way (`make test`, `make demo`).
# (a failed step rebuilds the plain kernels before it fails: no counting ones left behind)
BUILD_KERNELS := QSTACK_REQUIRE_CYTHON=1 $(PY) setup.py -q build_ext --inplace --force
pgo: $(STAMP)
	QSTACK_PGO=generate $(BUILD_KERNELS)
	rm -rf build/pgo-profile
	QSTACK_REQUIRE_CYTHON=1 $(PY) -m benchmarks.pgo_train || { $(BUILD_KERNELS); exit 1; }
	QSTACK_PGO=use $(BUILD_KERNELS) || { $(BUILD_KERNELS); exit 1; }
	touch build/pgo/profile-guided    # (benchmarks/run.py: which build it measured)

clean:
	rm -rf build $(VENV)
	find qstack \( -name '*.so' -o -name '*.c' \) -delete     # (the kernels' and COMPILED_PY's builds)
