# Every target creates the virtualenv it needs from the pinned requirements.lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RUNTIME := $(VENV)/.runtime-stamp
PYTEST_WORKERS ?= 2

.PHONY: venv demo test lint unit integration image bench clean

venv: $(STAMP)

# The runtime dependencies alone (what the demo and users need), then the development tools on top:
# a first `make demo` does not install the test and lint toolchain.
$(RUNTIME): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e .
	touch $@

$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $@

## Run the main job on sample_data/ against the bundled emulator (ledger in out/demo.ledger.csv).
demo: $(RUNTIME)
	$(BIN)/python examples/demo.py

## Lint, type-check, then the whole test suite.
test: lint unit

# Every Python file of the tree (README.md's snippets stay as written).
PY_TREES = batch_override tests bench examples deploy sample_data

lint: $(STAMP)
	$(BIN)/ruff check $(PY_TREES)
	$(BIN)/ruff format --check $(PY_TREES)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) -q -m "not integration" --durations=15

## The slower checks against real components (container image, browser, orchestrators); CI runs
## them after `make test`. Tests join it with @pytest.mark.integration. Exit 5 (none collected) is fine.
integration: $(STAMP) $(VENV)/.integration-stamp
	$(BIN)/pytest -q -m integration || [ $$? -eq 5 ]

# Dagster (the asset recipe's test) is heavy and only these checks need it: installed here alone.
$(VENV)/.integration-stamp: $(STAMP) requirements-integration.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -r requirements-integration.txt
	touch $@

## The job's OCI image, built without pulling a base image (mmdebstrap + umoci; see deploy/image/):
## an OCI layout in out/image/oci, tagged with the version; prints its size and build time.
image: $(STAMP)
	PYTHON=$(BIN)/python bash deploy/image/build.sh out/image

## Benchmarks; results go to BENCHMARKS.md (method there too).
bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) out bench/out .mypy_cache .ruff_cache .pytest_cache
