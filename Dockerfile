# Two stages: the first builds a wheel, the second installs only that wheel and its runtime dependencies into a
# virtualenv, so the image holds no build tools, no source tree, no tests, no dev extra and no pip cache.
# The wheel keeps `sandbox/` (the loopback emulators, ~0.6 MB): the CLI imports it, and `docker run --rm
# tiktok-bot demo` is the offline check that an image works, with no token and no network.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY services ./services
COPY sandbox ./sandbox
RUN python -m venv /opt/venv \
 && pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-compile /wheels/*.whl

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    DATABASE__PATH=/data/tiktok-bot.sqlite3 \
    HEALTH__LISTEN=127.0.0.1:8081
# HEALTH__LISTEN: /healthz on loopback for the HEALTHCHECK below in polling mode (webhook mode also serves it
# on the webhook listener). Override it to expose /healthz and /metrics to a scraper.

RUN useradd --create-home --uid 10001 bot && mkdir /data && chown bot:bot /data
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /usr/local/bin/tiktok-bot-healthcheck

USER bot
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/bin/tiktok-bot-healthcheck"]
CMD ["tiktok-bot", "run"]
