# Common commands. `make help` lists them.
PYTHON ?= .venv/bin/python
BIN := $(abspath $(dir $(PYTHON)))/

.PHONY: help install install-gpu install-s3 demo repro strong-recipe tune test test-fast lint format ui bench bench-memory bench-quality bench-tune bench-int8

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## Create .venv and install the pinned requirements
	python3.11 -m venv .venv || python3 -m venv .venv
	@echo "installing the pinned requirements into .venv (TensorFlow, DVC, MLflow, ONNX Runtime,"
	@echo "LiteRT and the ImageNet weights: about 3 GB on disk, a few minutes on a first install)..."
	@start=$$(date +%s); $(BIN)pip install -q -r requirements.txt && \
		echo "installed in $$(( $$(date +%s) - start )) s; next: make demo"

install-gpu: install ## Also install TensorFlow's CUDA libraries, on a machine with an NVIDIA GPU
	$(BIN)pip install -q -r requirements-gpu.txt

install-s3: install ## Also install dvc-s3, for DVC remotes on S3 or S3-compatible storage
	$(BIN)pip install -q -r requirements-s3.txt

demo: ## Whole pipeline offline on scikit-learn's handwritten digits, Lite0 with ImageNet weights
	PATH="$(BIN):$$PATH" $(PYTHON) -m src.demo

repro: ## The full experiment (needs network once for CIFAR-10 and the ImageNet weights)
	PATH="$(BIN):$$PATH" $(BIN)dvc repro

strong-recipe: ## The strong fine-tuning recipe (recipes/strong.yaml) as the experiment strong-recipe
	PATH="$(BIN):$$PATH" $(PYTHON) -m src.recipes strong --run

tune: ## An Optuna search over tune.yaml, each trial a DVC experiment (ARGS="--jobs 2" etc.)
	PATH="$(BIN):$$PATH" $(PYTHON) -m src.tune $(ARGS)

JOBS ?= 2
test: ## The whole test suite, end-to-end tests included, JOBS=2 test files at a time
	$(PYTHON) -m pytest -n $(JOBS) --dist loadfile

test-fast: ## Unit and stage tests only
	$(PYTHON) -m pytest -n $(JOBS) --dist loadfile -m "not e2e"

lint: ## ruff lint and format check
	$(BIN)ruff check .
	$(BIN)ruff format --check .

format: ## ruff fix and format
	$(BIN)ruff check --fix .
	$(BIN)ruff format .

ui: ## MLflow UI on http://127.0.0.1:5000, opened on the comparison runs (ARGS="--port 5001")
	PATH="$(BIN):$$PATH" $(PYTHON) -m src.ui $(ARGS)

bench: ## Time phases 1 and 2 against the tutorial recipe -> reports/benchmark.json (~10 min)
	PATH="$(BIN):$$PATH" $(PYTHON) -m benchmarks.benchmark

bench-memory: ## Peak memory of prepare and a training epoch on folders of 10k and 100k images
	$(PYTHON) -m benchmarks.memory

bench-quality: ## Test accuracy on Fashion-MNIST and the digits, 3 seeds a row -> reports/quality.json
	PATH="$(BIN):$$PATH" $(PYTHON) -m benchmarks.quality

bench-tune: ## A 20-trial search on the demo's digits with and without pruning -> reports/tuning/benchmark.json
	PATH="$(BIN):$$PATH" $(PYTHON) -m benchmarks.tuning

bench-int8: ## int8 LiteRT with its input scaling in float against all-int8, 3 seeds -> reports/quantization.json
	PATH="$(BIN):$$PATH" $(PYTHON) -m benchmarks.quantization
