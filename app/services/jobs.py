"""Background work run by `ims tick` / `ims worker`: each feature registers a job here.

A job that raises is rolled back and logged, and its line says so ("<name>: failed: <error>");
the jobs after it run all the same, and the worker goes on to the next tick: one failing job
(a provider down, a row it cannot handle) never stops the others, nor the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

_JOBS: list[tuple[str, Callable[[], str | None]]] = []
log = logging.getLogger(__name__)


def register_job(name: str, fn: Callable[[], str | None]) -> None:
    """Register ``fn`` to run on every tick; it returns a one-line summary or None."""
    if all(existing != name for existing, _ in _JOBS):
        _JOBS.append((name, fn))


def run_tick() -> Iterable[str]:
    from app.extensions import db
    from app.services.audit import set_actor

    set_actor("worker")
    for name, fn in list(_JOBS):
        try:
            summary = fn()
        except Exception as exc:  # noqa: BLE001 - one failing job must not stop the others
            db.session.rollback()
            log.exception("job %s failed", name)
            summary = f"failed: {exc.__class__.__name__}"
        yield f"{name}: {summary or 'nothing due'}"
