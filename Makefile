# One command surface for people and CI. `make help` lists the targets.
# The venv is built with pip because torch must come first, pinned to the CPU build that
# pip finds on local disk (PLATFORM.md); a bare `torch` would pull a multi-GB CUDA build.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SHARED ?= $(abspath ../shared/data)
SNAPSHOT ?= $(SHARED)/arxiv-sample/arxiv-metadata-sample.jsonl.gz
REPLAY ?= $(SHARED)/rss/aioarxiv-2024-11-28/rss_all-archives_2024-11-28.xml
TORCH  ?= torch==2.13.0
export HF_HUB_OFFLINE = 1

.PHONY: help venv up test test-fast lint typecheck bench clean

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

test: venv  ## install and run the whole test suite (real Tansu + real PostgreSQL)
	ARXIV_STREAM_SHARED_DATA="$(SHARED)" $(BIN)/pytest -q -ra

test-fast: venv  ## unit tests only
	ARXIV_STREAM_SHARED_DATA="$(SHARED)" $(BIN)/pytest -q -m "not integration and not slow"

lint: venv  ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core ingest broker db models training stream cli bench

bench: venv  ## throughput benchmark (see bench/README.md)
	ARXIV_STREAM_SHARED_DATA="$(SHARED)" $(BIN)/python -m bench.throughput

clean:  ## remove the venv and caches (not your data dir)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
