# Every target bootstraps .venv on a fresh machine; the stamp re-installs when
# pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.stamp
PY     := $(VENV)/bin/python

# Only the directories that exist, so lint works while parts are still missing.
LINT_DIRS   := $(wildcard shoal tests bench examples)
FORMAT_DIRS := $(wildcard shoal tests bench examples)

.PHONY: all venv debs demo tour test screenshots fuzz lint bench soak clean

all: test

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

# The main job: the blog (users + articles, two replicas each) on `shoal up`.
demo: $(STAMP)
	$(PY) -m examples.blog.demo

# The earlier tours: Raft in the simulator, then a real single-member control plane.
tour: $(STAMP)
	$(PY) -m shoal.raft.sim.demo
	$(PY) -m examples.control_plane_tour

test: $(STAMP) debs
	$(PY) -m pytest -n 2 tests

# Debian packages that tests drive as real servers: chromium (the dashboard's browser
# tests, through Playwright's executable_path, never a browser it downloads) and
# redis-server (the events' Redis Streams adapter). Installed when missing and possible
# (root with apt-get); otherwise those tests skip and say why.
DEBS := chromium:chromium redis-server:redis-server nats-server:nats-server
debs:
	@missing=""; for pair in $(DEBS); do command -v $${pair%%:*} >/dev/null 2>&1 || \
		missing="$$missing $${pair##*:}"; done; \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } || \
		echo "cannot install$$missing here: the tests that need them will skip"

# Refresh docs/screenshots/ (the README shows them) from a run of the browser tests.
screenshots: $(STAMP) debs
	SHOAL_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -p no:xdist tests/dashboard/test_browser.py \
		tests/dashboard/test_acl_browser.py

# Schema-based fuzzing of a real member's HTTP API (schemathesis); `make test` runs a
# bounded version. The bar: 0 server errors, 0 schema violations.
fuzz: $(STAMP)
	$(PY) -m tests.fuzz.run --max-examples 100

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_DIRS)
	$(VENV)/bin/ruff format --check $(FORMAT_DIRS)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench.raft_core
	$(PY) -m bench.control_plane
	$(PY) -m bench.registry_config
	$(PY) -m bench.compute
	$(PY) -m bench.balance
	$(PY) -m bench.resilience
	$(PY) -m bench.gateway
	$(PY) -m bench.linkerd_balancing
	$(PY) -m bench.sdk_overhead
	$(PY) -m bench.events
	$(PY) -m bench.security
	$(PY) -m bench.client_wire

soak: $(STAMP)
	$(PY) -m shoal.raft.sim --seeds 50000 --members 3,5

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis dist build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf *.egg-info
