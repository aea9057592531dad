# One command surface for people and CI. `make help` lists the targets.
# The venv is built with pip because torch must come first, pinned to the CPU build that
# pip finds on local disk (PLATFORM.md); a bare `torch` would pull a multi-GB CUDA build.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SHARED ?= $(abspath ../shared/data)
SNAPSHOT ?= $(SHARED)/arxiv-sample/arxiv-metadata-sample.jsonl.gz
REPLAY ?= $(SHARED)/rss/aioarxiv-2024-11-28/rss_all-archives_2024-11-28.xml
CORPUS ?= $(SHARED)/arxiv-corpus
TORCH  ?= torch==2.13.0
export HF_HUB_OFFLINE = 1

.PHONY: help venv browser up test test-fast lint typecheck bench train-corpus quality-curve clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/arxiv-stream: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

venv: $(BIN)/arxiv-stream  ## create .venv with everything installed

up: venv  ## run the whole pipeline on embedded defaults, replaying the real RSS feed
	$(BIN)/arxiv-stream up --snapshot "$(SNAPSHOT)" --replay "$(REPLAY)"

test: venv browser  ## install and run the whole test suite (real Tansu + real PostgreSQL + chromium)
	ARXIV_STREAM_SHARED_DATA="$(SHARED)" $(BIN)/pytest -q -ra

browser:  ## Debian's chromium and its driver, for the page's test (skipped when present)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null || \
	  echo "could not install chromium: the page's browser test will fail (apt-get install chromium chromium-driver)"

test-fast: venv  ## unit tests only
	ARXIV_STREAM_SHARED_DATA="$(SHARED)" $(BIN)/pytest -q -m "not integration and not slow"

lint: venv  ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core ingest broker db models training lifecycle stream api cli bench

bench: venv  ## embedder variant vs fp32, pipeline throughput and latency, the reader, warm retrain, the API (see bench/README.md)
	ARXIV_STREAM_SHARED_DATA="$(SHARED)" $(BIN)/python -m bench.embedder
	ARXIV_STREAM_SHARED_DATA="$(SHARED)" $(BIN)/python -m bench.throughput
	ARXIV_STREAM_SHARED_DATA="$(SHARED)" $(BIN)/python -m bench.reader
	ARXIV_STREAM_SHARED_DATA="$(SHARED)" $(BIN)/python -m bench.retrain
	ARXIV_STREAM_SHARED_DATA="$(SHARED)" $(BIN)/python -m bench.api

train-corpus: venv  ## train on the 300k corpus (holdout excluded), gate, promote, evaluate (~1-2 h cold, 2 cores)
	$(BIN)/arxiv-stream retrain --snapshot "$(CORPUS)" --exclude-holdout --no-ingested --seed 13
	$(BIN)/arxiv-stream evaluate --snapshot "$(CORPUS)/arxiv-corpus-part03.jsonl.gz" --holdout
	$(BIN)/arxiv-stream evaluate --snapshot "$(SNAPSHOT)" --split test --seed 13

quality-curve: venv  ## learning curve (5k, 30k, 100k, 300k papers) -> bench/results/quality_curve.json
	ARXIV_STREAM_SHARED_DATA="$(SHARED)" $(BIN)/python -m bench.quality_curve

clean:  ## remove the venv and caches (not your data dir)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
