# The two commands a newcomer needs: `make run` and `make test`.
# Both create .venv on first use; nothing is installed outside it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/monitor.yaml

.PHONY: run once test lint typecheck pytest systemd-test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/feed-monitor run --config $(CONFIG)

once: $(BIN)/.installed
	$(BIN)/feed-monitor once --config $(CONFIG)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy --strict monitor tests $(wildcard bench/*.py)

pytest: $(BIN)/.installed
	$(BIN)/pytest

test: lint typecheck pytest

# Boots a Debian root under systemd-nspawn with the real unit (needs root;
# installs debootstrap and systemd-container if missing; cached between runs).
systemd-test:
	bash systemd/boot-test.sh

clean:
	rm -rf $(VENV) state .mypy_cache .pytest_cache .ruff_cache
