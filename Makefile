# Two commands for a new user: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pleval-installed
# Simulation size for the `slow` tests: 1 = full size; CI runs them reduced.
PLEVAL_SIM_SCALE ?= 0.25
export PLEVAL_SIM_SCALE
export MPLBACKEND := Agg

.PHONY: setup demo test docs bench sample-data clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,docs]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pleval estimate sample_data/pl_matched_students.csv --out results --force
	@echo "The report: $(CURDIR)/results/report.html (open it in a browser); summary: results/summary.md"

# One BLAS thread per test worker: two workers already fill the two cores.
test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q
	$(MAKE) --no-print-directory docs

docs: $(STAMP)
	@if [ -f mkdocs.yml ]; then $(BIN)/mkdocs build --strict --quiet; else echo "docs: mkdocs.yml not yet present"; fi

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f; done

clean:
	rm -rf $(VENV) results site .pytest_cache .hypothesis
