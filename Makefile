# edgeline: `make demo` runs the pipeline on built-in data, `make test` runs the tests.
# Both create .venv on first use and reuse it afterwards (TensorFlow is large: install once).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeline-installed
# The mobile toolchain (TFLite Model Metadata writers, MediaPipe Tasks) in an environment of its
# own inside .venv: its pins conflict with TensorFlow's (constraints-mobile.txt says which).
MOBILE := $(VENV)/mobile
# Two pytest-xdist workers, one per core: most tests are single-threaded Python (Beam, tf.data,
# small models, subprocesses). A file's tests stay in one worker (they share module fixtures:
# a trained model, a pipeline run). PYTEST_ARGS= runs them all in one process.
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: setup demo test test-fast bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt constraints-mobile.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade "pip>=24" setuptools wheel
	$(PY) -m pip install -qq -c constraints.txt -e ".[dev,dask]"
	@test -x $(MOBILE)/bin/python || $(PY) -m venv $(MOBILE)
	$(MOBILE)/bin/python -m pip install -qq -c constraints-mobile.txt tflite-support mediapipe
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/edgeline run configs/demo.yaml

# The whole suite, slow integration tests included (what CI runs).
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast unit tests alone, for the edit-run loop.
test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.run

lint: setup
	$(VENV)/bin/ruff check .
	$(PY) tools/lint_imports.py

clean:
	rm -rf runs benchmarks/_work .pytest_cache
