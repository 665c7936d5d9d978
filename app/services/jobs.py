"""Background work run by `ims tick` / `ims worker`: each feature registers a job here."""

from __future__ import annotations

from collections.abc import Callable, Iterable

_JOBS: list[tuple[str, Callable[[], str | None]]] = []


def register_job(name: str, fn: Callable[[], str | None]) -> None:
    """Register ``fn`` to run on every tick; it returns a one-line summary or None."""
    if all(existing != name for existing, _ in _JOBS):
        _JOBS.append((name, fn))


def run_tick() -> Iterable[str]:
    from app.services.audit import set_actor

    set_actor("worker")
    for name, fn in list(_JOBS):
        summary = fn()
        yield f"{name}: {summary or 'nothing due'}"
