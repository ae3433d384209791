# Every target bootstraps .venv on a fresh machine; the stamp re-installs when
# pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.stamp
PY     := $(VENV)/bin/python

# Only the directories that exist, so lint works while parts are still missing.
LINT_DIRS   := $(wildcard shoal tests bench examples)
FORMAT_DIRS := $(wildcard shoal tests bench examples)

.PHONY: all venv demo tour test lint bench soak clean

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

test: $(STAMP)
	$(PY) -m pytest -n 2 tests

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
	$(PY) -m bench.events

soak: $(STAMP)
	$(PY) -m shoal.raft.sim --seeds 50000 --members 3,5

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis dist build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf *.egg-info
