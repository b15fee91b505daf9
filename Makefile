# Everything a fresh Debian/Ubuntu machine needs: a virtualenv, the package, and the two
# Debian packages the preview engine uses (espeak-ng for speech, Noto CJK for subtitles).
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.installed

.PHONY: serve test test-postgres check bench system-deps

# torch goes in first, pinned: 2.13.0 is the CPU wheel on this machine's disk, and the ltx2
# extra's range is then met, so pip never fetches a multi-GB CUDA build. On GPU hosts install
# the CUDA torch of your choice before `make`.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[dev,ltx2,postgres,s3,redis,ray]'
	touch $(STAMP)

system-deps:
	@if ! command -v espeak-ng >/dev/null || ! fc-list 2>/dev/null | grep -qi "Noto Sans CJK" \
		|| ! command -v chromium >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq --no-install-recommends espeak-ng fonts-noto-cjk fonts-dejavu-core fontconfig chromium; \
	fi
	@# PostgreSQL (make test-postgres) and Redis (the shared rate-limit test).
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v redis-server >/dev/null; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq --no-install-recommends postgresql redis-server; \
	fi

serve: $(STAMP) system-deps
	$(VENV)/bin/runbase serve --host $(HOST) --port $(PORT)

test: $(STAMP) system-deps
	$(VENV)/bin/pytest

# The suite's database tests against a throwaway PostgreSQL cluster (127.0.0.1, fsync off);
# each test gets a fresh database (tests/support.py). PG_TESTS narrows it; the directories
# below are those that touch the database.
PG_TESTS ?= tests/http tests/core tests/dispatch tests/e2e tests/storage tests/test_cli.py tests/client
test-postgres: $(STAMP) system-deps
	@pgdir=$$(mktemp -d /tmp/runbase-pg.XXXXXX); \
	url=$$(scripts/pg-throwaway start $$pgdir) || { rm -rf $$pgdir; exit 1; }; \
	RUNBASE_TEST_DATABASE_URL=$$url $(VENV)/bin/pytest $(PG_TESTS); status=$$?; \
	scripts/pg-throwaway stop $$pgdir; exit $$status

check: $(STAMP)
	scripts/check

bench: $(STAMP) system-deps
	$(VENV)/bin/python benchmarks/api.py
	$(VENV)/bin/python benchmarks/preview.py
