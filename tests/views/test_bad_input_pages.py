"""Bad input to the pages is a plain 400 or 404 page, never a 500, and writes nothing.

Issue #15 item 6: FAB's ``/<view>/action/<name>/<id>`` answered 500 to any logged-in user on 17
views; NUL characters, ids beyond INTEGER and FAB's list arguments reached the database.
"""

import pytest
from sqlalchemy import func, select

from app.models.ledger import Transaction
from app.models.reference import Fund

MAX_ID = 2**31 - 1  # PostgreSQL INTEGER, the type of the id columns

BIG = 2**63


def _plain_page(resp, status):
    assert resp.status_code == status, (resp.status_code, resp.data[:300])
    assert resp.mimetype == "text/html"
    assert b"Traceback" not in resp.data


def _action_views(app):
    return sorted({rule.rule.split("/action/")[0] for rule in app.url_map.iter_rules()
                   if rule.endpoint.endswith(".action")})


def test_fab_action_routes_exist_on_many_views(app):
    assert len(_action_views(app)) >= 10, _action_views(app)


@pytest.mark.parametrize("user", ["clerk", "admin"])
def test_an_unknown_action_is_404_on_every_view(app, client, as_user, user):
    as_user(user)
    for base in _action_views(app):
        _plain_page(client.post(f"{base}/action/x/1"), 404)
        _plain_page(client.post(f"{base}/action_post", data={"action": "x", "rowid": "1"}), 404)


def test_an_unknown_action_is_404_without_logging_in(app, client):
    client.get("/logout/")
    for base in _action_views(app):
        _plain_page(client.post(f"{base}/action/x/1"), 404)


def test_a_known_action_on_a_record_that_does_not_exist_is_404(client, as_user):
    as_user("admin")
    _plain_page(client.post("/users/action/resetpasswords/999999"), 404)
    _plain_page(client.post(f"/users/action/resetpasswords/{BIG}"), 404)
    _plain_page(client.post("/users/action_post", data={"action": "userinfoedit",
                                                        "rowid": "999999"}), 400)


def test_without_signing_in_whether_a_record_exists_is_not_told(client):
    client.get("/logout/")
    for pk in (1, 999999):
        resp = client.post(f"/users/action/resetpasswords/{pk}")
        assert resp.status_code == 302, resp.data[:200]


def test_a_single_record_action_through_the_list_form_is_400(client, as_user):
    """resetpasswords acts on one user (FAB: multiple=False); the list form sends many."""
    as_user("admin")
    _plain_page(client.post("/users/action_post", data={"action": "resetpasswords",
                                                        "rowid": "1"}), 400)
    _plain_page(client.post("/users/action_post", data={"action": "resetpasswords"}), 400)


def test_a_known_action_still_works(client, as_user):
    as_user("admin")
    resp = client.post("/users/action/resetpasswords/1")
    assert resp.status_code == 302 and "/resetpassword/form" in resp.headers["Location"]


@pytest.mark.parametrize("url", [
    "/transactions/?narrative=a%00b", "/fundview/list/?_flt_0_code=a%00",
    "/suspense/?q=%00",
])
def test_nul_in_a_query_string_is_a_400_page(client, as_user, url):
    as_user("manager")
    _plain_page(client.get(url), 400)


def test_nul_in_a_form_field_is_a_400_page_and_nothing_is_saved(client, as_user, session):
    as_user("admin")
    before = session.scalar(select(func.count(Fund.id)))
    resp = client.post("/fundview/add", data={"code": "N\x00L", "name": "Nul", "vat": "",
                                              "validator": ""})
    _plain_page(resp, 400)
    session.rollback()
    assert session.scalar(select(func.count(Fund.id))) == before


def test_nul_in_a_receipt_form_posts_nothing(client, as_user, session):
    as_user("cashier")
    before = session.scalar(select(func.count(Transaction.id)))
    resp = client.post("/receipts/new", data={"payment_method_code": "CASH",
                                              "fund_code": "TWS", "account_reference": "TW\x001",
                                              "amount": "1.00"})
    _plain_page(resp, 400)
    session.rollback()
    assert session.scalar(select(func.count(Transaction.id))) == before


@pytest.mark.parametrize("url", [
    f"/transactions/{BIG}", f"/transactions/{MAX_ID + 1}", f"/fundview/show/{BIG}",
    f"/fundview/edit/{MAX_ID + 1}", f"/users/show/{BIG}", f"/refunds/{BIG}",
    f"/suspense/{MAX_ID + 1}", f"/imports/{BIG}", f"/workflow-instances/{BIG}",
])
def test_an_id_beyond_integer_in_a_page_address_is_a_404_page(client, as_user, url):
    as_user("admin" if "users" in url or "fundview" in url else "manager")
    _plain_page(client.get(url), 404)


@pytest.mark.parametrize("query", [
    "page_FundView=-1", f"page_FundView={BIG}", "page_FundView=" + "9" * 5000,
    "psize_FundView=0", "psize_FundView=100000",
    "page_size=abc", f"_flt_0_validator_id={BIG}", "_flt_5_disabled=y", "_flt_0_disabled=maybe",
])
def test_bad_fab_list_arguments_are_a_400_page(client, as_user, query):
    as_user("admin")
    _plain_page(client.get(f"/fundview/list/?{query}"), 400)


@pytest.mark.parametrize("url", [
    f"/suspense/?page={BIG}", "/write-offs/?page=-1", f"/imports/?page={BIG}",
    f"/transactions/?page={BIG}&fund=TWS",
])
def test_a_page_number_beyond_any_offset_is_a_400_page(client, as_user, url):
    as_user("manager")
    _plain_page(client.get(url), 400)


def test_ids_beyond_integer_in_forms_and_filters_are_not_looked_up(client, as_user):
    as_user("clerk")
    assert client.get(f"/suspense/?import_id={BIG}").status_code == 200
    assert client.get(f"/write-offs/propose?ids={BIG}").status_code == 200
    assert client.get(f"/transfers/new?source_transaction_id={BIG}").status_code == 200
    resp = client.post("/notifications/read", data={"id": str(BIG)})
    _plain_page(resp, 404)


def test_a_json_body_that_is_not_an_object_is_a_400_page(client, as_user):
    as_user("cashier")
    _plain_page(client.post("/receipts/validate", data="[1, 2]",
                            content_type="application/json"), 400)
