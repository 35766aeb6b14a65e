# The Agentic Backend API. Build: docker build -t agentic-backend .   Run: docker compose up -d
FROM python:3.11-slim

COPY --from=ghcr.io/astral-sh/uv:0.9 /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH="/app/.venv/bin:$PATH" \
    AGENTIC_DATA_DIR=/data

WORKDIR /app
# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-default-groups --no-install-project
COPY src ./src
RUN uv sync --locked --no-default-groups

RUN useradd --system --uid 10001 --no-create-home agentic && mkdir /data && chown agentic /data
USER agentic
VOLUME /data
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/monitoring/health', timeout=2)"]

CMD ["agentic-backend", "serve", "--host", "0.0.0.0", "--port", "8000"]
