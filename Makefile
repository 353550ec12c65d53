# make run   -- set up the environment and run the default search (digits, a few minutes)
# make test  -- set up the environment and run the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup data browser postgres run test bench clean

FASHION_MNIST := /usr/share/datasets/fashion-mnist

setup: $(VENV)/.installed $(VENV)/.aeon data

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

# aeon ships the UCR/UEA datasets (`--data ucr:NAME`) and MiniRocket (the sequence baseline).
# It goes in without its declared pins: aeon 1.6.0 caps numba below 0.64 (numba 0.63 needs
# numpy<2.4) and pandas below 3.1, lagging numba 0.64's support for the numpy 2.4 and pandas
# 3.1 this project pins. With numba 0.64 it loads the datasets and runs MiniRocket, which is all
# we use and what tests/search/test_ucr.py checks: we test what we use. Then one tiny MiniRocket
# fit compiles numba's kernels into its on-disk cache (about a minute, once), so no search or
# test pays it. Best effort, like the data: if any step fails aeon is removed again, and then
# `ucr:` names say to run `make setup` and sequence studies skip MiniRocket with a note.
$(VENV)/.aeon: $(VENV)/.installed
	@if $(PY) -m pip install -q "numba==0.64.0" "llvmlite==0.46.0" "deprecated>=1.2.13" \
	    && $(PY) -m pip install -q --no-deps "aeon==1.6.0" \
	    && $(PY) -c "from encoderkit.baselines import warm_minirocket; warm_minirocket()"; \
	then touch $@; \
	else $(PY) -m pip uninstall -q -y aeon >/dev/null 2>&1; \
	  echo "note: could not install aeon 1.6.0 with numba 0.64 and run MiniRocket; --data ucr:NAME and the MiniRocket baseline need it"; \
	fi

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
