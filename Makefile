# The README's two commands: `make demo` (the main job) and `make test` (the test suite).
# Both set everything up first: a virtual environment in .venv with pinned dependencies, and the data
# (and, for the tests, headless Chromium to render the HTML report).
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test setup data browser benchmarks clean

demo: setup data
	$(VENV)/bin/ticketlab demo

test: setup data browser
	$(PYTHON) -m pytest

setup: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(PYTHON) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(INSTALLED)

data:
	bash scripts/get-data.sh

# Headless Chromium for the HTML report's browser test (installed from Debian when root; else the test skips).
browser:
	@bash scripts/get-chromium.sh

benchmarks: setup data
	$(PYTHON) benchmarks/masking_overhead.py
	$(PYTHON) benchmarks/loop_overhead.py

clean:
	rm -rf $(VENV) runs
