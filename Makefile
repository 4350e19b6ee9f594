# Two commands do all the set-up: `make run` starts the service, `make test` runs the suite.
# Each creates .venv and installs the project on first use (and again when pyproject.toml changes).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv

# requirements.lock pins every package the service and its tests install (`make lock` writes it again).
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c requirements.lock -e '.[test]'
	touch $@

.PHONY: run test lock audit bench bench-check bench-audit bench-inbound bench-soak
run: $(VENV)/.installed
	$(VENV)/bin/consent-svc serve $(ARGS)

# Browser tests drive Debian's Chromium (browsers cannot be downloaded here): installed on first use.
/usr/bin/chromium:
	command -v apt-get >/dev/null && (apt-get install -y -q chromium >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null))

# The browser tests audit each page for accessibility with axe-core, from the npm registry, on first use.
AXE = .cache/npm/node_modules/axe-core/axe.min.js
$(AXE):
	npm install --silent --no-audit --no-fund --prefix .cache/npm axe-core@4.14.1

test: $(VENV)/.installed /usr/bin/chromium $(AXE)
	$(VENV)/bin/pytest $(ARGS)

lock: $(VENV)/.installed
	$(VENV)/bin/pip install -q pip-tools==7.6.2
	$(VENV)/bin/pip-compile -q --extra test --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

# Known vulnerabilities in the locked packages (PyPI's advisories via pip-audit); .ci/run runs it.
audit: $(VENV)/.installed
	$(VENV)/bin/python .ci/audit requirements.lock

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/ingest.py $(ARGS)

bench-check: $(VENV)/.installed
	$(VENV)/bin/python bench/check.py $(ARGS)

bench-audit: $(VENV)/.installed
	$(VENV)/bin/python bench/audit.py $(ARGS)

bench-inbound: $(VENV)/.installed
	$(VENV)/bin/python bench/inbound.py $(ARGS)

bench-soak: $(VENV)/.installed
	$(VENV)/bin/python bench/soak.py $(ARGS)
