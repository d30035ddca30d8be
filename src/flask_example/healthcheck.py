"""The image's HEALTHCHECK: ask this container's own server for /healthz over HTTP or HTTPS.

Run as `python3 -m flask_example.healthcheck`; exit status 0 when the answer is 200.
"""

from __future__ import annotations

import ssl
import sys
import urllib.request

from flask_example.config import ConfigError, Settings, load_settings

TIMEOUT = 3.0


def probe_url(settings: Settings) -> str:
    """The /healthz URL of the local server, on loopback when it listens on every address."""
    host = settings.listen_host
    if host in ("0.0.0.0", ""):  # noqa: S104 - comparing, not binding
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.tls_enabled else "http"
    return f"{scheme}://{host}:{settings.port}/healthz"


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verify the server's chain against the secret's ca.crt, not its name.

    The certificate names the public host, and this probe reaches the same process over
    loopback, where that name cannot match; the chain check still proves the server presents
    the mounted certificate. Without a ca.crt (a public ACME issuer) the system roots apply.
    """
    ca_file = settings.tls_cert_file.with_name("ca.crt")
    context = ssl.create_default_context(cafile=ca_file if ca_file.is_file() else None)
    context.check_hostname = False
    return context


def main() -> int:
    """Probe /healthz once; print why on failure."""
    try:
        settings = load_settings()
        url = probe_url(settings)
        context = tls_context(settings) if settings.tls_enabled else None
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as response:  # noqa: S310 - our own fixed URL
            return 0 if response.status == 200 else 1
    except (ConfigError, OSError) as error:
        print(f"healthcheck: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
