# Two commands for a new user: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pleval-installed
# Simulation size for the `slow` tests: 1 = full size; CI runs them reduced.
PLEVAL_SIM_SCALE ?= 0.25
export PLEVAL_SIM_SCALE
export MPLBACKEND := Agg

.PHONY: setup demo test test-latest lock docs bench clean

# pleval's own modules compiled to bytecode (pip does it when it installs a package, not for this
# editable install): with PYTHONDONTWRITEBYTECODE set, as on the CI machine, every run would
# otherwise compile them from source (0.2 s of `pleval estimate`, 0.14 s of it before the file's
# analysis starts; docs/scale.md). When they are up to date it only compares the files' times.
BYTECODE := $(BIN)/python -m compileall -q pleval

setup: $(STAMP)

# Exact, hash-checked versions from requirements.lock (plain pip reads it; no extra tool is
# needed to install), then pleval itself without resolving anything further.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	$(BYTECODE)
	touch $(STAMP)

# Regenerate requirements.lock after changing dependencies in pyproject.toml, keeping existing
# pins (add UV_ARGS=--upgrade to move everything to the newest releases; uv is used to
# resolve only; the lock is an ordinary pip requirements file with hashes). LOCK_PINS holds the
# lock's own bounds beyond pyproject's, kept by --upgrade too: matplotlib 3.11's Agg backend draws
# text glyph by glyph in Python, 3.10 a whole string in C++ (the figures of a 1M-row `pleval
# estimate` about 20% less CPU; docs/scale.md, session 48). pyproject's lower bound stays.
LOCK_PINS := matplotlib<3.11
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	printf 'setuptools>=77\nwheel\n$(LOCK_PINS)\n' | $(BIN)/uv pip compile pyproject.toml - --extra test --extra docs --extra spark \
	  --generate-hashes --universal --python-version 3.11 --no-header $(UV_ARGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra bench -c requirements.lock \
	  --generate-hashes --universal --python-version 3.11 --no-header -o requirements-bench.lock

# The suite against the newest releases (not in CI): drift shows here before users see it.
test-latest:
	rm -rf .venv-latest && $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet --upgrade -e ".[test,docs]"
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv-latest/bin/python -m pytest -n 2 -q

demo: $(STAMP)
	@$(BYTECODE)
	$(BIN)/pleval estimate sample_data/pl_matched_students.csv --out results --force
	@echo "The report: $(CURDIR)/results/report.html (open it in a browser); for print: results/report.pdf; summary: results/summary.md"

# One BLAS thread per test worker: two workers already fill the two cores.
test: $(STAMP)
	@$(BYTECODE)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q
	$(MAKE) --no-print-directory docs

docs: $(STAMP)
	@if [ -f mkdocs.yml ]; then $(BIN)/mkdocs build --strict --quiet; else echo "docs: mkdocs.yml not yet present"; fi

# The peers (DoWhy, psmpy, causalinference) and py-spy, pinned by requirements-bench.lock (made
# by `make lock` with the main lock's pins as constraints). bench_scale.py runs with --big: issue
# 19's target 3 at 10M rows too (about 2 minutes and 6 GB more).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-bench.lock
	@$(BYTECODE)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f $$(test $$f = benchmarks/bench_scale.py && echo --big); done

clean:
	rm -rf $(VENV) .venv-latest results site .pytest_cache .hypothesis
