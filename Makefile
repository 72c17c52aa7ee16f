# zyra-k8s: the two commands a fresh machine needs are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# pip resolves against this file's pins; the stamp re-installs when pyproject.toml changes
STAMP := $(VENV)/.installed

.PHONY: help install apt-test run test test-fast catalogue clean

help:
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/' | sort

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e '.[zyra,operator,test]'
	@touch $@

install: $(STAMP) ## create .venv with the service, zyra and the test tools

APT_TEST := redis-server nginx-light

# RUNLEVEL=1: Debian's maintainer scripts must not start the packages' own services (nginx on :80);
# the tests start their own servers on loopback
apt-test: ## Debian packages the tests need (redis-server; nginx-light for the TLS proxy example)
	@missing=$$(for p in $(APT_TEST); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	[ -z "$$missing" ] || { export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1; apt-get install -y -qq $$missing >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; }; }

var/api-key:
	@mkdir -p var && umask 077 && $(PY) -c 'import secrets; print(secrets.token_urlsafe(32))' > $@
	@echo "generated an API key in $@ (send it as X-API-Key)"

run: install var/api-key ## install, then serve the API on 127.0.0.1:8000 (embedded default)
	@echo "API key: $$(cat var/api-key)   docs: http://127.0.0.1:8000/docs"
	ZYRA_API_KEYS_FILE=$${ZYRA_API_KEYS_FILE:-var/api-key} $(PY) -m zyrak8s_api

test: install apt-test ## install everything, bring up the local cluster when no KUBECONFIG is given, run every test
	$(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: install apt-test ## every test that needs no cluster
	$(VENV)/bin/pytest -q -m 'not cluster' $(PYTEST_ARGS)

catalogue: install ## regenerate service/zyrak8s_core/catalogue.json from the installed zyra
	$(PY) -m zyrak8s_core.catalogue_build

clean:
	rm -rf $(VENV) var build *.egg-info

include hack/cluster.mk
include hack/manifests.mk
include hack/kind.mk
