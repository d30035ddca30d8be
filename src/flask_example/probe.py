"""`python3 -m flask_example.probe`: ask a server for a probe path; exit 0 when it answers 200.

Without arguments it is the image's HEALTHCHECK: this container's own server, /healthz, over
HTTPS when the settings enable TLS, verified against the secret's ca.crt but not its name (the
certificate names the public host; the probe uses loopback). With --host it is the chart's helm
test: the Service, its /readyz, over HTTPS when --tls-server-name names what to verify. With
--unreachable it is the chart's NetworkPolicy test: it passes only when no connection opens.
Standard library only: the image has nothing else to offer a probe.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import time
from pathlib import Path

from flask_example.settings import ConfigError, load_settings

TIMEOUT = 3.0


def local_target() -> tuple[str, int, ssl.SSLContext | None]:
    """This container's server, from the settings it runs with: (host, port, TLS context)."""
    settings = load_settings()
    host = settings.listen_host
    if host in ("0.0.0.0", ""):  # noqa: S104 - comparing, not binding
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if not settings.tls_enabled:
        return host, settings.port, None
    # Without a ca.crt (a public ACME issuer) the system roots apply.
    context = tls_context(settings.tls_cert_file.with_name("ca.crt"))
    context.check_hostname = False
    return host, settings.port, context


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verify against ca_file when it exists, else the system's roots."""
    ca = ca_file if ca_file is not None and ca_file.is_file() else None
    return ssl.create_default_context(cafile=ca)


def status_line(
    host: str, port: int, path: str, *, context: ssl.SSLContext | None, name: str, timeout: float
) -> str:
    """GET path over one connection; the response's status line."""
    with socket.create_connection((host, port), timeout=timeout) as plain:
        sock = context.wrap_socket(plain, server_hostname=name) if context else plain
        with sock:
            authority = f"[{name}]" if ":" in name else name
            request = f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
            sock.sendall(request.encode("ascii"))
            head = b""
            while b"\r\n" not in head and len(head) < 1024:
                chunk = sock.recv(256)
                if not chunk:
                    break
                head += chunk
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if not line.startswith("HTTP/"):
        raise OSError(f"not an HTTP answer: {line!r}")
    return line


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line; every option has a default for the HEALTHCHECK's bare call."""
    parser = argparse.ArgumentParser(prog="python3 -m flask_example.probe", description=__doc__)
    parser.add_argument("--host", help="server to ask (default: this container's own server)")
    parser.add_argument("--port", type=int, help="its port (default: PORT of the settings)")
    parser.add_argument("--path", default="/healthz", help="probe path (default: /healthz)")
    parser.add_argument("--tls-server-name", default="", help="speak TLS, verifying this name")
    parser.add_argument("--ca-file", type=Path, help="CA bundle to verify against")
    parser.add_argument("--attempts", type=int, default=1, help="tries before giving up")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between tries")
    parser.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per try")
    parser.add_argument(
        "--unreachable",
        action="store_true",
        help="pass only when no TCP connection to --host and --port opens (a NetworkPolicy test)",
    )
    return parser.parse_args(argv)


def unreachable(host: str, port: int, timeout: float) -> int:
    """0 when a connection to host:port is dropped or refused, 1 when it opens or DNS fails."""
    try:
        # Resolved first: a name that does not resolve proves nothing about the policy.
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4]
    except OSError as error:
        print(f"probe: cannot resolve {host}: {error}", file=sys.stderr)
        return 1
    try:
        with socket.create_connection(address[:2], timeout=timeout):
            pass
    except TimeoutError:
        print(f"probe: {host}:{port} is unreachable from this pod, as it should be (timed out)")
        return 0
    except ConnectionRefusedError:
        print(f"probe: {host}:{port} is unreachable from this pod, as it should be (refused)")
        return 0
    except OSError as error:
        print(f"probe: connecting to {host}:{port} failed unexpectedly: {error}", file=sys.stderr)
        return 1
    print(
        f"probe: {host}:{port} accepted a connection from this pod, which the NetworkPolicy "
        "should not admit: does the cluster's network plugin enforce NetworkPolicies?",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    """Probe until a 200 or the attempts run out; say what each failed attempt saw."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.unreachable:
        if args.host is None or args.port is None:
            print("probe: --unreachable needs --host and --port", file=sys.stderr)
            return 2
        return unreachable(args.host, args.port, args.timeout)
    try:
        if args.host is None:
            host, port, context = local_target()
            name = host
        else:
            host, name = args.host, args.tls_server_name or args.host
            port = args.port or load_settings().port
            context = tls_context(args.ca_file) if args.tls_server_name else None
    except ConfigError as error:
        print(f"probe: {error}", file=sys.stderr)
        return 1
    port = args.port or port
    url = f"{'https' if context else 'http'}://{name}:{port}{args.path}"
    for attempt in range(1, args.attempts + 1):
        try:
            line = status_line(
                host, port, args.path, context=context, name=name, timeout=args.timeout
            )
        except OSError as error:
            print(f"probe: GET {url} attempt {attempt}/{args.attempts}: {error}", file=sys.stderr)
        else:
            print(f"probe: GET {url} -> {line}")
            if line.split()[1:2] == ["200"]:
                return 0
        if attempt < args.attempts:
            time.sleep(args.interval)
    return 1


if __name__ == "__main__":
    sys.exit(main())
