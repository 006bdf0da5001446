# make run   - set up .venv and run the whole daemon under supervisord (foreground; Ctrl-C stops it)
# make test  - set up .venv and run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-faults bench install browser clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m compileall -q proto bus services deploy
	touch $(STAMP)

run: $(STAMP)
	mkdir -p -m 0700 run
	mkdir -p logs/live
	@# deploy/launch.py refuses (one line naming the pids) while processes of an earlier daemon still
	@# run on run/, then execs supervisord
	$(PY) -m deploy.launch -c deploy/supervisord.conf

# Three workers on 2 cores, one test file each at a time: a module's daemon stays in one worker,
# and every daemon has its own temp dirs and ports. Most of a daemon test's time is waiting (for a
# heartbeat, a deadman, a reconnect), so a third worker fills it: 474 s against 599 s with two.
# Long cases are marked slow and run by test-faults. Cases that load both cores on purpose, that
# supervisord's clock judges, or that bound a round trip or a rate by the clock are marked alone
# and run last, by themselves.
test: $(STAMP) browser
	$(PY) -m pytest -q -m "not slow and not alone" -n 3 --dist loadfile
	$(PY) -m pytest -q -m "alone and not slow"

test-faults: $(STAMP)
	$(PY) -m pytest -q -m "not alone" -n 2 --dist loadfile
	$(PY) -m pytest -q -m "alone"

# make bench: every benchmark (~20 min), the first being `regress`, which fails (exit 1) when
# tick-to-order ours/raw is over 1.2x the figure recorded in bench/baseline.json.
bench: $(STAMP)
	$(PY) -m bench

# The console's browser tests drive Debian's Chromium through Playwright (no browser download). Installed
# here when missing and this is root with apt-get; otherwise those tests skip and say why.
browser:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }; } && \
	  echo "installed Debian's chromium for the console's browser tests"; } || \
	  echo "no /usr/bin/chromium and it cannot be installed here: the console's browser tests will skip"

clean:
	rm -rf $(VENV) run .pytest_cache
