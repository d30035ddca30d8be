"""What the service tells about itself and about the request that reached it."""

from __future__ import annotations

from flask import Request

from flask_example.settings import Settings

SERVICE = "flask-example-1"

# Headers that proxies and load balancers add on the way to the pod.
PROXY_HEADERS = frozenset({"forwarded", "via", "x-real-ip", "x-request-id", "x-scheme"})
PROXY_HEADER_PREFIXES = ("x-forwarded-", "x-original-")


def build_facts(settings: Settings) -> dict[str, str]:
    """Which build runs: service, version, commit and branch."""
    return {
        "service": SERVICE,
        "version": settings.version,
        "commit": settings.commit,
        "branch": settings.branch,
    }


def deployment_facts(settings: Settings) -> dict[str, str]:
    """Where it runs: channel, namespace, release, pod and public host."""
    return {
        "channel": settings.channel,
        "namespace": settings.namespace,
        "release": settings.release,
        "pod": settings.pod_name,
        "host": settings.host,
    }


def is_proxy_header(name: str) -> bool:
    """True for Forwarded, Via, X-Forwarded-* and the other headers proxies add."""
    name = name.lower()
    return name in PROXY_HEADERS or name.startswith(PROXY_HEADER_PREFIXES)


def request_facts(request: Request) -> dict[str, object]:
    """How the request reached this process; proxy headers are shown, never trusted."""
    return {
        "method": request.method,
        "scheme": request.scheme,
        "protocol": request.environ.get("SERVER_PROTOCOL", ""),
        # The raw header: werkzeug's request.host is empty for a Host it finds invalid, and an
        # odd Host is exactly what this page must show.
        "host": request.headers.get("Host", ""),
        "client": request.remote_addr or "",
        "forwarded": {k: v for k, v in request.headers.items() if is_proxy_header(k)},
    }
