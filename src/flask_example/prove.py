"""Measure what the proxy in front of the service does: `python3 -m flask_example.prove URL`.

Standard library only, so that it runs from the image (a pod, a CI job) as well as from a
checkout. It reports a table for people, or one JSON object with `--json`; it exits 1 when a
check fails outright and 0 otherwise. Limits (body size, read timeout) are reported, not
judged, unless `--min-body-bytes` or `--min-read-timeout` asks for a minimum.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import sys
import tempfile
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field

STATUSES = (301, 404, 500, 503)
MAX_SINK = 32 * 1024 * 1024
MAX_DELAY = 10.0
CHUNK = 64 * 1024
# Headers sent to /headers, to see which ones the proxy removes.
SENT_HEADERS = {
    "Accept": "application/json",
    "User-Agent": "flask-example-prove",
    "X-Prove-Id": "prove-1",
    "X-Prove-Extra": "extra",
}
# Headers every HTTP client sends or that only describe the hop; never reported as added.
HOP_HEADERS = frozenset({"host", "accept-encoding", "connection", "content-length"})
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class NamedContext(ssl.SSLContext):
    """A client context that verifies (and asks by SNI for) one name, whatever the URL's host.

    For a URL that reaches the pods by an address their certificate does not name: a Service's
    in-cluster name when the certificate carries only the public host, or 127.0.0.1.
    """

    server_name = ""

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):
        """Wrap with this context's name in place of the connection's host."""
        return super().wrap_socket(sock, *args, server_hostname=self.server_name, **kwargs)


class ProveError(Exception):
    """A request that failed outright: no answer, or not the pod's answer."""


@dataclass
class Target:
    """Where to send requests, and how."""

    scheme: str
    host: str
    port: int
    base: str
    timeout: float
    context: ssl.SSLContext | None

    def connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        """A new connection to the target."""
        timeout = self.timeout if timeout is None else timeout
        if self.context is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self.context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def path(self, path: str) -> str:
        """The request target for a path of the service."""
        return self.base + path

    def request(
        self,
        path: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One request on a new connection: (status, headers, body)."""
        conn = self.connection(timeout)
        try:
            conn.request(method, self.path(path), headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        except (OSError, http.client.HTTPException) as error:
            raise ProveError(f"{method} {path}: {error}") from error
        finally:
            conn.close()


@dataclass
class Report:
    """The measurements, and the failures that make the exit status 1."""

    results: dict[str, object] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def json_body(body: bytes) -> dict | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def supported_paths(target: Target) -> set[str]:
    """The paths the pod's OpenAPI document lists (what this version of the pod supports)."""
    status, _, body = target.request("/openapi.json")
    document = json_body(body) if status == 200 else None
    if document is None:
        raise ProveError(f"GET /openapi.json answered {status}, not the pod's OpenAPI document")
    return set(document.get("paths", {}))


def status_passthrough(target: Target) -> dict[str, bool]:
    """For each status: True when the pod's own answer came back, not a proxy's page."""
    found = {}
    for code in STATUSES:
        status, _, body = target.request(f"/status/{code}")
        answer = json_body(body) or {}
        found[str(code)] = status == code and answer.get("status") == code
    return found


def request_headers(target: Target) -> tuple[dict[str, str], list[str]]:
    """What the proxy added to (name: value) and removed from (names) a forwarded request."""
    status, _, body = target.request("/headers", headers=SENT_HEADERS)
    received = (json_body(body) or {}).get("headers") if status == 200 else None
    if not isinstance(received, dict):
        raise ProveError(f"GET /headers answered {status}, not the pod's list of headers")
    got = {name.lower(): value for name, value in received.items()}
    sent = {name.lower() for name in SENT_HEADERS}
    added = {name: value for name, value in sorted(got.items()) if name not in sent | HOP_HEADERS}
    removed = sorted(name for name in sent if name not in got)
    return added, removed


def read_timeout(target: Target) -> float | None:
    """The proxy's upstream read timeout: when it gives up on a 10 s /delay (None: it waits)."""
    started = time.monotonic()
    status, _, body = target.request(f"/delay/{MAX_DELAY:g}", timeout=MAX_DELAY + 30)
    elapsed = time.monotonic() - started
    if status == 200 and (json_body(body) or {}).get("delay") == MAX_DELAY:
        return None
    return round(elapsed, 1)


def sink(target: Target, size: int) -> bool:
    """True when a body of `size` bytes reached the pod's /sink whole."""
    conn = target.connection(max(target.timeout, 60.0))
    block = b"\0" * CHUNK
    try:
        conn.putrequest("POST", target.path("/sink"))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        left = size
        try:
            while left:
                conn.send(block[: min(left, CHUNK)])
                left -= min(left, CHUNK)
        except OSError:
            pass  # the proxy refused the body early; its answer may still be readable
        try:
            response = conn.getresponse()
            status, body = response.status, response.read()
        except (OSError, http.client.HTTPException):
            return False
    finally:
        conn.close()
    return status == 200 and (json_body(body) or {}).get("length") == size


def body_limit(target: Target) -> int | None:
    """The largest body that reaches /sink, within 5 % or 1 KiB (None: above 32 MiB)."""
    if sink(target, MAX_SINK):
        return None
    low, high = 0, MAX_SINK  # low reaches the pod, high does not
    while high - low > max(1024, low // 20):
        middle = (low + high) // 2
        if sink(target, middle):
            low = middle
        else:
            high = middle
    return low


def part_times(target: Target, path: str) -> list[float]:
    """Arrival times of the lines of a streamed answer, relative to the first.

    Asks for gzip as browsers do: a proxy that compresses has to hold parts back to do it.
    """
    conn = target.connection()
    times = []
    try:
        conn.request("GET", target.path(path), headers={"Accept-Encoding": "gzip"})
        response = conn.getresponse()
        if response.status != 200:
            raise ProveError(f"GET {path} answered {response.status}")
        gzipped = response.getheader("Content-Encoding", "").lower() == "gzip"
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        while data := response.read1(CHUNK):
            text = inflate.decompress(data) if inflate else data
            times.extend([time.monotonic()] * text.count(b"\n"))
    except (OSError, http.client.HTTPException, zlib.error) as error:
        raise ProveError(f"GET {path}: {error}") from error
    finally:
        conn.close()
    return [moment - times[0] for moment in times] if times else []


def streaming(target: Target) -> str:
    """`passes` when the first part arrives well before the last, else `buffered`."""
    times = part_times(target, "/stream/3?interval=1")
    return "passes" if times and times[-1] >= 1.5 else "buffered"


def sse(target: Target) -> str:
    """The same for server-sent events."""
    times = part_times(target, "/sse/3?interval=1")
    return "passes" if times and times[-1] >= 1.5 else "buffered"


def pods(target: Target, count: int) -> dict[str, dict[str, int]]:
    """Which pod answered how many of `count` requests: new connections, one keep-alive one."""
    fresh: collections.Counter = collections.Counter()
    for _ in range(count):
        status, _, body = target.request("/", headers={"Accept": "application/json"})
        fresh[str((json_body(body) or {}).get("pod", f"status {status}"))] += 1
    kept: collections.Counter = collections.Counter()
    conn = target.connection()
    try:
        for _ in range(count):
            conn.request("GET", target.path("/"), headers={"Accept": "application/json"})
            response = conn.getresponse()
            body = response.read()
            kept[str((json_body(body) or {}).get("pod", f"status {response.status}"))] += 1
    except (OSError, http.client.HTTPException) as error:
        raise ProveError(f"GET / on one connection: {error}") from error
    finally:
        conn.close()
    return {"new_connections": dict(fresh), "keep_alive": dict(kept)}


def websocket(target: Target) -> bool:
    """True when an upgrade on /ws/echo works and echoes one text message back."""
    key = base64.b64encode(os.urandom(16)).decode()
    raw = socket.create_connection((target.host, target.port), timeout=target.timeout)
    try:
        if target.context is not None:
            raw = target.context.wrap_socket(raw, server_hostname=target.host)
        request = (
            f"GET {target.path('/ws/echo')} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        raw.sendall(request.encode())
        reader = raw.makefile("rb")
        head = reader.readline()
        if b" 101 " not in head:
            return False
        accept = base64.b64encode(
            hashlib.sha1((key + WS_GUID).encode(), usedforsecurity=False).digest()
        ).decode()
        headers = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept") != accept:
            return False
        message = b"prove"
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(message))
        # A client's frame: FIN + text opcode, masked, 7-bit length (RFC 6455 section 5.2).
        raw.sendall(bytes([0x81, 0x80 | len(message)]) + mask + masked)
        first, second = reader.read(2)
        payload = reader.read(second & 0x7F)
        close = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\x03\xe8"))
        raw.sendall(bytes([0x88, 0x82]) + mask + close)
        return first == 0x81 and payload == message
    except (OSError, ValueError):
        return False
    finally:
        raw.close()


def served_chain(target: Target) -> dict[str, object]:
    """The certificate the URL's host serves: subject, issuer, not-after, whether it verifies."""
    facts: dict[str, object] = {"verified": True, "error": None}
    address = (target.host, target.port)
    try:
        with (
            socket.create_connection(address, target.timeout) as raw,
            target.context.wrap_socket(raw, server_hostname=target.host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError as error:
        facts.update(verified=False, error=error.verify_message)
        sni = getattr(target.context, "server_name", "") or target.host
        # Only to read what is served; nothing is sent on this connection.
        loose = ssl.create_default_context()
        loose.check_hostname, loose.verify_mode = False, ssl.CERT_NONE
        try:
            with (
                socket.create_connection(address, target.timeout) as raw,
                loose.wrap_socket(raw, server_hostname=sni) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
        except OSError as again:
            raise ProveError(f"TLS to {target.host}:{target.port}: {again}") from again
    except OSError as error:
        raise ProveError(f"TLS to {target.host}:{target.port}: {error}") from error
    decoded = decode_certificate(der)
    facts.update(
        subject=name_text(decoded.get("subject", ())),
        issuer=name_text(decoded.get("issuer", ())),
        not_after=decoded.get("notAfter"),
        sha256=hashlib.sha256(der).hexdigest(),
    )
    return facts


def decode_certificate(der: bytes) -> dict:
    """The fields of a DER certificate, decoded by the ssl module."""
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as pem:
        pem.write(ssl.DER_cert_to_PEM_cert(der))
        pem.flush()
        return ssl._ssl._test_decode_cert(pem.name)  # the standard library's only decoder


def name_text(name: tuple) -> str:
    """A certificate name as `CN=..., O=...`."""
    return ", ".join(f"{key}={value}" for rdn in name for key, value in rdn)


def during(target: Target, seconds: float) -> dict[str, object]:
    """Probe /version for `seconds`, or until SIGTERM or SIGINT: every failed request and the
    versions that answered. A deploy job starts it before a rollout and ends it after."""
    versions: collections.Counter = collections.Counter()
    failed = []
    deadline = time.monotonic() + seconds
    stopped: list[bool] = []
    handlers = {
        number: signal.signal(number, lambda *_: stopped.append(True))
        for number in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        probe_until(target, deadline, stopped, versions, failed)
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    total = len(failed) + sum(versions.values())
    return {"requests": total, "failed": failed, "versions": dict(versions)}


def probe_until(
    target: Target,
    deadline: float,
    stopped: list,
    versions: collections.Counter,
    failed: list[str],
) -> None:
    """Ask /version ten times a second until the deadline or a stop signal."""
    while time.monotonic() < deadline and not stopped:
        try:
            status, _, body = target.request("/version", timeout=5.0)
            version = (json_body(body) or {}).get("version")
            if status != 200 or version is None:
                failed.append(f"{time.strftime('%H:%M:%S')} GET /version answered {status}")
            else:
                versions[version] += 1
        except ProveError as error:
            failed.append(f"{time.strftime('%H:%M:%S')} {error}")
        time.sleep(0.1)


def measure(target: Target, options: argparse.Namespace) -> Report:
    """Run every measurement the pod supports; record outright failures."""
    report = Report()
    results = report.results
    # The served certificate first: when it does not verify, every request below fails.
    results["tls"] = {"served": served_chain(target), "pod": None} if target.context else None
    if results["tls"] and not results["tls"]["served"]["verified"]:
        error = results["tls"]["served"]["error"]
        report.failures.append(f"the served certificate does not verify: {error}")
        return report
    paths = supported_paths(target)
    # First what leaves the pods as they were; the limits (timeouts, large bodies) last.
    results["pods"] = pods(target, options.requests)
    results["status_passthrough"] = status_passthrough(target)
    replaced = [code for code, ok in results["status_passthrough"].items() if not ok]
    if replaced:
        report.failures.append(f"the proxy replaced the pod's answer for {', '.join(replaced)}")
    added, removed = request_headers(target)
    results["request_headers_added"], results["request_headers_removed"] = added, removed
    if "/ws/echo" in paths:
        results["websocket"] = websocket(target)
        if not results["websocket"]:
            report.failures.append("the WebSocket upgrade or echo on /ws/echo failed")
    else:
        results["websocket"] = None
    results["streaming"] = {
        "chunked": streaming(target) if "/stream/{n}" in paths else None,
        "sse": sse(target) if "/sse/{n}" in paths else None,
    }
    if target.scheme == "https" and "/tls" in paths:
        status, _, body = target.request("/tls")
        results["tls"]["pod"] = json_body(body) if status == 200 else None
    results["read_timeout_seconds"] = read_timeout(target)
    results["body_limit_bytes"] = body_limit(target) if "/sink" in paths else None
    judge_limits(report, options, "/sink" in paths)
    return report


def judge_limits(report: Report, options: argparse.Namespace, has_sink: bool) -> None:
    """Fail when a limit is below a minimum the user asked for."""
    body, timeout = report.results["body_limit_bytes"], report.results["read_timeout_seconds"]
    wanted_body, wanted_timeout = options.min_body_bytes, options.min_read_timeout
    if wanted_body is not None and has_sink and body is not None and body < wanted_body:
        report.failures.append(
            f"body limit {body} bytes is below --min-body-bytes {options.min_body_bytes}"
        )
    if wanted_timeout is not None and timeout is not None and timeout < wanted_timeout:
        report.failures.append(
            f"read timeout {timeout:g} s is below --min-read-timeout {options.min_read_timeout:g}"
        )


def table(report: Report) -> str:
    """The report for people: one measurement a line."""
    lines = []
    for key, value in report.results.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        lines.append(f"{key:<24} {text}")
    lines.extend(f"FAILED: {failure}" for failure in report.failures)
    lines.append("result: " + ("fail" if report.failures else "pass"))
    return "\n".join(lines)


def make_target(options: argparse.Namespace, parser: argparse.ArgumentParser) -> Target:
    """The target from the URL and TLS options; a bad URL is a usage error."""
    url = urllib.parse.urlsplit(options.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        parser.error(f"URL {options.url!r} is invalid: give http://HOST[:PORT] or https://...")
    context = None
    if url.scheme == "https" and options.tls_server_name:
        context = NamedContext(ssl.PROTOCOL_TLS_CLIENT)
        context.server_name = options.tls_server_name
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if options.ca_file:
            context.load_verify_locations(cafile=options.ca_file)
        else:
            context.load_default_certs()
    elif url.scheme == "https":
        context = ssl.create_default_context(cafile=options.ca_file)
    port = url.port or (443 if url.scheme == "https" else 80)
    return Target(url.scheme, url.hostname, port, url.path.rstrip("/"), options.timeout, context)


def request_count(text: str) -> int:
    """An argparse type: a whole number from 1 to 1000."""
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: give a whole number from 1 to 1000")
    return value


def count_bytes(text: str) -> int:
    """An argparse type: a number of bytes, 1 or more."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: give a whole number of bytes")
    return int(text)


def positive(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: give a number above 0")
    return value


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, measure, print; the exit status says whether a check failed."""
    parser = argparse.ArgumentParser(
        prog="python3 -m flask_example.prove", description=__doc__.splitlines()[0]
    )
    parser.add_argument("url", help="the service's URL, e.g. https://app.example.org")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--json-file", help="also write the JSON object to this file")
    parser.add_argument("--min-body-bytes", type=count_bytes, help="fail below this body limit")
    parser.add_argument("--min-read-timeout", type=positive, help="fail below this (s)")
    parser.add_argument(
        "--during",
        type=positive,
        help="first probe /version this long (s), or until SIGTERM or SIGINT",
    )
    parser.add_argument("--ca-file", help="CA bundle to verify https URLs with")
    parser.add_argument(
        "--tls-server-name", help="verify the certificate for this name, not the URL's host"
    )
    parser.add_argument(
        "--requests", type=request_count, default=10, help="requests for `pods` (10)"
    )
    parser.add_argument("--timeout", type=positive, default=15.0, help="per request (s)")
    options = parser.parse_args(argv)
    if options.ca_file and not os.path.isfile(options.ca_file):
        parser.error(f"--ca-file {options.ca_file!r} is not a file: give a PEM CA bundle")
    target = make_target(options, parser)
    # The rollout check first, from the moment the prober starts; then the measurements, of
    # what the rollout left.
    spell = during(target, options.during) if options.during else None
    try:
        report = measure(target, options)
    except ProveError as error:
        report = Report(failures=[str(error)])
    if spell is not None:
        report.results["during"] = spell
        if spell["failed"]:
            report.failures.append(
                f"{len(spell['failed'])} requests failed during the rollout check"
            )
    document = json.dumps(report.results | {"failures": report.failures})
    if options.json_file:
        with open(options.json_file, "w", encoding="utf-8") as out:
            out.write(document + "\n")
    print(document if options.json else table(report))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
