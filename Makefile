# `make test` and `make demo` set everything up themselves on a fresh machine.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_VERSION ?= 2.13.0

.PHONY: setup test test-fid demo lint benchmark-toy mutation

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

# Mutation testing of the core with mutmut (tests/mutation.py, docs/testing.md; not part of `make test`): a
# snapshot in build/mutation/, 2 mutants at a time under `nice`, then the score per module.
# `make mutation MUTATION_MODULES="smart losses"` runs part of it.
MUTATION_MODULES ?=
$(VENV)/.mutation-installed: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,eval,space,mutation]"
	touch $@

mutation: $(VENV)/.mutation-installed
	$(PYTHON) -m tests.mutation $(if $(MUTATION_MODULES),--modules $(MUTATION_MODULES))

lint: setup
	$(VENV)/bin/ruff check src training benchmarks tests pipelines spaces
	$(VENV)/bin/ruff format --check src training benchmarks tests pipelines spaces

# A SMaRt GAN on the embedded digits with the shipped digits score model (training/configs/digits.yaml); run
# again, it continues from its latest checkpoint (a finished run is only evaluated and exported again).
# Threads: the cores the 1-minute load average leaves free (nproc minus the load rounded, at least 1), read
# before `setup` runs; `make demo DEMO_THREADS=N` overrides. Seconds per step, 300 steps, 1 | 2 threads
# (2026-12-02, 2-core AMD EPYC CPU): idle (load 0.4-0.9) 0.075-0.080 | 0.055-0.066; one core busy (load
# 1.0-1.6) 0.081 | 0.221; one core busy and other jobs (load 1.4-5) 0.19 | 0.46. A wrong 1 costs at most 1.4×.
ifndef DEMO_THREADS
DEMO_THREADS := $(shell n=$$(nproc); l=$$(awk '{ print int($$1 + 0.5) }' /proc/loadavg 2>/dev/null || echo 0); \
	echo $$(( n - l > 1 ? n - l : 1 )))
endif
demo: setup
	$(VENV)/bin/accelerate launch --num_cpu_threads_per_process $(DEMO_THREADS) --num_processes 1 --num_machines 1 --mixed_precision no \
		--dynamo_backend no training/train_smart_gan.py --config training/configs/digits.yaml --output_dir outputs/demo \
		--resume_from_checkpoint latest
	@echo "Exported pipeline: outputs/demo/pipeline/   samples: outputs/demo/samples.png   metrics: outputs/demo/metrics.json"

benchmark-toy: setup
	$(PYTHON) -m benchmarks.toy2d

# The Gradio Space (spaces/smart_gan_demo) on http://127.0.0.1:7860, with the model `make demo` exports.
SMART_MODEL ?= outputs/demo
.PHONY: space
space: setup
	SMART_MODEL=$(SMART_MODEL) $(PYTHON) spaces/smart_gan_demo/app.py
