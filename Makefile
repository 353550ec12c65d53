# make run   -- set up the environment and run the default search (digits, a few minutes)
# make test  -- set up the environment and run the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup data browser postgres run test bench clean

FASHION_MNIST := /usr/share/datasets/fashion-mnist

setup: $(VENV)/.installed data

# Real Fashion-MNIST comes from Debian's package (no downloads at run time). Without root or
# apt, say so and go on: everything but `--data fashion-mnist` works without it.
data:
	@test -d $(FASHION_MNIST) || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
	  || echo "note: could not install Debian's dataset-fashion-mnist; pass --data-dir for fashion-mnist"; }

# Headless Chromium opens the HTML report in its test; like the data, best effort.
browser:
	@command -v chromium >/dev/null || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	  || echo "note: could not install Debian's chromium; the HTML report test will be skipped"; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: setup
	$(PY) -m search run $(ARGS)

# PostgreSQL for the shared-storage tests (`--storage postgresql://...`); best effort too.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1 \
	  || echo "note: could not install Debian's postgresql; the PostgreSQL storage tests will be skipped"; }

test: setup browser postgres
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=20 $(ARGS)

clean:
	rm -rf $(VENV) studies .pytest_cache
