# One entry point per task. Each target installs what it needs first (scripts/bootstrap.sh).
.PHONY: serve test docs lint typecheck unit integration bench format dashboard chart

serve:  ## start the API on http://localhost:8000 with embedded defaults
	@scripts/bootstrap.sh none
	uv run agentic-backend serve

test: ## install everything, then lint, type-check and run every test
	@scripts/bootstrap.sh all
	uv run ruff format --check src tests bench monitoring scripts
	uv run ruff check src tests bench monitoring scripts
	uv run mypy
	NO_MKDOCS_2_WARNING=1 uv run mkdocs build --strict --quiet --site-dir build/site
	uv run pytest

docs: ## serve the documentation site on http://127.0.0.1:8001 (rebuilt on every change)
	@scripts/bootstrap.sh none
	NO_MKDOCS_2_WARNING=1 uv run mkdocs serve --dev-addr 127.0.0.1:8001

unit:
	uv run pytest tests/unit

integration:
	uv run pytest tests/integration

format:
	uv run ruff format src tests bench monitoring scripts
	uv run ruff check --fix src tests bench monitoring scripts

chart: ## regenerate the Helm chart's copies of monitoring/ (its PrometheusRule and dashboard)
	uv run python scripts/chart_files.py

dashboard: ## regenerate monitoring/grafana/dashboards/agentic-backend.json from its Python source
	uv run python monitoring/grafana/generate.py

bench: ## the benchmarks of bench/ (minutes; not part of the tests)
	@scripts/bootstrap.sh all
	uv run python -m bench.http_overhead
	uv run python -m bench.exposition
