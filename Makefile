# Two set-up commands: `make test` and `make demo`. Both work on a fresh Debian host as root.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEBS    := docker-registry skopeo umoci openssl zstd time
BENCH_DEBS := curl

.PHONY: test lint demo bench debs venv clean pyc

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Byte-compile the package as pip does for a regular install: an editable install never
# writes .pyc when PYTHONDONTWRITEBYTECODE is set, and every run then compiles ~60 modules.
pyc: $(STAMP)
	@$(BIN)/python -m compileall -q mirror

# Debian's CNCF Distribution and skopeo: the real parts the tests talk to.
debs:
	@missing=""; for p in $(DEBS) $(EXTRA_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# Two pytest-xdist workers, a test file each at a time (a file's registries start once):
# the suite waits on registries, subprocesses and deadlines for two thirds of its wall time,
# so two workers take about half as long on 2 cores. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: debs $(STAMP) pyc
	$(BIN)/pytest -q -rs -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check mirror tests bench
	$(BIN)/ruff format --check mirror tests bench
	$(BIN)/mypy mirror bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build *.egg-info

# The whole mission on loopback: a connected lab, keygen, export, verify, inspect, import.
demo: debs $(STAMP) pyc
	$(BIN)/python -m mirror.lab.demo $(DEMO_ARGS)

# Every benchmark side by side with skopeo in one run; rewrites docs/BENCHMARKS.md.
bench: EXTRA_DEBS = $(BENCH_DEBS)
bench: debs $(STAMP) pyc
	$(BIN)/python bench/run.py
