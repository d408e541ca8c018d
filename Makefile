# Every target sets itself up: a fresh machine needs only Python 3.11+, git, make and Node.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint demo redrive package deploy clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m local

test: $(STAMP) lint
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check functions pipeline api local tests

demo: $(STAMP)
	$(PY) -m local.demo

# Local stack by default (a running `make run`); STAGE=name for a deployed stage, with AWS credentials.
redrive: $(STAMP)
	$(PY) -m pipeline.redrive $(if $(STAGE),--stage $(STAGE),)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
