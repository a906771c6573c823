# Office Gateway — the two commands: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the lab and the tests need (real peers: NUT, nftables, namespaces, Chromium, systemd tools)
DEB_PKGS := nut-server nut-client nftables iproute2 chromium procps kmod udev systemd snmp libfaketime wrk
PYTEST_ARGS ?=

.PHONY: run test test-full lint bench soak deps venv image-check image clean help

help:
	@echo "make run    - install what is missing, start the lab office and the daemon, print the page address"
	@echo "make test   - install what is missing and run the whole suite"
	@echo "make lint   - ruff, mypy (strict on gateway/core), import-direction check"
	@echo "make bench  - benchmarks; writes bench/results.json"
	@echo "make soak / make test-full / make image-check / make image"

deps:
	@bash gateway/lab/deps.sh $(DEB_PKGS)

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	@$(VPY) -m pip install -q --upgrade pip
	@# nut2's setup.py imports telnetlib (removed in 3.13): give it the backport and build it in this venv
	@if $(VPY) -c 'import sys; sys.exit(sys.version_info < (3, 13))'; then \
	  $(VPY) -m pip install -q standard-telnetlib setuptools wheel && \
	  $(VPY) -m pip install -q --no-build-isolation 'nut2>=2.1,<3'; fi
	@$(VPY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

run: deps venv
	@$(VENV)/bin/gateway lab run

test: deps venv
	@$(VPY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

test-full: deps venv
	@GATEWAY_TEST_FULL=1 $(VPY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

lint: venv
	@$(VENV)/bin/ruff check gateway web hw tests
	@$(VENV)/bin/mypy gateway/core
	@$(VPY) -m gateway.lint_imports

bench: deps venv
	@mkdir -p bench
	@$(VPY) -m tests.bench.run

soak: deps venv
	@$(VPY) -m tests.bench.soak

image-check: venv
	@bash image/check.sh

image:
	@bash image/build.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
