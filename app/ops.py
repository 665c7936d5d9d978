"""Operators' endpoints, outside the portal and the API: ``/healthz`` (the process answers),
``/readyz`` (database reachable, migrations at head, a worker ticking) and ``/metrics``
(Prometheus). No login and no session: cheap enough to be polled every few seconds.

``/metrics`` shows internal figures, so it answers only a request with the bearer token
``IMS_METRICS_TOKEN`` or from an address in ``IMS_METRICS_ALLOW`` (networks, by default the
machine itself); anything else gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress

from flask import Blueprint, Response, current_app, jsonify, request

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    from app.extensions import db
    from app.services.operations import readiness

    result = readiness(db.session, current_app)
    return jsonify(result.to_dict()), (200 if result.ready else 503)


def _metrics_allowed() -> bool:
    token = current_app.config.get("IMS_METRICS_TOKEN") or ""
    given = request.headers.get("Authorization", "")
    if token and given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip(), token):
        return True
    try:
        peer = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    for net in current_app.config.get("IMS_METRICS_ALLOW") or ():
        try:
            if peer in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


@bp.get("/metrics")
def metrics():
    if not _metrics_allowed():
        return jsonify(message="Metrics need the metrics token or an allowed address."), 403
    from prometheus_client import CONTENT_TYPE_LATEST

    from app import metrics as m
    from app.extensions import db
    from app.services.operations import queue_figures

    return Response(m.exposition(lambda: queue_figures(db.session)),
                    content_type=CONTENT_TYPE_LATEST)


def install_ops(app) -> None:
    from app.extensions import csrf

    app.register_blueprint(bp)
    csrf.exempt(bp)
