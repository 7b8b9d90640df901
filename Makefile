# vtjax developer commands. `make test` sets everything up from nothing.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Two workers match the CI machine's two cores.
PYTEST_WORKERS ?= 2

.PHONY: test install bench clean demo

# Install order matters: torch==2.13.0 first (a CPU wheel on the local wheel path;
# any other torch spec pulls gigabytes of CUDA), then the transformers parity
# oracle, then vtjax itself with its dev extras.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q transformers==4.51.3
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests

# A tiny Qwen2.5-VL learns the synthetic video task, SFT then GRPO; results in $(DEMO_WORKDIR)/report.md.
DEMO_WORKDIR ?= workdir/demo
demo: $(VENV)/.installed
	$(PY) -m vtjax.main --config configs/demo.py --workdir $(DEMO_WORKDIR)

bench: $(VENV)/.installed
	$(PY) scripts/bench_forward.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
