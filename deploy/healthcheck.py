"""The container's health probe: GET /healthz of the running bot; exit 0 when it answers 200, else 1.

Where the bot serves /healthz follows its settings, read from the same environment: HEALTH__LISTEN when set,
else the webhook listener (TELEGRAM__WEBHOOK_LISTEN, default 0.0.0.0:8080) in webhook mode. Standard library
only: it runs every few seconds and must start fast.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def health_url(env: dict[str, str]) -> str | None:
    """The URL of the bot's /healthz inside this container, or None when it serves none."""
    listen = env.get("HEALTH__LISTEN") or (
        (env.get("TELEGRAM__WEBHOOK_LISTEN") or "0.0.0.0:8080") if env.get("TELEGRAM__WEBHOOK_URL") else None
    )
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    """Probe once and say why when unhealthy."""
    url = health_url(dict(os.environ))
    if url is None:
        print("no health endpoint: set HEALTH__LISTEN (polling) or TELEGRAM__WEBHOOK_URL (webhook)")
        return 1
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:  # noqa: S310 - our own loopback URL
            status = reply.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"{url}: {exc}")
        return 1
    if status != 200:
        print(f"{url}: HTTP {status}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
