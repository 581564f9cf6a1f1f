# The README's two commands: `make demo` and `make test`. Both set up .venv first when needed,
# with the exact versions of requirements/lock.txt (pyproject.toml itself carries ranges).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt
# Older-but-compatible versions a user's environment may already hold (the lower bounds).
OLDER := numpy==2.0.2 scipy==1.13.1 pillow==11.0.0
# The torch pair on this machine's disk; the other dependencies float in `test-compat`.
TORCH_PAIR := torch==2.14.1 torchvision==0.29.1
QUIET := --quiet --progress-bar off

.PHONY: demo test lint setup lock test-lowest test-compat clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(QUIET) --upgrade pip
	$(VENV)/bin/python -m pip install $(QUIET) --constraint $(LOCK) -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cvd demo $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -n 2 $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Re-resolve the newest versions pyproject.toml allows and write them to the lock.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install $(QUIET) --upgrade pip
	.venv-lock/bin/python -m pip install $(QUIET) '.[dev]' $(TORCH_PAIR)
	{ sed -n '/^#/p' $(LOCK); .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^cvd'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .venv-lock

# The test-suite against every lower bound in pyproject.toml (requirements/lowest.txt).
test-lowest:
	rm -rf .venv-lowest && $(PYTHON) -m venv .venv-lowest
	.venv-lowest/bin/python -m pip install $(QUIET) --constraint requirements/lowest.txt -e '.[dev]'
	.venv-lowest/bin/python -m pytest -n 2 -p no:cacheprovider $(ARGS)
	rm -rf .venv-lowest

# A user's environment: older numpy/scipy/pillow are kept by a plain `pip install .`, which then
# works; then every dependency but the torch pair upgraded to the newest allowed version, and the
# test-suite run there, so a broken upper bound is found by us first.
test-compat:
	rm -rf .venv-compat && $(PYTHON) -m venv .venv-compat
	.venv-compat/bin/python -m pip install $(QUIET) $(OLDER)
	.venv-compat/bin/python -m pip install $(QUIET) . $(TORCH_PAIR)
	.venv-compat/bin/python scripts/check_installed.py $(OLDER)
	.venv-compat/bin/cvd synth --layout university1652 --locations 4 --views-per-location 2 \
		--size 32 --seed 0 --out .venv-compat/world
	.venv-compat/bin/python -m pip install $(QUIET) --upgrade --upgrade-strategy eager -e '.[dev]' $(TORCH_PAIR)
	.venv-compat/bin/python -m pip list --format=freeze | grep -iE '^(numpy|scipy|pillow|timm|onnx|onnxruntime|faiss-cpu|matplotlib)=='
	.venv-compat/bin/python -m pytest -n 2 -p no:cacheprovider $(ARGS)
	rm -rf .venv-compat

clean:
	rm -rf $(VENV) .venv-lowest .venv-compat .venv-lock build *.egg-info src/*.egg-info
