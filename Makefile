# tritonlab: two commands on a fresh machine.
#   make lab    set up (if needed) and open the course in JupyterLab on 127.0.0.1
#   make test   set up (if needed) and run the test suite
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup system lab labs test lint format bench lock down doctor

system:
	@bash env/system.sh

setup:
	@bash env/setup.sh

lab: setup
	@$(VENV)/bin/tritonlab lab --dir labs

test: setup system lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check --output-format concise src tests bench env
	$(VENV)/bin/ruff format --check -q src tests bench env

format: setup
	$(VENV)/bin/ruff format src tests bench env
	$(VENV)/bin/ruff check --fix src tests bench env

labs: setup
	$(VENV)/bin/tritonlab course build

# Every benchmark in bench/ (about an hour on 2 cores), then bench/results.json and bench/RESULTS.md.
bench: setup
	$(PY) bench/run_all.py $(BENCH_ARGS)

doctor: setup
	$(VENV)/bin/tritonlab doctor

down: setup
	$(VENV)/bin/tritonlab down --all

# Re-resolve every transitive dependency after changing env/versions.toml, then commit env/constraints.txt.
lock:
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/pip install -q -r <(python3 env/pins.py packages dev)
	.venv-lock/bin/pip freeze --exclude-editable | grep -viE '^(torch|nvidia-(cu|nccl|nvjit|nvtx|cusparse|cufft|curand|cusolver|cublas|cudnn)|triton)[=-]' > env/constraints.txt
	rm -rf .venv-lock
