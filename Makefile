# Every target sets itself up: a fresh machine needs only Python 3.11+, git, make and Node.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint demo sync bench redrive package deploy clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m local

# The template tests read what `make package` builds; cfn-lint checks it first.
test: $(STAMP) lint package
	$(VENV)/bin/cfn-lint
	$(PY) -m pytest -q --cov --cov-report=term-missing:skip-covered

lint: $(STAMP)
	$(PY) -m ruff check functions pipeline api local ops bench tests
	$(PY) -m mypy
	$(VENV)/bin/actionlint

demo: $(STAMP)
	$(PY) -m local.demo

# Reconcile with Jira's REST API through a running `make run`; PROJECT=KEY and SINCE=ISO-8601 narrow it.
sync: $(STAMP)
	$(PY) -m local.sync $(if $(PROJECT),--project $(PROJECT),) $(if $(SINCE),--since $(SINCE),)

# SIZES=1000,10000,100000 by default; `make bench SIZES=1000` for a quick look.
bench: $(STAMP)
	$(PY) -m bench $(if $(SIZES),--sizes $(SIZES),)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

package: $(STAMP) node_modules/.package-lock.json
	$(PY) -m ops.package --stage $(or $(STAGE),dev)

deploy: $(STAMP) node_modules/.package-lock.json
	$(PY) -m ops.deploy --stage $(or $(STAGE),$(error set STAGE=name))

# Local stack by default (a running `make run`); STAGE=name for a deployed stage, with AWS credentials.
redrive: $(STAMP)
	$(PY) -m pipeline.redrive $(if $(STAGE),--stage $(STAGE),)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
