# Coda Lite service image: `coda-lite serve` on port 8765 (GET /metrics, /health, POST /v1/turns).
# Built by docker-compose.yml; by hand: docker build -t coda-lite:local .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    CODA_HOME=/data

# espeak-ng is the TTS backend (run as a subprocess, no shell).
RUN apt-get update \
    && apt-get install -y --no-install-recommends espeak-ng \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# torch first and pinned, as the Makefile does, so sentence-transformers does not pull another.
# Note: from PyPI, torch==2.13.0 on linux/x86_64 is the CUDA build (several GB). For the small
# CPU-only wheel add `--index-url https://download.pytorch.org/whl/cpu` here; that index was not
# reachable where this file was written, so the plain pin stays the default.
RUN pip install torch==2.13.0

COPY pyproject.toml README.md ./
COPY coda_lite ./coda_lite
COPY coda_otel ./coda_otel
RUN pip install '.[embeddings,speech]'

RUN useradd --create-home --uid 10001 coda \
    && mkdir -p /data \
    && chown coda /data
USER coda
VOLUME ["/data"]
EXPOSE 8765

HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/health/live', timeout=3)"]

CMD ["coda-lite", "serve", "--host", "0.0.0.0", "--port", "8765"]
