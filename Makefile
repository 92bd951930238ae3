# genie-env: `make demo` then `make test` on a fresh machine is all the set-up there is.
PYTHON ?= python3
# The CPU build of PyTorch lies on local disk on our machines; installing it first keeps pip from
# pulling a multi-GB CUDA build for the open `torch>=2.4` range in pyproject.toml.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install demo test bench screenshots lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH)"
	$(PIP) install -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/genie demo

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadscope --durations=10

bench: install
	$(BIN)/python benchmarks/collect.py
	$(BIN)/python benchmarks/tokenizer.py --checkpoint genie_env/assets/coinrun/tokenizer
	$(BIN)/python benchmarks/st_scaling.py
	$(BIN)/python benchmarks/dream_env.py
	$(BIN)/python benchmarks/serve.py

# docs/serve.png, the README's picture of `genie serve`, taken by its browser test
screenshots: install
	GENIE_SCREENSHOT_DIR=docs $(BIN)/python -m pytest -q tests/test_serve_browser.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
