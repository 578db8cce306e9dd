# Two entry points, each does all set-up on a fresh machine:
#   make demo   - the main job on the embedded synthetic data
#   make test   - every check CI runs (.ci/run calls this)
# Also: `make lab`, JupyterLab on the course (first lesson open); `make docs`, the course site in _docs/ (the
# notebooks as committed, outputs included; nothing runs); `make lessons`, which re-executes the course lessons
# whose code changed since their committed outputs were made.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.maskcls-installed
KERNEL := $(VENV)/.maskcls-kernel
DEMO_ARGS ?=

.PHONY: demo test quick lab docs lessons install browser postgres export readme clean-nbs check-clean check-export check-readme check-outputs lint nbtest pytest slow gpu-wheels

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,ray]"
	touch $(STAMP)

# the venv's python3 kernel under the display name the notebooks record (see tools/clean_nbs.py)
$(KERNEL): $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name python3 > /dev/null
	touch $(KERNEL)

install: $(STAMP) $(KERNEL)

demo: $(STAMP)
	$(BIN)/maskcls demo $(DEMO_ARGS)

test: $(STAMP) $(KERNEL) browser postgres
	$(MAKE) --no-print-directory check-clean check-export check-readme check-outputs lint nbtest pytest

# the course lessons committed executed: re-run (as Jupyter's Run All) those whose code changed since their outputs;
# `make lessons LESSONS="07 08_tta"` runs these, `make lessons LESSONS=--all` every lesson (see tools/lessons.py)
LESSONS ?= --stale
lessons: $(STAMP) $(KERNEL)
	OMP_NUM_THREADS=1 $(BIN)/python tools/lessons.py $(LESSONS)

# JupyterLab on the course, the first lesson open (the lessons are committed executed: nothing needs to run first)
lab: $(STAMP) $(KERNEL)
	$(BIN)/jupyter lab nbs/01_competition.ipynb

# the course site from the notebooks as committed (`python tools/build_docs.py --execute` runs them first)
docs: $(STAMP)
	$(BIN)/python tools/build_docs.py

# the browser tests (tests/test_browser.py) drive Debian's headless Chromium
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else echo "make test needs Chromium: run 'sudo apt-get install chromium chromium-driver' (Debian/Ubuntu), then make test again"; exit 1; fi; \
	fi

# the shared-storage tests (tests/test_hpo_scale.py) start a real PostgreSQL server of their own
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  else echo "make test needs PostgreSQL's server programs: run 'sudo apt-get install postgresql' (Debian/Ubuntu), then make test again"; exit 1; fi; \
	fi

# 1. notebooks are committed clean: plain nbdev_clean, and with the metadata JupyterLab writes (tools/clean_nbs.py)
check-clean: $(STAMP)
	$(BIN)/python tools/check.py unchanged nbs -- $(BIN)/nbdev_clean
	$(BIN)/python tools/check.py unchanged nbs -- $(BIN)/python tools/clean_nbs.py
# 2. maskcls/ is exactly what the notebooks export
check-export: $(STAMP)
	$(BIN)/python tools/check.py unchanged maskcls -- $(BIN)/nbdev_export
# 3. README.md is nbs/index.ipynb rendered (quarto is not available, so we render it ourselves)
check-readme: $(STAMP)
	$(BIN)/python tools/check.py readme --check
# 4. every course lesson's committed outputs were made from its code now (`make lessons` re-executes the stale ones)
check-outputs: $(STAMP)
	$(BIN)/python tools/lessons.py --check
# 5. the code is tidy: unused imports, undefined names, imports at the top, lines <= 120 (config in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check maskcls tests tools benchmarks
	$(BIN)/ruff check --isolated --select F821 --output-format concise nbs   # no undefined name in any notebook cell, slow ones included
# 6. every notebook runs as a test (cells flagged slow/cuda/notest are skipped here)
nbtest: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing
# 7. pytest last, so the run ends on pytest's summary line
pytest: $(STAMP)
	$(BIN)/python -m pytest -q tests

# the inner loop while developing: every pytest test not marked slow (no training runs, browsers or servers)
quick: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not slow" tests

# the flagged cells: `make slow` on any machine, `make slow FLAGS="slow cuda"` on a GPU box;
# NB=07_cv runs one notebook. Slow cells check their results against nbs/results/ (see 10_results).
FLAGS ?= slow
NB ?=
slow: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --flags "$(FLAGS)" --n_workers 2 --timing $(if $(NB),--file_glob "$(NB)*.ipynb")

# the wheels a GPU machine lacks (benchmarks/gpu_wheels.txt), for CPython 3.12 on manylinux x86-64, into .whl/,
# which travels with the checkout: see benchmarks/README.md
gpu-wheels:
	rm -rf .whl && $(PYTHON) -m pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
	  --no-deps -d .whl -r benchmarks/gpu_wheels.txt
	ls -l .whl

# developer helpers
export: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/python tools/clean_nbs.py
	$(BIN)/python tools/check.py readme
