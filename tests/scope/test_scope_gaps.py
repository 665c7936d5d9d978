"""Fund groups, the remaining gaps of issue 20: a group Cashier's cash-up counts only their funds'
template rows; notifications about another group's records are not shown; the suspense report
counts only the user's suspense; a FAB form or model API body (or a reference check) naming a
fund outside the user's groups is a 404 and saves nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from flask_login import login_user
from sqlalchemy import func, select

from app.models.cashup import CashUp, CashUpTemplateRow
from app.models.fund_group import FundGroup, UserFundAccess, user_fund_group
from app.models.imports import FundReferencePattern
from app.models.notification import Notification
from app.models.reference import AccountHolder, Fund, Office
from app.security import roles as R
from tests.conftest import PASSWORD, login, unique


def _user(app, session, name, roles, group_id):
    sm = app.appbuilder.sm
    user = sm.add_user(name, "Gap", name, f"{name}@example.invalid",
                       [sm.find_role(r) for r in roles], password=PASSWORD)
    session.add(UserFundAccess(user_id=user.id, all_funds=False))
    session.execute(user_fund_group.insert().values(user_id=user.id, group_id=group_id))
    session.commit()
    return user.username


def _txn(session, code, ref, pence=5_000):
    from app.services import ledger as L

    group = L.post_group(session, "receipt", [L.Leg(L.BANK, pence),
                                              L.Leg(L.FUND, -pence, code, ref)], actor="cashier")
    txn = L.record_income(session, group=group, fund_code=code, account_reference=ref,
                          amount=pence, payment_method_code="CARD",
                          transaction_date=dt.date.today(),
                          external_reference="pay-" + ref.lower(), created_by="cashier")
    session.commit()
    return txn


@pytest.fixture(scope="module")
def gaps(app):
    """Funds A and B (a group each), an office with a template row of each, an account holder
    of each; a cashier, a manager and an administrator of group A."""
    from app.extensions import db
    from app.services.audit import set_actor

    with app.app_context():
        s = db.session
        set_actor("seed")
        tag = unique("", 5)
        out = {"tag": tag, "office": f"G{tag}"}
        office = Office(code=out["office"], name=f"Gap office {tag}")
        s.add(office)
        s.flush()
        out["office_id"] = office.id
        for side in ("A", "B"):
            f = Fund(code=f"G{side}{tag}", name=f"Gap fund {side}{tag}", vat_code="O")
            s.add(f)
            s.flush()
            g = FundGroup(name=f"Gap {side}{tag}", funds=[f])
            row = CashUpTemplateRow(office_code=out["office"], fund_code=f.code,
                                    description=f"Gap machine {side}{tag}",
                                    account_reference=f"GM{side}{tag}", sort_order=1)
            holder = AccountHolder(fund_code=f.code, account_reference=f"GH{side}{tag}",
                                   name=f"Gap holder {side}{tag}")
            s.add_all([g, row, holder])
            s.commit()
            out[side] = {"code": f.code, "id": f.id, "group": g.id, "row": row.id,
                         "row_text": row.description, "holder": holder.id,
                         "holder_ref": holder.account_reference}
        gid = out["A"]["group"]
        out["cashier"] = _user(app, s, f"gcash{tag}".lower(), [R.CASHIER], gid)
        out["manager"] = _user(app, s, f"gmgr{tag}".lower(), [R.MANAGER, R.CLERK], gid)
        out["admin"] = _user(app, s, f"gadm{tag}".lower(), [R.ADMIN, R.CLERK], gid)
        set_actor(None)
        db.session.remove()
    return out


# --------------------------------------------------------------------------- 1. cash-ups
def test_a_group_cashier_counts_only_their_funds_template_rows(client, api, session, gaps):
    a, b, office = gaps["A"], gaps["B"], gaps["office"]
    login(client, gaps["cashier"])
    page = client.get(f"/cash-ups/new?office_code={office}")
    assert page.status_code == 200
    assert a["row_text"] in page.text and b["row_text"] not in page.text
    assert f'name="t_{b["row"]}"' not in page.text
    till = api(gaps["cashier"]).get(f"/api/v1/cash-ups/till?office_code={office}")
    assert till.status_code == 200
    assert [r["id"] for r in till.json["template_rows"]] == [a["row"]]
    # a tampered row of the other group's fund: 404, nothing saved
    before = session.scalar(select(func.count(CashUp.id)))
    login(client, gaps["cashier"])
    form = {"office_code": office, "till_date": dt.date.today().isoformat(),
            "bag_number": unique("GB", 10)}
    resp = client.post("/cash-ups/new", data={**form, f"t_{b['row']}": "3.00", "d_2.00": "1",
                                              "d_1.00": "1"})
    assert resp.status_code == 404
    session.expire_all()
    assert session.scalar(select(func.count(CashUp.id))) == before
    # the cashier's own fund's row is cashed up
    resp = client.post("/cash-ups/new", data={**form, f"t_{a['row']}": "3.00", "d_2.00": "1",
                                              "d_1.00": "1"})
    assert resp.status_code == 302, resp.text[:500]
    # an all-funds cashier still sees every row of the office
    login(client, "cashier")
    page = client.get(f"/cash-ups/new?office_code={office}")
    assert a["row_text"] in page.text and b["row_text"] in page.text


# --------------------------------------------------------------------------- 2. notifications
def test_notifications_about_another_groups_records_are_not_shown(app, client, session, gaps):
    from app.models.notification import NotificationFund
    from app.services import notifications as N
    from app.services import refunds as RF
    from app.services import writeoffs as W
    from tests.integration.test_refunds import deploy_refund_workflow

    deploy_refund_workflow(session)
    mgr = gaps["manager"]
    tag = gaps["tag"]
    pence = {"A": 1_011, "B": 1_022}
    notes = {}
    for side in ("A", "B"):
        txn = _txn(session, gaps[side]["code"], f"GN{side}{tag}")
        refund = RF.request_refund(session, transaction_id=txn.id, amount=f"{pence[side] / 100:.2f}",
                                   reason="gap", method="card", actor="clerk").refund
        wo = W.request_write_off(session, transaction_id=txn.id, amount="1.00", reason="gap",
                                 actor="clerk")
        notes[side] = (refund, wo)
    session.expire_all()
    # every Finance Manager was told of both (the role), each note kept with its record's fund
    b_notes = session.scalars(select(Notification).where(
        Notification.username == mgr,
        Notification.id.in_(select(NotificationFund.notification_id).where(
            NotificationFund.fund_code == gaps["B"]["code"])))).all()
    assert b_notes, "the manager's role was told of fund B's refund"
    mine = N.for_user(session, mgr)
    texts = [n.message for n in mine]
    assert any("£10.11" in t for t in texts)
    assert not any("£10.22" in t for t in texts)
    assert not any(f"Write-off {notes['B'][1].id} " in t for t in texts)
    assert N.unread_count(session, mgr) == len([n for n in mine if n.read_at is None])
    # the page and the navbar count say the same; another group's note cannot be marked read
    login(client, mgr)
    page = client.get("/notifications/")
    assert page.status_code == 200 and "£10.11" in page.text and "£10.22" not in page.text
    assert client.post("/notifications/read", data={"id": str(b_notes[0].id)}).status_code == 404
    assert client.post("/notifications/read", data={}).status_code == 302  # all of mine
    session.expire_all()
    assert session.get(Notification, b_notes[0].id).read_at is None
    assert N.unread_count(session, mgr) == 0
    # the same notes are shown to an all-funds Finance Manager
    assert any("£10.22" in n.message for n in N.for_user(session, "manager"))


# --------------------------------------------------------------------------- 3. suspense report
def _report(app, username):
    from app.extensions import db
    from app.services import suspense as S

    with app.test_request_context():
        login_user(app.appbuilder.sm.find_user(username))
        bands = S.age_report(db.session)
        rec = S.reconciliation(db.session)
    return sum(b["count"] for b in bands), sum(b["value"] for b in bands), rec


def test_suspense_report_counts_only_the_users_suspense(app, client, api, session, gaps):
    from tests.integration.test_suspense_service import make_item

    mine_before = _report(app, gaps["manager"])
    all_before = _report(app, "manager")
    assert mine_before[2] is None and all_before[2] is not None
    make_item(session, 7_001, reference=f"GSU{gaps['tag']}")  # unallocated: counted for both
    make_item(session, 7_003, reference=f"GSB{gaps['tag']}", fund_code=gaps["B"]["code"])
    make_item(session, 7_007, reference=f"GSA{gaps['tag']}", fund_code=gaps["A"]["code"])
    mine, every = _report(app, gaps["manager"]), _report(app, "manager")
    assert mine[:2] == (mine_before[0] + 2, mine_before[1] + 7_001 + 7_007)
    assert every[:2] == (all_before[0] + 3, all_before[1] + 7_001 + 7_003 + 7_007)
    # the page and the API: no control-account reconciliation (central) for a group's user
    login(client, gaps["manager"])
    page = client.get("/suspense-report/")
    assert page.status_code == 200 and 'id="rec-central"' in page.text
    assert 'id="rec-ledger"' not in page.text
    resp = api(gaps["manager"]).get("/api/v1/suspense/report")
    assert resp.status_code == 200 and resp.json["reconciliation"] is None
    assert sum(b["count"] for b in resp.json["bands"]) == mine[0]
    resp = api("manager").get("/api/v1/suspense/report")
    assert resp.json["reconciliation"]["items"] >= 3


# --------------------------------------------------------------------------- 4. tampered funds
def _count(session, model, **where):
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).filter_by(**where))


def test_fab_forms_naming_another_groups_fund_are_404_and_save_nothing(client, session, gaps):
    a, b, tag = gaps["A"], gaps["B"], gaps["tag"]
    login(client, gaps["admin"])
    # account holders: add
    ref = f"GT{tag}"
    assert client.post("/accountholderview/add", data={
        "fund": str(b["id"]), "account_reference": ref, "name": "Tamper"}).status_code == 404
    assert _count(session, AccountHolder, account_reference=ref) == 0
    assert client.post("/accountholderview/add", data={
        "fund": str(a["id"]), "account_reference": ref, "name": "Mine"}).status_code == 302
    assert _count(session, AccountHolder, fund_code=a["code"], account_reference=ref) == 1
    # cash-up template rows: add and edit
    text = f"Gap tamper {tag}"
    row = {"office": str(gaps["office_id"]), "description": text, "account_reference": "GX1",
           "sort_order": "3"}
    assert client.post("/cashuptemplaterowview/add",
                       data={**row, "fund": str(b["id"])}).status_code == 404
    assert _count(session, CashUpTemplateRow, description=text) == 0
    resp = client.post(f"/cashuptemplaterowview/edit/{a['row']}", data={
        **row, "description": a["row_text"], "fund": str(b["id"])})
    assert resp.status_code == 404
    assert session.get(CashUpTemplateRow, a["row"]).fund_code == a["code"]
    # a fund id that is no fund at all is as unknown as another group's
    assert client.post("/cashuptemplaterowview/add",
                       data={**row, "fund": "99999999"}).status_code == 404
    # fund reference patterns
    assert client.post("/fundreferencepatternview/add", data={
        "fund": str(b["id"]), "pattern": f"^GAP{tag}$", "priority": "5"}).status_code == 404
    assert _count(session, FundReferencePattern, pattern=f"^GAP{tag}$") == 0
    # an all-funds Administrator may still choose any fund
    login(client, "admin")
    assert client.post("/fundreferencepatternview/add", data={
        "fund": str(b["id"]), "pattern": f"^GAP{tag}$", "priority": "5"}).status_code == 302
    assert _count(session, FundReferencePattern, pattern=f"^GAP{tag}$") == 1


def test_api_bodies_naming_another_groups_fund_are_404(client, api, session, gaps):
    a, b, tag = gaps["A"], gaps["B"], gaps["tag"]
    c = api(gaps["admin"])
    ref = f"GU{tag}"
    resp = c.post("/api/v1/accounts/", json={"fund_code": b["code"], "account_reference": ref,
                                             "name": "Tamper"})
    assert resp.status_code == 404 and "message" in resp.json
    assert _count(session, AccountHolder, account_reference=ref) == 0
    resp = c.post("/api/v1/accounts/", json={"fund_code": a["code"], "account_reference": ref,
                                             "name": "Mine"})
    assert resp.status_code == 201, resp.json
    pk = resp.json["id"]
    resp = c.put(f"/api/v1/accounts/{pk}", json={"fund_code": b["code"],
                                                 "account_reference": ref, "name": "Moved"})
    assert resp.status_code == 404
    session.expire_all()
    assert session.get(AccountHolder, pk).fund_code == a["code"]
    # reference checks would tell another group's account holder's name
    for url, body in (("/api/v1/references/validate",
                       {"fund_code": b["code"], "reference": b["holder_ref"]}),):
        assert c.post(url, json=body).status_code == 404
        assert c.post(url, json={**body, "fund_code": a["code"],
                                 "reference": a["holder_ref"]}).status_code == 200
    login(client, gaps["admin"])
    resp = client.post("/receipts/validate", json={"fund_code": b["code"],
                                                   "account_reference": b["holder_ref"]})
    assert resp.status_code == 404 and b["holder_ref"] not in resp.text
    resp = client.post("/receipts/validate", json={"fund_code": a["code"],
                                                   "account_reference": a["holder_ref"]})
    assert resp.status_code == 200 and resp.json["account_name"] == f"Gap holder A{tag}"
    # payment requests and suspense allocations check each line's fund
    m = api(gaps["manager"])
    resp = m.post("/api/v1/payment-requests/", json={"items": [
        {"fund_code": b["code"], "reference": b["holder_ref"], "amount": "5.00"}]})
    assert resp.status_code == 404
    from tests.integration.test_suspense_service import make_item

    item = make_item(session, 2_500, reference=f"GAL{tag}")
    resp = m.post(f"/api/v1/suspense/{item.id}/allocations", json={"lines": [
        {"fund_code": b["code"], "account_reference": b["holder_ref"], "amount": "25.00"}]})
    assert resp.status_code == 404
    session.expire_all()
    assert session.get(type(item), item.id).status == "unallocated"
    # a journal of the user's own income to another group's fund
    from app.models.ledger import Transaction

    txn = _txn(session, a["code"], f"GJ{tag}")
    before = _count(session, Transaction, fund_code=b["code"])
    resp = m.post("/api/v1/journals/", json={"transaction_id": txn.id, "reason": "tamper",
                                             "targets": [{"fund_code": b["code"],
                                                          "account_reference": "GJX",
                                                          "amount": "10.00"}]})
    assert resp.status_code == 404
    assert _count(session, Transaction, fund_code=b["code"]) == before


def test_upgrade_gives_existing_notifications_their_records_funds(app, session, gaps):
    """Migration 0023's backfill: a notification from before it, linking to another group's
    refund, gets that refund's fund and is no longer shown to the group's user."""
    import importlib.util
    import pathlib

    from app.services import notifications as N
    from app.services import refunds as RF
    from tests.integration.test_refunds import deploy_refund_workflow

    path = (pathlib.Path(__file__).parents[2] / "migrations" / "versions"
            / "0023_notification_funds.py")
    spec = importlib.util.spec_from_file_location("m0021", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    deploy_refund_workflow(session)
    txn = _txn(session, gaps["B"]["code"], f"GO{gaps['tag']}")
    refund = RF.request_refund(session, transaction_id=txn.id, amount="1.00", reason="old",
                               method="card", actor="clerk").refund
    old = Notification(username=gaps["manager"], message=f"Old note {gaps['tag']}",
                       link=f"/refunds/{refund.id}")
    plain = Notification(username=gaps["manager"], message=f"Plain note {gaps['tag']}",
                         link="/cash-ups/")
    session.add_all([old, plain])
    session.commit()
    seen = {n.message for n in N.for_user(session, gaps["manager"])}
    assert {old.message, plain.message} <= seen
    assert migration.backfill(session.connection()) >= 1
    session.commit()
    session.expire_all()
    assert [f.fund_code for f in session.get(Notification, old.id).funds] == [gaps["B"]["code"]]
    seen = {n.message for n in N.for_user(session, gaps["manager"])}
    assert old.message not in seen and plain.message in seen
