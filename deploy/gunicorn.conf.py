"""gunicorn settings for the IMS (``gunicorn -c deploy/gunicorn.conf.py run:app``).

Prometheus metrics in multiprocess mode: every worker writes its counters to
PROMETHEUS_MULTIPROC_DIR (the systemd unit empties it before start), /metrics adds them up, and a
worker that exits is marked dead so its gauges drop out.
"""

import os

bind = os.environ.get("IMS_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("IMS_WEB_WORKERS", "4"))
timeout = 60
accesslog = None  # the app logs each request (JSON, with its request id, no query strings)
forwarded_allow_ips = os.environ.get("IMS_FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
