"""Settings read from the environment, validated once at start.

Each setting is declared once, as a field of `Settings`: its environment variable, default,
parser and the meaning the configuration table of docs/server.md shows (`make generate` writes
that table from these fields). Adding a setting is one field here; the chart sets the variable.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from flask_example import __version__

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# Plain ASCII decimals only: int() and float() would also take "1_000" and
# non-ASCII digits, which no operator means when writing a port or a timeout.
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
DECIMAL_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")

BUILD_FACT = "build fact: the {}, baked into the image by the pipeline"
DEPLOYMENT_FACT = "deployment fact: the {}, set by the chart"

# A parser takes the variable's name (for its error message) and its non-empty raw value.
Parser = Callable[[str, str], object]


class ConfigError(ValueError):
    """A setting is invalid; the message names the variable and the fix."""


def _number(low: float, high: float, convert: Callable[[str], float], unit: str) -> Parser:
    pattern = WHOLE_NUMBER if convert is int else DECIMAL_NUMBER

    def parse(name: str, raw: str) -> float:
        value = convert(raw) if pattern.fullmatch(raw) else None
        if value is None or not low <= value <= high:
            raise ConfigError(
                f"{name}={raw!r} is invalid: set {name} to {unit} from {low:g} to {high:g}"
            )
        return value

    return parse


def whole_number(low: int, high: int) -> Parser:
    """A parser for a whole number from low to high."""
    return _number(low, high, int, "a whole number")


def seconds(low: float, high: float) -> Parser:
    """A parser for a number of seconds (fractions allowed) from low to high."""
    return _number(low, high, float, "a number of seconds")


def fraction() -> Parser:
    """A parser for a share from 0 to 1."""
    return _number(0, 1, float, "a fraction")


def one_of(*choices: str) -> Parser:
    """A parser for one of the choices, in any case."""

    def parse(name: str, raw: str) -> str:
        if raw.lower() not in choices:
            raise ConfigError(
                f"{name}={raw!r} is invalid: set {name} to one of {', '.join(choices)}"
            )
        return raw.lower()

    return parse


def text(_name: str, raw: str) -> str:
    """The value as it is."""
    return raw


def path(_name: str, raw: str) -> Path:
    """The value as a filesystem path."""
    return Path(raw)


def setting(env: str, default: object, parse: Parser, meaning: str, shown: str = "") -> object:
    """Declare a field of Settings: its variable, default, parser and documented meaning.

    `shown` is how the configuration table writes the default when `default` itself would mislead.
    """
    metadata = {"env": env, "parse": parse, "meaning": meaning, "shown": shown}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Everything the service and its server take from the environment."""

    port: int = setting("PORT", 8080, whole_number(1, 65535), "port to listen on, 1 to 65535")
    probe_port: int = setting(
        "PROBE_PORT",
        0,
        whole_number(0, 65535),
        "port that answers only `/healthz` and `/readyz`, over plain HTTP, apart from the app's "
        "clients (the chart's probes use 8081); 0 for none",
    )
    listen_host: str = setting(
        "LISTEN_HOST",
        "0.0.0.0",  # noqa: S104 - a container must listen on all interfaces
        text,
        "address to listen on (`make run` uses `127.0.0.1`)",
    )
    log_level: str = setting(
        "LOG_LEVEL",
        "info",
        one_of(*LOG_LEVELS),
        "`debug`, `info`, `warning`, `error` or `critical`",
    )
    workers: int = setting("WEB_CONCURRENCY", 2, whole_number(1, 64), "worker processes, 1 to 64")
    threads: int = setting("THREADS", 4, whole_number(1, 64), "threads per worker, 1 to 64")
    graceful_timeout: float = setting(
        "GRACEFUL_TIMEOUT",
        25.0,
        seconds(1, 3600),
        "seconds in-flight requests get to finish on shutdown, 1 to 3600",
    )
    shutdown_delay: float = setting(
        "SHUTDOWN_DELAY",
        5.0,
        seconds(0, 300),
        "seconds to keep serving after SIGTERM while readiness is 503, 0 to 300",
    )
    header_timeout: float = setting(
        "HEADER_TIMEOUT",
        10.0,
        seconds(0.5, 300),
        "seconds a client gets to send a request's line and headers (then 408), 0.5 to 300",
    )
    send_timeout: float = setting(
        "SEND_TIMEOUT",
        10.0,
        seconds(0.5, 300),
        "seconds a client gets to take each block (up to 64 KiB) of an answer (then it is "
        "closed), 0.5 to 300",
    )
    send_total_timeout: float = setting(
        "SEND_TOTAL_TIMEOUT",
        60.0,
        seconds(0.5, 3600),
        "seconds a client gets to take a whole answer: the time its writes wait for the client, "
        "added up (then it is closed; the app's own pauses do not count), 0.5 to 3600",
    )
    body_timeout: float = setting(
        "BODY_TIMEOUT",
        30.0,
        seconds(0.5, 3600),
        "seconds a client gets to send a request's body (then 408), 0.5 to 3600",
    )
    tls_handshake_timeout: float = setting(
        "TLS_HANDSHAKE_TIMEOUT",
        5.0,
        seconds(0.5, 300),
        "seconds a client gets to complete the TLS handshake, 0.5 to 300",
    )
    tls_cert_file: Path = setting(
        "TLS_CERT_FILE",
        Path("/tmp/tls/tls.crt"),  # noqa: S108 - where the chart mounts the secret
        path,
        "the certificate chain; HTTPS only when it and `TLS_KEY_FILE` exist, one alone is an error",
    )
    tls_key_file: Path = setting(
        "TLS_KEY_FILE",
        Path("/tmp/tls/tls.key"),  # noqa: S108
        path,
        "the certificate's private key",
    )
    fault_error_rate: float = setting(
        "FAULT_ERROR_RATE",
        0.0,
        fraction(),
        "fault injection: the share of requests answered 500 (never probes or `/metrics`), 0 to 1",
    )
    fault_latency: float = setting(
        "FAULT_LATENCY",
        0.0,
        seconds(0, 10),
        "fault injection: seconds added to every request (never probes or `/metrics`), 0 to 10",
    )
    fault_unready_after: float = setting(
        "FAULT_UNREADY_AFTER",
        0.0,
        seconds(0, 86400),
        "fault injection: seconds after a worker starts from which `/readyz` answers 503; "
        "0 never, up to 86400",
    )
    version: str = setting(
        "APP_VERSION",
        __version__,
        text,
        BUILD_FACT.format("version"),
        shown="package version",
    )
    commit: str = setting("APP_COMMIT", "unknown", text, BUILD_FACT.format("commit"))
    branch: str = setting("APP_BRANCH", "unknown", text, BUILD_FACT.format("branch"))
    channel: str = setting("APP_CHANNEL", "unknown", text, DEPLOYMENT_FACT.format("channel"))
    release: str = setting("APP_RELEASE", "unknown", text, DEPLOYMENT_FACT.format("Helm release"))
    namespace: str = setting("APP_NAMESPACE", "unknown", text, DEPLOYMENT_FACT.format("namespace"))
    pod_name: str = setting("APP_POD_NAME", "unknown", text, DEPLOYMENT_FACT.format("pod's name"))
    host: str = setting("APP_HOST", "unknown", text, DEPLOYMENT_FACT.format("public host"))

    @property
    def tls_enabled(self) -> bool:
        """True when both TLS files exist: the server then speaks HTTPS only."""
        return self.tls_cert_file.is_file() and self.tls_key_file.is_file()


def variables() -> tuple[str, ...]:
    """Every environment variable the settings read, in declaration order."""
    return tuple(f.metadata["env"] for f in fields(Settings))


def markdown_table() -> str:
    """The configuration table of docs/server.md: one row per setting, from the declarations."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for f in fields(Settings):
        default = f.default
        value = f"{default:g}" if isinstance(default, float) else default
        shown = f.metadata["shown"] or f"`{value}`"
        rows.append(f"| `{f.metadata['env']}` | {shown} | {f.metadata['meaning']} |")
    return "\n".join(rows) + "\n"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults overridden by non-empty environment variables."""
    environ = os.environ if environ is None else environ
    values = {}
    for f in fields(Settings):
        name = f.metadata["env"]
        raw = environ.get(name, "").strip()
        if raw:
            values[f.name] = f.metadata["parse"](name, raw)
    settings = Settings(**values)
    if settings.probe_port == settings.port:
        raise ConfigError(
            f"PROBE_PORT={settings.probe_port} is PORT's too: choose another port, or 0 for none"
        )
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
