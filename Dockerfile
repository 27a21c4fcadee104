FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATABASE__PATH=/data/tiktok-bot.sqlite3

RUN useradd --create-home --uid 10001 bot && mkdir /data && chown bot:bot /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY services ./services
COPY sandbox ./sandbox
RUN pip install --no-compile .

USER bot
VOLUME ["/data"]
CMD ["tiktok-bot", "run"]
