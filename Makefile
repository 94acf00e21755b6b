# Two commands do all set-up on a fresh machine:
#   make demo   - install into .venv, then run the main job on the embedded default
#   make test   - install into .venv, lint, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Dev/CI pin: the CPU build of torch. The library itself only asks for a range.
TORCH_PIN ?= torch==2.13.0
# Extras to install: dev (everything, and the test tools); worker, gateway,... for images.
EXTRAS ?= dev

.PHONY: install demo test test-fast lint bench browser

$(BIN)/vesselzip: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(BIN)/vesselzip

install: $(BIN)/vesselzip

demo: install
	$(BIN)/vesselzip demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy -p vesselzip -p vesselzip_queue -p vesselzip_api -p vesselzip_worker

# The browser tests drive Debian's chromium through its chromedriver; installed here
# when missing (as root, with apt).
browser:
	@command -v chromedriver >/dev/null || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }

test: lint browser
	$(BIN)/python -m pytest -q

# Everything but the browser tier (quicker while working on the code).
test-fast: lint
	$(BIN)/python -m pytest -q -m "not browser"

bench: install
	$(BIN)/python bench/codec_throughput.py
