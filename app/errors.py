"""Error pages (400, 403, 404, 405, 429, 500) in the portal's layout: a plain message in the
reader's language and a way back. API routes keep their JSON errors (app.guards); FAB's own
``abort(403)`` ("Forbidden") comes here too."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

#: status -> (heading, message)
MESSAGES = {
    400: (_l("The request could not be used"),
          _l("Something in the request was not accepted. Go back, check what you entered and try "
             "again.")),
    403: (_l("You do not have access to this page"),
          _l("Your role does not include this page or action. If you need it for your work, ask "
             "an Administrator.")),
    404: (_l("Page not found"),
          _l("There is no page at this address. The link may be wrong, or the record may not "
             "exist.")),
    405: (_l("This action is not available here"),
          _l("The page does not accept this kind of request. Go back and use the page's own "
             "buttons.")),
    429: (_l("Too many attempts"),
          _l("Too many requests came from you in a short time. Wait a minute, then try again.")),
    500: (_l("Something went wrong"),
          _l("The system could not complete your request, and nothing was saved. Try again; if "
             "it happens again, tell the IMS support team the reference below.")),
}


def _back() -> str | None:
    """The page the reader came from, if it is a page of this site other than this one."""
    from app.security.redirects import local_path

    back = local_path(request.referrer)
    if back is None or back.split("?")[0] == request.path:
        return None
    return back


def render_error(code: int, description: str | None = None):
    """The error page for ``code`` (a status in MESSAGES, else 500's words) as a response body."""
    from flask_login import current_user

    from app.extensions import appbuilder
    from app.observability import current_request_id

    heading, message = MESSAGES.get(code, MESSAGES[500 if code >= 500 else 400])
    try:
        signed_in = bool(current_user and current_user.is_authenticated)
    except Exception:  # noqa: BLE001 - the session may be what failed
        signed_in = False
    return render_template("ims/error.html", appbuilder=appbuilder,
                           base_template=appbuilder.base_template, code=code, heading=heading,
                           message=message, detail=description, back=_back(),
                           signed_in=signed_in,
                           reference=current_request_id() if code >= 500 else None)


def _plain(code: int) -> str:
    """The last resort when the portal's page cannot be drawn (the database is down)."""
    return (f"<!DOCTYPE html><html lang=\"en\"><head><title>Error {code}</title></head><body>"
            f"<main><h1>Error {code}</h1><p>The system could not show this page. "
            f"<a href=\"/\">Go to the home page</a>.</p></main></body></html>")


def page_for(exc: HTTPException):
    """The response for an HTTP error of a page (not of the API)."""
    code = exc.code or 500
    # a message of ours (the request guards give one in the reader's language); Werkzeug's own
    # English descriptions are replaced by the page's words
    description = exc.description if exc.description != type(exc).description else None
    if code >= 500:
        description = None
        from app.extensions import db

        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001
            log.exception("rollback before the error page failed")
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    try:
        body = render_error(code, description)
    except Exception:  # noqa: BLE001 - never fail while reporting a failure
        log.exception("the error page for %s could not be drawn", code)
        body = _plain(code)
    return body, code, headers


def install_error_pages(app: Flask) -> None:
    @app.errorhandler(InternalServerError)
    def server_error(exc):
        from app.guards import is_api_request

        if is_api_request():
            from flask import jsonify

            return jsonify(message="Internal server error", errors={}), 500
        return page_for(exc)
