# kinship-search: the two commands of the quick start are `make run` and `make test`.
# Both create .venv when absent and install what they need from the project's own files.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install install-test install-train run test test-unit test-integration test-e2e train eval eval-kinfacew protos check-protos check-contracts lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "kinship-search needs Python 3.11 or newer, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps record which install step ran against which pyproject.toml.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	$(PY) scripts/one_cv2.py
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	$(PY) scripts/one_cv2.py
	@touch $@

install: $(VENV)/.installed  ## create .venv and install the suite

install-test: $(VENV)/.installed-test  ## install with the test extras

$(VENV)/.installed-train: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e '.[train]'
	@touch $@

install-train: $(VENV)/.installed-train  ## install PyTorch (CPU) for kinship train / eval

# The research data set beside the project (never copied into it).
DATASET ?= ../shared/data/fiw-train

train: install-train  ## train, calibrate and activate a kinship artifact from $(DATASET) (about 15 min, resumable)
	$(VENV)/bin/kinship train --dataset $(DATASET)

eval: install-train  ## the shipped artifact on $(DATASET)'s held-out families: eval.json
	$(VENV)/bin/kinship eval --artifact default --dataset $(DATASET) --output eval.json

eval-kinfacew: install-train  ## 5-fold cross-validated v1 evaluation on KinFaceW-I: eval.json and eval.html
	$(VENV)/bin/kinship eval --dataset ../shared/data/kinfacew-i --output eval.json --report eval.html

run: install  ## start the three services with embedded defaults and a sample gallery
	$(VENV)/bin/kinship serve all --sample-gallery

test: install-test  ## run the whole test suite (unit, integration, end-to-end)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install-test  ## unit tests only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install-test  ## integration tests only (Milvus Lite and a Milvus server)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: install-test  ## end-to-end tests only (kinship serve all as subprocesses)
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

protos: install-test  ## regenerate src/kinship/v1 from protos/
	$(PY) scripts/gen_protos.py

# buf (from npm) lints the contracts and checks that kinship.v1 only grows, against the
# commit that first published it.
BUF := .buf/node_modules/.bin/buf
CONTRACTS_BORN := 1915285

$(BUF):
	npm install --silent --no-audit --no-fund --prefix .buf @bufbuild/buf@1.75.0

check-contracts: $(BUF)  ## buf lint and buf breaking (against the first kinship.v1) over protos/
	cd protos && ../$(BUF) lint .
	rm -rf .buf/published && mkdir -p .buf/published
	git archive $(CONTRACTS_BORN) protos | tar -x -C .buf/published
	cd protos && ../$(BUF) breaking . --against ../.buf/published/protos

lint: install-test  ## ruff over the code, and the import contract (applications -> services -> base)
	$(PIP) install -q ruff
	$(VENV)/bin/ruff check src services tests scripts
	$(PY) scripts/lint_imports.py

clean:  ## remove .venv and caches
	rm -rf $(VENV) .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The container image (docs/deploy.md): buildah, no Docker engine. Where no registry is
# reachable the base is made from Debian packages (mmdebstrap); BASE_IMAGE=... names another.
.PHONY: image
image:  ## build the container image kinship-search:<version> with buildah
	scripts/build_image.sh
