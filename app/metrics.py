"""Prometheus metrics: requests by route, receipts and imports, and, read from the database at
each scrape, the queues (due timers, queued imports) and the workers' last ticks.

Under gunicorn several processes serve requests: with ``PROMETHEUS_MULTIPROC_DIR`` set (to an
empty directory the processes share, cleared before they start) prometheus_client's
multiprocess mode adds up every process's counters. Without it (``make run``, tests) the
process's own registry is exported.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

#: request latency buckets (seconds): the pages' target is 0.1 s
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("ims_http_requests_total", "HTTP requests answered, by method, route and status.",
                   ["method", "route", "status"])
LATENCY = Histogram("ims_http_request_duration_seconds", "Time to answer a request, by route.",
                    ["method", "route"], buckets=_BUCKETS)
RECEIPTS = Counter("ims_receipts_total", "Receipts posted (counter and phone, API and pages).")
RECEIPT_PENCE = Counter("ims_receipts_pence_total", "Money receipted, in pence.")
IMPORTS = Counter("ims_imports_total", "Import files processed, by final status.", ["status"])
IMPORT_ROWS = Counter("ims_import_rows_total", "Import rows posted, by destination.",
                      ["destination"])


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def receipt_posted(pence: int) -> None:
    RECEIPTS.inc()
    RECEIPT_PENCE.inc(max(int(pence), 0))


def import_finished(status: str, posted: int = 0, to_suspense: int = 0) -> None:
    IMPORTS.labels(status).inc()
    if posted:
        IMPORT_ROWS.labels("fund").inc(posted)
    if to_suspense:
        IMPORT_ROWS.labels("suspense").inc(to_suspense)


class QueueCollector:
    """Gauges read from the database when Prometheus scrapes (a few indexed counts)."""

    def __init__(self, read):
        self.read = read  # () -> dict from app.services.operations.queue_figures

    def collect(self):
        figures = self.read()
        for name, help_text in (("due_timers", "Workflow timers due and not yet fired."),
                                ("queued_imports", "Import files waiting for a worker."),
                                ("pending_refund_payments", "Approved card refunds not yet paid.")):
            if name in figures:
                g = GaugeMetricFamily(f"ims_{name}", help_text)
                g.add_metric([], figures[name])
                yield g
        g = GaugeMetricFamily("ims_worker_last_tick_timestamp_seconds",
                              "When each worker last finished a tick (Unix time).",
                              labels=["worker"])
        for worker, stamp in figures.get("workers", {}).items():
            g.add_metric([worker], stamp)
        yield g
        g = GaugeMetricFamily("ims_worker_last_tick_age_seconds",
                              "Seconds since any worker last finished a tick.")
        if figures.get("worker_age") is not None:
            g.add_metric([], figures["worker_age"])
        yield g


class _ThisProcess:
    """The process's own registry (its counters, and Python's process and GC figures)."""

    def collect(self):
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


def exposition(read_queues) -> bytes:
    """The text exposition of every metric (all processes' in multiprocess mode)."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(QueueCollector(read_queues))
    return generate_latest(registry)
