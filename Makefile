# affect-toolkit: every entry point. `make demo` and `make test` run `make setup` first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO      ?= cargo
RELEASE    := target/release
EXTRACTOR  := $(RELEASE)/extractor
TEMPORAL   := $(RELEASE)/temporal
DATA       ?= data/sample
CACHE      ?= $(DATA)/features
FEATURES   ?= hog
DEMO_OUT   ?= out/demo

.PHONY: help setup build sample-data features demo test test-unit test-slurm lint fmt bench bench-extract bench-temporal bench-faces bench-cache clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: ## install what this machine lacks (apt packages, libtorch venv, links) and build; idempotent
	@bash scripts/setup.sh

build: ## release build of the binaries
	$(CARGO) build --release --bins

sample-data: setup ## generate the synthetic Aff-Wild2 sample into data/sample
	$(EXTRACTOR) sample-data --out $(DATA)

features: sample-data ## embed every sample frame with the feature sets of configs/features.toml
	$(EXTRACTOR) extract --config configs/features.toml --data $(DATA) --out $(CACHE) --backbone $(FEATURES)

demo: setup ## the whole pipeline end to end on the embedded synthetic data set
	@bash scripts/demo.sh $(DEMO_OUT)

test: setup test-unit test-slurm lint ## every test: cargo tests (unit, parity, end to end), the Slurm cluster test, lint

test-unit: ## cargo tests only (unit, parity, end to end; no apt, no Slurm): the edit loop
	OMP_NUM_THREADS=1 $(CARGO) test --workspace --no-fail-fast

test-slurm: setup ## Slurm arrays and a sweep on a throw-away one-node cluster (installs slurm-wlm, munge)
	@bash scripts/test-slurm.sh

lint: ## clippy without warnings and rustfmt
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all --check

fmt: ## format the code
	$(CARGO) fmt --all

bench: bench-extract bench-temporal bench-faces bench-cache ## all benchmarks (ratios against the PyTorch peers, same run)

bench-extract: setup ## extraction frames/s vs ../shared/peers/torch_extract_ref.py
	@bash scripts/bench-extract.sh

bench-faces: setup ## face detection + alignment frames/s vs facenet-pytorch's MTCNN
	@bash scripts/bench-faces.sh

bench-cache: setup ## token cache read MB/s vs h5py + PyTorch, and train frames/s with tokens in memory vs streamed
	@bash scripts/bench-cache.sh

bench-temporal: setup ## training/inference frames/s vs ../shared/peers/torch_temporal_ref.py
	@bash scripts/bench-temporal.sh

clean: ## remove build products and generated data (keeps the venv)
	$(CARGO) clean
	rm -rf data out runs
