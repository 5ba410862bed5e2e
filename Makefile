# trackflow — one-command dev loop. `make run` and `make test` set everything up on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: install promtool chromium run test test-unit test-integration check bench bench-smoke bench-profile clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing trackflow and its dependencies into $(VENV) (first run only)..."
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

promtool: ## promtool for the deploy tests (Debian package prometheus; installed as root when missing)
	@command -v promtool >/dev/null 2>&1 || { \
	  test "$$(id -u)" = 0 || { echo "promtool missing: sudo apt-get install -y --no-install-recommends prometheus"; exit 1; }; \
	  echo "installing Debian package prometheus (for promtool)..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  if [ -d /run/systemd/system ]; then systemctl disable --now prometheus.service; fi; }
	@promtool --version | head -1

chromium: ## headless Chromium for the tracker.js browser tests (Debian package; installed as root when missing)
	@test -x /usr/bin/chromium || { \
	  test "$$(id -u)" = 0 || { echo "chromium missing: sudo apt-get install -y --no-install-recommends chromium"; exit 1; }; \
	  echo "installing Debian package chromium (for the tracker.js browser tests)..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@/usr/bin/chromium --version 2>/dev/null | head -1

run: install ## the whole local stack in the foreground (Ctrl-C stops it)
	$(VENV)/bin/trackflow up

test: install promtool chromium ## every tier: unit, wiring, integration on a real Kafka and PostgreSQL
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install promtool
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install chromium
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

check: install ## lint and type-check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy trackflow ingest_gateway processors schemas

bench: install ## the full benchmark (minutes); results in bench/results/
	$(PY) -m bench
	$(PY) -m bench.enrich_bench
	$(PY) -m bench.drain

bench-smoke: install ## a short run of every benchmark step, as CI runs it
	$(PY) -m bench --smoke
	$(PY) -m bench.enrich_bench --events 2000
	$(PY) -m bench.drain --events 1000

bench-profile: install ## profile the gateway and the worker under load (pyinstrument)
	$(PY) -m bench.profile

clean:
	rm -rf $(VENV) .trackflow .pytest_cache .mypy_cache .ruff_cache bench/.tools
