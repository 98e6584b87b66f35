# Common commands. `make help` lists them.
PYTHON ?= .venv/bin/python
BIN := $(abspath $(dir $(PYTHON)))/
DEMO_ARCHIVE := data/sample/cifar-10-sample.tar.gz

.PHONY: help install install-gpu install-s3 demo repro strong-recipe test test-fast lint format ui bench bench-memory

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## Create .venv and install the pinned requirements
	python3.11 -m venv .venv || python3 -m venv .venv
	$(BIN)pip install -q -r requirements.txt

install-gpu: install ## Also install TensorFlow's CUDA libraries, on a machine with an NVIDIA GPU
	$(BIN)pip install -q -r requirements-gpu.txt

install-s3: install ## Also install dvc-s3, for DVC remotes on S3 or S3-compatible storage
	$(BIN)pip install -q -r requirements-s3.txt

demo: ## Whole pipeline offline: generated sample archive, random weights (~1-2 min on 2 CPU cores)
	mkdir -p $(dir $(DEMO_ARCHIVE))
	$(PYTHON) -m src.finetune.sample $(DEMO_ARCHIVE) --train 2000 --test 500 > $(DEMO_ARCHIVE).sha256
	PATH="$(BIN):$$PATH" $(BIN)dvc exp run \
	  -S data.archive=$(DEMO_ARCHIVE) -S data.sha256=$$(cat $(DEMO_ARCHIVE).sha256) \
	  -S model.weights=none -S phase2.lr=1e-3

repro: ## The full experiment (needs network once for CIFAR-10 and the ImageNet weights)
	PATH="$(BIN):$$PATH" $(BIN)dvc repro

strong-recipe: ## The strong fine-tuning recipe (recipes/strong.yaml) as the experiment strong-recipe
	args=$$($(PYTHON) -m src.finetune.recipes strong) && \
	  PATH="$(BIN):$$PATH" $(BIN)dvc exp run -n strong-recipe $$args

test: ## The whole test suite, end-to-end tests included (~12 min on 2 CPU cores)
	$(PYTHON) -m pytest

test-fast: ## Unit and stage tests only
	$(PYTHON) -m pytest -m "not e2e"

lint: ## ruff lint and format check
	$(BIN)ruff check .
	$(BIN)ruff format --check .

format: ## ruff fix and format
	$(BIN)ruff check --fix .
	$(BIN)ruff format .

ui: ## MLflow UI on http://127.0.0.1:5000 for the local store
	$(BIN)mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

bench: ## Time phases 1 and 2 against the tutorial recipe -> reports/benchmark.json (~10 min)
	PATH="$(BIN):$$PATH" $(PYTHON) -m benchmarks.benchmark

bench-memory: ## Peak memory of streamed training at image_size 224 with 60k images loaded
	$(PYTHON) -m benchmarks.memory
