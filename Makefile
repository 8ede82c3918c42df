# `make test` and `make demo` set everything up themselves on a fresh machine.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_VERSION ?= 2.13.0

.PHONY: setup test demo lint benchmark-toy

$(VENV)/.installed: pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e ".[dev,eval,space]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PYTHON) -m pytest tests

lint: setup
	$(VENV)/bin/ruff check src training benchmarks tests pipelines spaces
	$(VENV)/bin/ruff format --check src training benchmarks tests pipelines spaces

demo: setup
	$(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		training/train_smart_gan.py --dataset_name grid25 --score analytic --output_dir outputs/demo

benchmark-toy: setup
	$(PYTHON) benchmarks/toy2d.py
