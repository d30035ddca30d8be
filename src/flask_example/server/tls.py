"""TLS for gunicorn: TLS 1.2 or newer, and a renewed certificate served without a restart.

gunicorn asks its `ssl_context` hook for a context on every new connection. Each worker keeps
one context and rebuilds it when the certificate or key file changes on disk. Kubernetes
updates a mounted secret by swapping the `..data` symlink to a new directory, so a change
shows up as a new inode behind the same path. Connections already open keep the certificate
they started with; no worker restarts and no request fails.

What was loaded, and when, is kept for GET /tls and the TLS metrics: `facts()` describes the
certificate this worker serves and the connection a request came on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

# How often a worker looks at the files; kubelet refreshes secrets once a minute at best.
CHECK_INTERVAL = 1.0

_log = logging.getLogger("gunicorn.error")
# The attribute under which a server-side TLS socket keeps the name its client asked for.
_SNI = "flask_example_sni"
_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
# Called with (facts, reloaded) after each load; reloaded is False for a worker's first.
Listener = Callable[[dict, bool], None]


def _file_stamp(path: str) -> tuple[int, int, int, int]:
    # stat() follows the `..data` symlink, so a swapped secret has a new device/inode pair.
    info = os.stat(path)
    return info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size


class ReloadingContext:
    """The SSLContext for the current certificate files, rebuilt when they change."""

    def __init__(self, check_interval: float = CHECK_INTERVAL) -> None:
        self.check_interval = check_interval
        self._context: ssl.SSLContext | None = None
        self._stamp: tuple | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.loaded: dict | None = None  # facts of the certificate being served
        self.ca_file: Path | None = None  # the secret's CA bundle, beside the certificate
        self.listeners: list[Listener] = []

    def get(self, certfile: str, keyfile: str, build: Callable[[], ssl.SSLContext]):
        """Return the context, rebuilt with `build` if the files changed since the last check."""
        if self._context is not None and time.monotonic() - self._checked < self.check_interval:
            return self._context
        with self._lock:
            self._checked = time.monotonic()
            try:
                stamp = (_file_stamp(certfile), _file_stamp(keyfile))
                if self._context is None or stamp != self._stamp:
                    # A read that straddles a swap (new certificate, old key) fails the
                    # key check in build(); keep the old context and try again next time.
                    self._context, self._stamp = build(), stamp
                    self._loaded(certfile)
            except (OSError, ssl.SSLError) as error:
                if self._context is None:
                    raise
                _log.warning("New TLS files cannot be loaded yet, keeping the old: %s", error)
        return self._context

    def _loaded(self, certfile: str) -> None:
        reloaded = self.loaded is not None
        self.loaded = certificate_facts(Path(certfile))
        self.ca_file = Path(certfile).with_name("ca.crt")
        _log.info(
            "TLS certificate %s from %s (serial %s, not after %s)",
            "reloaded" if reloaded else "loaded",
            certfile,
            self.loaded["serial"],
            self.loaded["not_after"],
        )
        for listener in self.listeners:
            listener(self.loaded, reloaded)


# The one context of this process (each worker has its own copy after the fork).
CERTIFICATES = ReloadingContext()


def secure(context: ssl.SSLContext) -> ssl.SSLContext:
    """Require TLS 1.2 or newer on a server context, speak HTTP/1.1, remember each SNI."""
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A client that offers ALPN (h2 first, say) learns that this server speaks HTTP/1.1.
    context.set_alpn_protocols(["http/1.1"])
    context.sni_callback = _remember_sni
    return context


def _remember_sni(sock: ssl.SSLSocket, server_name: str | None, _context) -> None:
    # Kept on the socket, for facts() about the connection; None continues the handshake.
    setattr(sock, _SNI, server_name)


def pem_certificates(path: Path) -> list[bytes]:
    """The DER certificates of a PEM file, in file order."""
    text = path.read_text(encoding="ascii", errors="replace")
    return [ssl.PEM_cert_to_DER_cert(block) for block in _PEM_CERTIFICATE.findall(text)]


def certificate_facts(certfile: Path) -> dict:
    """The served (first) certificate of a chain file: names, issuer, dates, fingerprint."""
    # The standard library's only certificate decoder; it reads the file's first certificate.
    decoded = ssl._ssl._test_decode_cert(str(certfile))
    return {
        "subject": _name_text(decoded.get("subject", ())),
        "subject_alt_names": [value for _, value in decoded.get("subjectAltName", ())],
        "issuer": _name_text(decoded.get("issuer", ())),
        "serial": decoded.get("serialNumber"),
        "not_before": _timestamp(decoded["notBefore"]),
        "not_after": _timestamp(decoded["notAfter"]),
        "sha256": hashlib.sha256(pem_certificates(certfile)[0]).hexdigest(),
        "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _name_text(name: tuple) -> str:
    return ", ".join(f"{key}={value}" for rdn in name for key, value in rdn)


def _timestamp(text: str) -> str:
    # The ssl module's form ("Jun  1 12:00:00 2030 GMT") as ISO 8601.
    moment = datetime.fromtimestamp(ssl.cert_time_to_seconds(text), UTC)
    return moment.isoformat(timespec="seconds")


def facts(environ: dict) -> dict | None:
    """What GET /tls shows: this worker's certificate and the request's connection.

    None when the server speaks plain HTTP. The CA bundle (the secret's ca.crt beside the
    certificate) is read now, so a bundle that changed on its own shows as it is.
    """
    loaded = CERTIFICATES.loaded
    sock = environ.get("gunicorn.socket")
    if loaded is None or not isinstance(sock, ssl.SSLSocket):
        return None
    cipher = sock.cipher()
    return {
        "certificate": loaded,
        "ca_certificates_sha256": _ca_fingerprints(CERTIFICATES.ca_file),
        "connection": {
            "version": sock.version(),
            "cipher": cipher[0] if cipher else None,
            "server_name": getattr(sock, _SNI, None),
            "alpn": sock.selected_alpn_protocol(),
        },
    }


def _ca_fingerprints(path: Path | None) -> list[str] | None:
    # None without a ca.crt (a public ACME issuer writes none).
    if path is None:
        return None
    try:
        return [hashlib.sha256(der).hexdigest() for der in pem_certificates(path)] or None
    except (OSError, ValueError):
        return None
