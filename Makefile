# One entry point per task. Each target installs what it needs first (scripts/bootstrap.sh).
.PHONY: serve test lint typecheck unit integration bench format dashboard

serve:  ## start the API on http://localhost:8000 with embedded defaults
	@scripts/bootstrap.sh none
	uv run agentic-backend serve

test: ## install everything, then lint, type-check and run every test
	@scripts/bootstrap.sh all
	uv run ruff format --check src tests bench monitoring
	uv run ruff check src tests bench monitoring
	uv run mypy
	uv run pytest

unit:
	uv run pytest tests/unit

integration:
	uv run pytest tests/integration

format:
	uv run ruff format src tests bench monitoring
	uv run ruff check --fix src tests bench monitoring

dashboard: ## regenerate monitoring/grafana/dashboards/agentic-backend.json from its Python source
	uv run python monitoring/grafana/generate.py

bench: ## the benchmarks of bench/ (minutes; not part of the tests)
	@scripts/bootstrap.sh all
	uv run python -m bench.http_overhead
	uv run python -m bench.exposition
