# `make test` and `make demo` set everything up themselves on a fresh machine.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_VERSION ?= 2.13.0

.PHONY: setup test test-fid demo lint benchmark-toy

$(VENV)/.installed: pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e ".[dev,eval,space]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PYTHON) -m pytest tests

# Real Inception FID (pytorch-fid) needs torchvision, which cannot live beside .venv's CPU torch on this machine:
# a separate venv with the torch/torchvision pair that works here (a CUDA build that runs on the CPU; about
# 5 minutes and 5.5 GB), pinned by a constraints file so that no later install replaces it.
FID_VENV ?= .venv-fid
FID_TORCH ?= torch==2.14.1 torchvision==0.29.1

$(FID_VENV)/.installed: pyproject.toml
	test -x $(FID_VENV)/bin/python || python3 -m venv $(FID_VENV)
	$(FID_VENV)/bin/pip install -q --upgrade pip
	printf '%s\n' $(FID_TORCH) > $(FID_VENV)/torch-constraints.txt
	$(FID_VENV)/bin/pip install -q -c $(FID_VENV)/torch-constraints.txt $(FID_TORCH) pytorch-fid
	$(FID_VENV)/bin/pip install -q -c $(FID_VENV)/torch-constraints.txt -e ".[eval,dev]"
	touch $@

# tests/smart_hf/evaluation/test_fid_inception.py (skipped in .venv): pytorch-fid's real InceptionV3 with random weights, and our
# Fréchet distance against pytorch-fid's.
test-fid: $(FID_VENV)/.installed
	$(FID_VENV)/bin/python -m pytest tests/smart_hf/evaluation/test_fid_inception.py

lint: setup
	$(VENV)/bin/ruff check src training benchmarks tests pipelines spaces
	$(VENV)/bin/ruff format --check src training benchmarks tests pipelines spaces

# A SMaRt GAN on the embedded digits with the shipped digits score model (training/configs/digits.yaml).
# One thread per core (accelerate's default is one in all): on an idle 2-core machine 1.5× faster than one
# thread; on a machine busy with other jobs, `make demo DEMO_THREADS=1` is faster.
DEMO_THREADS ?= $(shell nproc)
demo: setup
	$(VENV)/bin/accelerate launch --num_cpu_threads_per_process $(DEMO_THREADS) --num_processes 1 --num_machines 1 --mixed_precision no \
		--dynamo_backend no training/train_smart_gan.py --config training/configs/digits.yaml --output_dir outputs/demo
	@echo "Exported pipeline: outputs/demo/pipeline/   samples: outputs/demo/samples.png   metrics: outputs/demo/metrics.json"

benchmark-toy: setup
	$(PYTHON) benchmarks/toy2d.py

# The Gradio Space (spaces/smart_gan_demo) on http://127.0.0.1:7860, with the model `make demo` exports.
SMART_MODEL ?= outputs/demo
.PHONY: space
space: setup
	SMART_MODEL=$(SMART_MODEL) $(PYTHON) spaces/smart_gan_demo/app.py
