# Everything a fresh Debian/Ubuntu machine needs: a virtualenv, the package, and the Debian
# packages: espeak-ng and Noto CJK for the preview engine (speech, subtitles); for the tests
# also Chromium (the playground test), PostgreSQL and Redis.
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SERVE_STAMP := $(VENV)/.installed-serve
TEST_STAMP := $(VENV)/.installed-test

.PHONY: serve test test-postgres check bench system-deps test-system-deps

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

# The server: the package with its `server` extra (no torch, no test tools). The package
# without extras is the client alone (`pip install runbase`: the SDK and client commands).
$(SERVE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e '.[server]'
	touch $@

# Tests: every extra. torch goes in first, pinned: 2.13.0 is the CPU wheel on this machine's
# disk, and the ltx2 extra's range is then met, so pip never fetches a multi-GB CUDA build.
# On GPU hosts install the CUDA torch of your choice before `make`.
$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[server,dev,ltx2,postgres,s3,redis,ray]'
	touch $@ $(SERVE_STAMP)

system-deps:
	@if ! command -v espeak-ng >/dev/null || ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq --no-install-recommends espeak-ng fonts-noto-cjk fonts-dejavu-core fontconfig; \
	fi

test-system-deps: system-deps
	@if ! command -v chromium >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| ! command -v redis-server >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq --no-install-recommends chromium postgresql redis-server; \
	fi

serve: $(SERVE_STAMP) system-deps
	@echo "The runbase command is $(VENV)/bin/runbase (or run: source $(VENV)/bin/activate)."
	$(VENV)/bin/runbase serve --host $(HOST) --port $(PORT)

# The suite on every core, a test file per process (module fixtures start servers once).
PYTEST_PARALLEL ?= -n auto --dist loadfile
test: $(TEST_STAMP) test-system-deps
	$(VENV)/bin/pytest $(PYTEST_PARALLEL)

# The suite's database tests against a throwaway PostgreSQL cluster (127.0.0.1, fsync off);
# each test gets a fresh database (tests/support.py). PG_TESTS narrows it; the directories
# below are those that touch the database.
PG_TESTS ?= tests/http tests/core tests/dispatch tests/e2e tests/storage tests/test_cli.py tests/client
test-postgres: $(TEST_STAMP) test-system-deps
	@pgdir=$$(mktemp -d /tmp/runbase-pg.XXXXXX); \
	url=$$(scripts/pg-throwaway start $$pgdir) || { rm -rf $$pgdir; exit 1; }; \
	RUNBASE_TEST_DATABASE_URL=$$url $(VENV)/bin/pytest $(PYTEST_PARALLEL) $(PG_TESTS); status=$$?; \
	scripts/pg-throwaway stop $$pgdir; exit $$status

check: $(TEST_STAMP)
	scripts/check

bench: $(TEST_STAMP) test-system-deps
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	$(VENV)/bin/python benchmarks/api.py
	$(VENV)/bin/python benchmarks/preview.py
