.PHONY: check test lint types imports format proto bench

VENV ?= .venv
BIN := $(VENV)/bin

check: lint types imports test

lint:
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/ruff check src tests bench examples

types:
	$(BIN)/mypy

imports:
	$(BIN)/lint-imports

test:
	$(BIN)/python -m pytest -q

format:
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

proto:
	bash scripts/gen_proto.sh
