"""Error pages in the portal's layout with a plain message and a way back, in English and Welsh
(issue 21 item 5): 400, 403 (also FAB's own abort(403)), 404, 405, 429 and 500."""

from __future__ import annotations

import pytest

from tests.conftest import login


def _error_page(resp, status):
    html = resp.get_data(as_text=True)
    assert resp.status_code == status, (resp.status_code, html[:300])
    assert resp.mimetype == "text/html"
    assert 'id="error-page"' in html, html[:500]
    assert 'class="navbar' in html  # the portal's layout, with its menus
    assert 'id="error-way-back"' in html
    assert "Traceback" not in html
    return html


def test_forbidden_is_the_portals_page_with_a_way_back(client):
    login(client, "auditor")
    resp = client.get("/receipts/new", headers={"Referer": "http://localhost/audittrail/list/"})
    html = _error_page(resp, 403)
    assert "You do not have access to this page" in html
    assert "<h1>Forbidden</h1>" not in html
    assert "Go to your home page" in html and 'href="/audittrail/list/"' in html


def test_fab_security_pages_refuse_with_the_same_page(client):
    login(client, "cashier")
    html = _error_page(client.get("/users/list/"), 403)
    assert "You do not have access to this page" in html


def test_not_found_in_welsh(client):
    login(client, "clerk")
    client.get("/lang/cy")
    html = _error_page(client.get("/no-such-page"), 404)
    assert "Heb ddod o hyd i&#39;r dudalen" in html or "Heb ddod o hyd i'r dudalen" in html
    assert 'lang="cy"' in html
    client.get("/lang/en")
    html = _error_page(client.get("/no-such-page"), 404)
    assert "Page not found" in html


def test_not_found_signed_out_offers_sign_in(client):
    client.get("/logout/")
    html = _error_page(client.get("/no-such-page"), 404)
    assert "Sign in" in html


def test_method_not_allowed_keeps_allow_header(client):
    login(client, "clerk")
    resp = client.delete("/suspense/")
    _error_page(resp, 405)
    assert "GET" in resp.headers.get("Allow", "")


def test_bad_request_keeps_our_message(client):
    login(client, "clerk")
    resp = client.get("/suspense/?q=a%00b")
    html = _error_page(resp, 400)
    assert "NUL" in html


def test_api_errors_stay_json(client):
    resp = client.get("/api/v1/no-such-thing")
    assert resp.status_code == 404 and resp.is_json


@pytest.fixture
def boom(app):
    """A page that fails, with exceptions handled as in production (the notifications page's
    view function is swapped for one that raises, and put back afterwards)."""
    endpoint = "NotificationView.index"
    original = app.view_functions[endpoint]

    def kaput(*args, **kwargs):
        raise RuntimeError("kaput")

    before = app.config["PROPAGATE_EXCEPTIONS"]
    app.view_functions[endpoint] = kaput
    app.config["PROPAGATE_EXCEPTIONS"] = False
    yield "/notifications/"
    app.view_functions[endpoint] = original
    app.config["PROPAGATE_EXCEPTIONS"] = before


def test_server_error_page_in_both_languages(client, boom):
    login(client, "clerk")
    html = _error_page(client.get(boom), 500)
    assert "Something went wrong" in html and "kaput" not in html and "reference" in html
    client.get("/lang/cy")
    html = _error_page(client.get(boom), 500)
    assert "Aeth rhywbeth o&#39;i le" in html or "Aeth rhywbeth o'i le" in html
    client.get("/lang/en")


def test_too_many_requests_page(app, client):
    from werkzeug.exceptions import TooManyRequests

    with app.test_request_context("/login/"):
        from app.errors import page_for

        body, code, _headers = page_for(TooManyRequests())
    assert code == 429 and "Too many attempts" in body and 'id="error-page"' in body
