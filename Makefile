# market-data-worker: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test bench soak check-config clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps re-run the install whenever the package metadata changes.
$(VENV)/.run-deps: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-deps

## run: install into .venv and run the whole supervised tree in the foreground (Ctrl-C stops it,
## exit 0), its state in ./var (STATE_DIR=); CONFIG=file.toml runs with that config over the embedded defaults
# supervisor.foreground gives mdwd the terminal, so a Ctrl-C stops mdwd cleanly without killing make.
STATE_DIR ?= $(CURDIR)/var
run: $(VENV)/.run-deps
	$(BIN)/python -m supervisor.foreground $(BIN)/mdwd --state-dir $(STATE_DIR) $(if $(CONFIG),--config $(CONFIG))

## test: install with the test extra (and promtool) and run the test suite in TEST_JOBS (2) processes
TEST_JOBS ?= 2
test: $(VENV)/.test-deps promtool
	$(BIN)/python -m pytest -n $(TEST_JOBS) $(PYTEST_ARGS)

# promtool checks deploy/prometheus in the tests. It comes from Debian's prometheus package,
# unpacked into .venv rather than installed: installing it would start a Prometheus server.
PROMTOOL := $(VENV)/promtool/bin/promtool
.PHONY: promtool
promtool: $(BIN)/python
	@command -v promtool >/dev/null || test -x $(PROMTOOL) || { rm -rf $(VENV)/promtool.deb \
	  && mkdir -p $(VENV)/promtool.deb $(dir $(PROMTOOL)) && cd $(VENV)/promtool.deb \
	  && { apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; }; } \
	  && dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool > ../promtool/bin/promtool.new \
	  && chmod 755 ../promtool/bin/promtool.new && mv ../promtool/bin/promtool.new ../promtool/bin/promtool \
	  && cd .. && rm -rf promtool.deb; }

## test-systemd: as root, boot a real systemd in a cached Debian root and test the service under it
.PHONY: test-systemd
test-systemd: $(VENV)/.test-deps
	@command -v debootstrap >/dev/null && command -v unshare >/dev/null && command -v nsenter >/dev/null \
	  && command -v systemd-analyze >/dev/null || { apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap util-linux systemd; }
	$(BIN)/python -m pytest -m systemd $(PYTEST_ARGS)

## test-browser: the status page in Debian's headless chromium (installed if missing), driven by Playwright
.PHONY: test-browser
test-browser: $(VENV)/.test-deps
	@command -v chromium >/dev/null || { apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	$(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

## bench: run every benchmark in bench/ and print its figures
bench: $(VENV)/.test-deps
	$(BIN)/python -m bench

## soak: a chaos soak of one real tree (MINUTES=3; SEED= replays a run; SKIP= or ONLY=class,... selects faults)
MINUTES ?= 3
soak: $(VENV)/.test-deps
	$(BIN)/python -m tests.soak --minutes $(MINUTES) $(if $(SEED),--seed $(SEED)) $(if $(SKIP),--skip $(SKIP)) \
	  $(if $(ONLY),--only $(ONLY)) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var build *.egg-info
