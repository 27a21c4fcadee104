"""A throwaway certificate authority for the sandbox's https listeners (trustme, made at run time).

`SandboxCA().write_ca(path)` gives the PEM to point UPSTREAM_CA_FILE at; `server_context()` is the listener's
TLS context, with a certificate for loopback and TikTok's names, so the bot's real TLS path (curl-impersonate
or httpx) verifies it like any other site.
"""

from __future__ import annotations

import ssl
from pathlib import Path

SERVER_NAMES = (
    "127.0.0.1",
    "localhost",
    "tiktok.com",
    "*.tiktok.com",
    "*.tiktokv.com",
    "*.tiktokcdn.com",
    "*.tiktokcdn-us.com",
)


class SandboxCA:
    """A CA made for this run, and one server certificate it signed."""

    def __init__(self, names: tuple[str, ...] = SERVER_NAMES) -> None:
        try:
            import trustme
        except ImportError as exc:  # a dev dependency: production never serves TLS from the sandbox
            raise RuntimeError(
                "the sandbox's https listener needs trustme (pip install -e '.[dev]')"
            ) from exc
        self._ca = trustme.CA(organization_name="tiktok-bot sandbox")
        self._cert = self._ca.issue_cert(*names)

    def write_ca(self, path: str | Path) -> Path:
        """Write the CA certificate (PEM) for UPSTREAM_CA_FILE; returns the path."""
        target = Path(path)
        self._ca.cert_pem.write_to_path(str(target))
        return target

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context presenting the signed certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._cert.configure_cert(context)
        return context
