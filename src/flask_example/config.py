"""Settings read from the environment, validated once at start."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from flask_example import __version__

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Plain ASCII decimals only: int() and float() would also take "1_000" and
# non-ASCII digits, which no operator means when writing a port or a timeout.
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
DECIMAL_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")


class ConfigError(ValueError):
    """A setting is invalid; the message names the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    """Everything the service and its server take from the environment."""

    port: int = 8080
    listen_host: str = "0.0.0.0"  # noqa: S104 - a container must listen on all interfaces
    log_level: str = "info"
    workers: int = 2
    threads: int = 4
    graceful_timeout: float = 25.0
    shutdown_delay: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    tls_handshake_timeout: float = 5.0
    tls_cert_file: Path = Path("/tmp/tls/tls.crt")  # noqa: S108 - where the chart mounts the secret
    tls_key_file: Path = Path("/tmp/tls/tls.key")  # noqa: S108
    version: str = __version__
    commit: str = "unknown"
    branch: str = "unknown"
    channel: str = "unknown"
    release: str = "unknown"
    namespace: str = "unknown"
    pod_name: str = "unknown"
    host: str = "unknown"

    @property
    def tls_enabled(self) -> bool:
        """True when both TLS files exist: the server then speaks HTTPS only."""
        return self.tls_cert_file.is_file() and self.tls_key_file.is_file()


def _number(
    name: str, low: float, high: float, convert: Callable[[str], float], unit: str
) -> Callable[[str], float]:
    pattern = WHOLE_NUMBER if convert is int else DECIMAL_NUMBER

    def parse(raw: str) -> float:
        value = convert(raw) if pattern.fullmatch(raw) else None
        if value is None or not low <= value <= high:
            raise ConfigError(
                f"{name}={raw!r} is invalid: set {name} to {unit} from {low:g} to {high:g}"
            )
        return value

    return parse


def _int(name: str, low: int, high: int) -> Callable[[str], float]:
    return _number(name, low, high, int, "a whole number")


def _seconds(name: str, low: float, high: float) -> Callable[[str], float]:
    return _number(name, low, high, float, "a number of seconds")


def _log_level(raw: str) -> str:
    if raw.lower() not in LOG_LEVELS:
        raise ConfigError(
            f"LOG_LEVEL={raw!r} is invalid: set LOG_LEVEL to one of {', '.join(LOG_LEVELS)}"
        )
    return raw.lower()


def _text(raw: str) -> str:
    return raw


# field name -> (environment variable, parser)
ENVIRONMENT: dict[str, tuple[str, Callable[[str], object]]] = {
    "port": ("PORT", _int("PORT", 1, 65535)),
    "listen_host": ("LISTEN_HOST", _text),
    "log_level": ("LOG_LEVEL", _log_level),
    "workers": ("WEB_CONCURRENCY", _int("WEB_CONCURRENCY", 1, 64)),
    "threads": ("THREADS", _int("THREADS", 1, 64)),
    "graceful_timeout": ("GRACEFUL_TIMEOUT", _seconds("GRACEFUL_TIMEOUT", 1, 3600)),
    "shutdown_delay": ("SHUTDOWN_DELAY", _seconds("SHUTDOWN_DELAY", 0, 300)),
    "header_timeout": ("HEADER_TIMEOUT", _seconds("HEADER_TIMEOUT", 0.5, 300)),
    "body_timeout": ("BODY_TIMEOUT", _seconds("BODY_TIMEOUT", 0.5, 3600)),
    "tls_handshake_timeout": ("TLS_HANDSHAKE_TIMEOUT", _seconds("TLS_HANDSHAKE_TIMEOUT", 0.5, 300)),
    "tls_cert_file": ("TLS_CERT_FILE", Path),
    "tls_key_file": ("TLS_KEY_FILE", Path),
    "version": ("APP_VERSION", _text),
    "commit": ("APP_COMMIT", _text),
    "branch": ("APP_BRANCH", _text),
    "channel": ("APP_CHANNEL", _text),
    "release": ("APP_RELEASE", _text),
    "namespace": ("APP_NAMESPACE", _text),
    "pod_name": ("APP_POD_NAME", _text),
    "host": ("APP_HOST", _text),
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults overridden by non-empty environment variables."""
    environ = os.environ if environ is None else environ
    values = {}
    for field in fields(Settings):
        name, parse = ENVIRONMENT[field.name]
        raw = environ.get(name, "").strip()
        if raw:
            values[field.name] = parse(raw)
    settings = Settings(**values)
    cert, key = settings.tls_cert_file.is_file(), settings.tls_key_file.is_file()
    if cert != key:
        present, absent = (
            ("TLS_CERT_FILE", "TLS_KEY_FILE") if cert else ("TLS_KEY_FILE", "TLS_CERT_FILE")
        )
        raise ConfigError(
            f"{absent} ({getattr(settings, absent.lower())}) does not exist but {present} does: "
            "mount both files of the TLS secret, or neither to serve plain HTTP"
        )
    return settings


def main() -> int:
    """Check the environment (`python3 -m flask_example`): one line and status 2 if bad."""
    try:
        load_settings()
    except ConfigError as error:
        print(f"flask-example-1: {error}", file=sys.stderr)
        return 2
    return 0
