"""Whether the service is shutting down, so readiness can turn 503 before it stops serving."""

from __future__ import annotations

# One process only; the server replaces this with a flag that every worker can see.
_draining = False


def is_draining() -> bool:
    """True once shutdown has begun."""
    return _draining


def begin_drain() -> None:
    """Mark the start of shutdown: readiness answers 503 from now on."""
    global _draining  # noqa: PLW0603 - the one piece of process state this module keeps
    _draining = True
