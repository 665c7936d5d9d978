"""Logs operators can search: one JSON object per line, each carrying the id of the request (or
worker job) it belongs to, and never personal data or secrets.

Every request gets an id: the caller's ``X-Request-ID`` when it is a short printable token,
otherwise a fresh one; the response returns it. Work a request hands on (an import processed in
a thread or by `ims worker`) runs under the same id, so one id finds every line of a piece of
work. Worker ticks get ids of their own (``tick-…``).

What is logged about a request is its method, route (the URL rule, e.g.
``/api/v1/refunds/<int:pk>``, never the path's values or the query string, which can hold names
searched for), status and time. Log messages are the code's own; records of failures carry the
exception's type and traceback, which come from code. ``LOG_REDACT`` patterns (the secret keys
and anything configured) are masked in every line as a last guard.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("ims_request_id",
                                                                        default=None)
_CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
access_log = logging.getLogger("ims.request")


def current_request_id() -> str | None:
    return _request_id.get()


def new_request_id(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex


class request_id_context:  # noqa: N801 - used as a context manager, like contextlib's
    """``with request_id_context(rid):`` runs the block's logging under ``rid``."""

    def __init__(self, request_id: str | None):
        self.request_id = request_id or new_request_id()

    def __enter__(self) -> str:
        self._token = _request_id.set(self.request_id)
        return self.request_id

    def __exit__(self, *exc) -> None:
        _request_id.reset(self._token)


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (``record.request_id``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request id, and for failures
    the exception type and traceback. ``redact`` strings are masked wherever they appear."""

    def __init__(self, redact: list[str] | None = None):
        super().__init__()
        self.redact = [r for r in (redact or []) if r and len(r) >= 6]

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key in ("method", "route", "status", "duration_ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            entry["traceback"] = self.formatException(record.exc_info)
        line = json.dumps(entry, default=str, ensure_ascii=False)
        for secret in self.redact:
            line = line.replace(secret, "[redacted]")
        return line


class TextFormatter(logging.Formatter):
    """The development format, with the request id and the same masking."""

    def __init__(self, redact: list[str] | None = None):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        self.redact = [r for r in (redact or []) if r and len(r) >= 6]

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self.redact:
            line = line.replace(secret, "[redacted]")
        return line


def configure_logging(app) -> None:
    """Root logging for the app: JSON or text (``IMS_LOG_FORMAT``) to stderr, at ``IMS_LOG_LEVEL``,
    every record with its request id, secrets masked."""
    redact = [str(app.config.get(k) or "") for k in ("SECRET_KEY", "IMS_AUDIT_KEY",
                                                     "GOVUK_PAY_API_KEY", "MAIL_PASSWORD",
                                                     "IMS_METRICS_TOKEN")]
    redact += list(app.config.get("LOG_REDACT") or [])
    fmt = str(app.config.get("IMS_LOG_FORMAT") or "text").lower()
    formatter = JsonFormatter(redact) if fmt == "json" else TextFormatter(redact)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_ims", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._ims = True  # one handler however many apps a process builds (tests)
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
        for other in list(root.handlers):  # basicConfig's handler would print lines twice
            if other is not handler and type(other) is logging.StreamHandler \
                    and not getattr(other, "_ims", False) and other.stream is handler.stream:
                root.removeHandler(other)
    handler.setFormatter(formatter)
    level = str(app.config.get("IMS_LOG_LEVEL") or ("INFO" if app.debug else "WARNING")).upper()
    root.setLevel(level)
    access_log.setLevel("INFO" if app.config.get("IMS_ACCESS_LOG", True) else "WARNING")


def install_request_ids(app) -> None:
    """Request ids, the access log line and the request metrics for every request."""
    from flask import g, request

    from app import metrics

    @app.before_request
    def _start():
        given = request.headers.get("X-Request-ID", "")
        rid = given if _CALLER_ID.fullmatch(given) else new_request_id()
        g.request_id = rid
        g.request_started = time.perf_counter()
        g.request_id_token = _request_id.set(rid)

    @app.after_request
    def _finish(response):
        rid = getattr(g, "request_id", None)
        if rid:
            response.headers["X-Request-ID"] = rid
        started = getattr(g, "request_started", None)
        if started is not None:
            elapsed = time.perf_counter() - started
            route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            metrics.observe_request(request.method, route, response.status_code, elapsed)
            if route not in ("/healthz", "/readyz", "/metrics") and not route.startswith("/static"):
                access_log.info("%s %s %s", request.method, route, response.status_code, extra={
                    "method": request.method, "route": route, "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 1)})
        return response

    @app.teardown_request
    def _forget(exc=None):
        token = g.pop("request_id_token", None)
        if token is not None:
            try:
                _request_id.reset(token)
            except ValueError:  # reset from another context (test clients reuse contexts)
                _request_id.set(None)
