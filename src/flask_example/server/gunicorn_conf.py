"""gunicorn configuration: every server setting and hook, read with `-c python:<this module>`.

Values come from `flask_example.settings.load_settings()`, the one place the environment is read.
Besides plain settings this module adds what gunicorn lacks on its own:
- a drain phase on SIGTERM (readiness fails, serving goes on for SHUTDOWN_DELAY seconds);
- a runtime dir per start for Prometheus' multiprocess files and the drain flag;
- TLS 1.2+ with certificates that are picked up again when Kubernetes renews them.
"""

from __future__ import annotations

import math
import os
import signal
import sys
from pathlib import Path

from flask_example.server import lifecycle, metrics, tls
from flask_example.settings import load_settings

settings = load_settings()


def _bind_address(host: str, port: int) -> str:
    # An IPv6 literal needs brackets to tell its colons from the port's.
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _worker_tmp_dir() -> str:
    # Workers touch a heartbeat file every second; in memory is best. /dev/shm is missing or
    # read-only in some sandboxes, and the image's only writable path is /tmp.
    shm = Path("/dev/shm")  # noqa: S108 - a tmpfs, the documented choice for this setting
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else "/tmp"  # noqa: S108


wsgi_app = "flask_example.server.wsgi:application()"
bind = [_bind_address(settings.listen_host, settings.port)]
if settings.probe_port:
    # The kubelet's own port: the worker answers only the probes there (see worker.py).
    bind.append(_bind_address(settings.listen_host, settings.probe_port))
# Longer request lines are a 414: 8 KiB, as ingress-nginx's large_client_header_buffers.
limit_request_line = 8190
# gthread: each worker serves THREADS requests at once, so a slow request (/delay) holds one
# thread, not a whole process, and idle keep-alive connections hold no thread at all. This
# subclass also bounds every wait for a client and answers the probes on a thread of their own.
worker_class = "flask_example.server.worker.HardenedWorker"
workers = settings.workers
threads = settings.threads
# gunicorn takes whole seconds; round up so a configured budget is never cut short.
graceful_timeout = math.ceil(settings.graceful_timeout)
# Idle keep-alive connections are closed after this many seconds. Shorter than SHUTDOWN_DELAY
# so that none is left when the graceful stop begins.
keepalive = 2
worker_tmp_dir = _worker_tmp_dir()
# The app is imported in each worker, after the master has set up the multiprocess metrics dir.
preload_app = False
proc_name = "flask-example-1"
loglevel = settings.log_level
accesslog = "-"  # stdout
errorlog = "-"  # stderr
logger_class = "flask_example.server.log.JsonLogger"
# gunicorn's runtime control socket would be created under $HOME (read-only in the image) and
# would hand shutdown and scaling to anyone who can exec into the container.
control_socket_disable = True
# forwarded_allow_ips: gunicorn reads FORWARDED_ALLOW_IPS itself (default: loopback only), so
# X-Forwarded-* headers from anyone but a trusted proxy never change the request's scheme.

if settings.tls_enabled:
    certfile = str(settings.tls_cert_file)
    keyfile = str(settings.tls_key_file)


def ssl_context(config, default_ssl_context_factory):
    """Serve TLS 1.2+ with the current certificate files (gunicorn calls this per connection)."""
    return tls.CERTIFICATES.get(
        config.certfile,
        config.keyfile,
        lambda: tls.secure(default_ssl_context_factory()),
    )


def on_starting(server):
    """Create this start's runtime dir and point the workers' metrics at it."""
    if server.cfg.preload_app:
        # Metrics objects made before PROMETHEUS_MULTIPROC_DIR is set count per process only.
        sys.exit("flask-example-1: preload_app is not supported: remove --preload")
    directory = lifecycle.create_runtime_dir()
    metrics_dir = directory / "metrics"
    metrics_dir.mkdir()
    os.environ[metrics.MULTIPROC_ENV] = str(metrics_dir)
    os.environ[lifecycle.WORKERS_ENV] = str(server.num_workers)
    scheme = "HTTPS" if server.cfg.is_ssl else "HTTP"
    server.log.info("Runtime dir %s, serving %s", directory, scheme)


def when_ready(server):
    """Make the master's SIGTERM start a drain instead of an immediate stop."""
    stop = server.handle_term

    def handle_term():
        # Delay over, or a second SIGTERM from someone who will not wait: stop gracefully.
        if lifecycle.is_draining() or settings.shutdown_delay <= 0:
            _announce_drain(server)
            stop()  # raises StopIteration, which gunicorn's main loop turns into its halt()
        if not _announce_drain(server):
            stop()  # the workers cannot learn of the drain: no point in delaying the stop
        server.log.info(
            "SIGTERM: readiness fails from now on; serving %gs more, then stopping gracefully",
            settings.shutdown_delay,
        )
        # An alarm, not a timer thread: the master forks, and forking with threads is unsafe.
        signal.signal(signal.SIGALRM, lambda *_: server.signal(signal.SIGTERM, None))
        signal.setitimer(signal.ITIMER_REAL, settings.shutdown_delay)

    # gunicorn's main loop looks the handler up on the arbiter for every queued signal.
    server.handle_term = handle_term


def _announce_drain(server) -> bool:
    # Runs in gunicorn's main loop, which answers any exception by killing the workers at once
    # and exiting 255: a lost drain flag must cost the drain, never the graceful stop.
    try:
        lifecycle.begin_drain()
    except OSError as error:
        server.log.error("Cannot tell the workers about the drain (%s); stopping now", error)
        return False
    return True


def post_worker_init(worker):
    """Count this worker as booted: readiness waits for all of them."""
    lifecycle.worker_booted(worker.pid)


# How stale the drain state may be when a request asks (see pre_request): the drain lasts
# SHUTDOWN_DELAY seconds, and readiness, which the endpoints take out of rotation by, asks
# anew every time.
DRAIN_RECHECK = 0.1


def pre_request(worker, req):
    """While draining, answer with `Connection: close` so clients reconnect elsewhere.

    The drain flag is looked for at most every DRAIN_RECHECK seconds (see is_draining).
    """
    if lifecycle.is_draining(recheck_after=DRAIN_RECHECK):
        req.force_close()


def worker_int(worker):
    """SIGINT/SIGQUIT (Ctrl-C): leave now; gthread would wait for its running requests first."""
    worker.log.info("Worker %s stopping at once, abandoning running requests", worker.pid)
    os._exit(0)


def child_exit(server, worker):
    """Keep a dead worker's counts and remove its multiprocess metric files."""
    # Also called from gunicorn's main loop and its graceful stop, where an exception means
    # exit status 255 and workers killed mid-request.
    try:
        metrics.collect_dead_worker(worker.pid)
    except Exception as error:  # a damaged file must not stop the server either
        server.log.error("Cannot collect the metric files of worker %s: %s", worker.pid, error)


def on_exit(server):
    """Remove the runtime dir after a clean stop."""
    lifecycle.remove_runtime_dir()
