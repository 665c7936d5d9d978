"""Fund groups: the scope service, tampering (404, nothing saved), central work, the inbox
(approvers hold the fund; a lane without a holder escalates to the Head of Finance), the
dashboard cache per scope, the administration pages and API, and the upgrade."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from app.models.fund_group import FundGroup, UserFundAccess, user_fund_group
from app.models.ledger import Transaction
from app.models.reference import Fund
from app.security import roles as R
from tests.conftest import PASSWORD, login, unique


def _user(app, session, name, roles, group_ids=(), all_funds=False):
    sm = app.appbuilder.sm
    user = sm.add_user(name, "Scope", name, f"{name}@example.invalid",
                       [sm.find_role(r) for r in roles], password=PASSWORD)
    session.add(UserFundAccess(user_id=user.id, all_funds=all_funds))
    for gid in group_ids:
        session.execute(user_fund_group.insert().values(user_id=user.id, group_id=gid))
    session.commit()
    return user


def _receipt(session, code, ref, pence=5_000):
    from app.services import ledger as L

    group = L.post_group(session, "receipt", [L.Leg(L.BANK, pence),
                                              L.Leg(L.FUND, -pence, code, ref)], actor="cashier")
    txn = L.record_income(session, group=group, fund_code=code, account_reference=ref,
                          amount=pence, payment_method_code="CARD",
                          transaction_date=dt.date.today(), external_reference="pay-" + ref.lower(),
                          created_by="cashier")
    session.commit()
    return txn


@pytest.fixture(scope="module")
def two(app):
    """Funds A and B, a group each, a transaction in each; a clerk and a manager of group A."""
    from app.extensions import db
    from app.services.audit import set_actor

    with app.app_context():
        s = db.session
        set_actor("seed")
        tag = unique("", 5)
        out = {"tag": tag}
        for side in ("A", "B"):
            f = Fund(code=f"S{side}{tag}", name=f"Scope fund {side}{tag}", vat_code="O")
            s.add(f)
            s.flush()
            g = FundGroup(name=f"Scope {side}{tag}", funds=[f])
            s.add(g)
            s.commit()
            out[side] = {"code": f.code, "group": g.id,
                         "txn": _receipt(s, f.code, f"Z{side}{tag}").id}
        out["clerk"] = _user(app, s, f"sclerk{tag}".lower(), [R.CLERK], [out["A"]["group"]]).username
        out["manager"] = _user(app, s, f"smgr{tag}".lower(), [R.MANAGER],
                               [out["A"]["group"]]).username
        set_actor(None)
        db.session.remove()
    return out


def test_scope_of_a_group_all_funds_and_no_group(app, session, two):
    from app.services.scope import codes_for_user

    sm = app.appbuilder.sm
    assert codes_for_user(session, sm.find_user(two["clerk"]).id) == {two["A"]["code"]}
    assert codes_for_user(session, sm.find_user("clerk").id) is None  # demo users: all funds
    newcomer = sm.add_user(unique("new", 10).lower(), "New", "User", "n@example.invalid",
                           [sm.find_role(R.CLERK)], password=PASSWORD)
    assert codes_for_user(session, newcomer.id) == frozenset()  # created after: no fund
    assert sm.find_user("parking") is not None
    assert codes_for_user(session, sm.find_user("parking").id) == {"PCN", "CPK"}


def test_search_and_pages_show_the_groups_funds_only(client, two):
    login(client, two["clerk"])
    page = client.get("/transactions/").get_data(as_text=True)
    assert two["A"]["code"] in page and two["B"]["code"] not in page
    # asking for the other group's fund by name finds nothing rather than its rows
    page = client.get(f"/transactions/?fund={two['B']['code']}").get_data(as_text=True)
    assert f"Z B{two['tag']}" not in page and f"ZB{two['tag']}" not in page
    assert client.get(f"/transactions/{two['B']['txn']}").status_code == 404
    assert client.get(f"/transactions/{two['A']['txn']}").status_code == 200
    form = client.get("/receipts/new").get_data(as_text=True)
    assert two["A"]["code"] in form and two["B"]["code"] not in form and "CTAX" not in form


def test_narrative_search_counts_the_groups_funds_only(api, session, two):
    """A search by narrative alone is counted from the narratives (app/services/search.py
    _count): a user of one group counts only the matches in its funds."""
    from app.services import ledger as L

    word = unique("Nscope", 12)
    for side in ("A", "B"):
        group = L.post_group(session, "receipt", [L.Leg(L.BANK, 700),
                                                  L.Leg(L.FUND, -700, two[side]["code"], "ZN")],
                             actor="cashier")
        L.record_income(session, group=group, fund_code=two[side]["code"],
                        account_reference="ZN", amount=700, payment_method_code="CARD",
                        transaction_date=dt.date.today(), narrative=f"Paid {word} {side}",
                        created_by="cashier")
    session.commit()
    from sqlalchemy import select

    from app.models.ledger import Transaction
    from app.models.ledger import TransactionNarrative as N

    # each narrative keeps its transaction's fund (the scoped search filters on that copy)
    assert set(session.execute(select(N.narrative, N.fund_code, Transaction.fund_code).join(
        Transaction, Transaction.id == N.transaction_id).where(N.narrative.like(f"%{word}%")))
               ) == {(f"Paid {word} {side}", two[side]["code"], two[side]["code"])
                     for side in ("A", "B")}
    mine = api(two["clerk"]).get(f"/api/v1/transactions/?narrative={word.lower()}").json
    assert mine["count"] == 1 and [t["fund_code"] for t in mine["result"]] == [two["A"]["code"]]
    everyone = api("clerk").get(f"/api/v1/transactions/?narrative={word}").json
    assert everyone["count"] == 2 and len(everyone["result"]) == 2
    assert {t["narrative"] for t in everyone["result"]} == {f"Paid {word} A", f"Paid {word} B"}


def test_tampered_fund_ids_are_404_and_save_nothing(client, api, session, two):
    a, b = two["A"], two["B"]
    before = session.scalar(select(func.count(Transaction.id)).where(Transaction.fund_code == b["code"]))
    login(client, two["clerk"])
    resp = client.post("/receipts/new", data={
        "payment_method_code": "CASH", "transaction_date": dt.date.today().isoformat(),
        "fund_code": b["code"], "account_reference": "X1", "amount": "5.00"})
    assert resp.status_code == 404
    resp = client.post(f"/journals/new/{a['txn']}", data={
        "reason": "move", "fund_code": b["code"], "account_reference": "X2", "amount": "1.00"})
    assert resp.status_code == 404
    assert client.get(f"/journals/new/{b['txn']}").status_code == 404
    assert client.get(f"/refunds/new/{b['txn']}").status_code == 404
    c = api(two["clerk"])
    assert c.get(f"/api/v1/transactions/{b['txn']}").status_code == 404
    assert c.get(f"/api/v1/transactions/{a['txn']}").status_code == 200
    resp = c.post("/api/v1/receipts/", json={"payment_method_code": "CASH", "lines": [
        {"fund_code": b["code"], "account_reference": "X3", "amount": "2.00"}]})
    assert resp.status_code == 404 and "message" in resp.json
    resp = c.post("/api/v1/transfers/", json={"reason": "tamper", "pairs": [
        {"transaction_id": b["txn"], "fund_code": a["code"], "account_reference": "X4",
         "amount": "1.00"}]})
    assert resp.status_code == 404
    resp = c.post("/api/v1/refunds/", json={"transaction_id": b["txn"], "amount": "1.00",
                                            "reason": "tamper", "method": "card"})
    assert resp.status_code == 404
    listed = c.get(f"/api/v1/transactions/?fund={b['code']}").json
    assert listed.get("count", 0) == 0 and not listed.get("result")
    session.expire_all()
    assert session.scalar(select(func.count(Transaction.id)).where(
        Transaction.fund_code == b["code"])) == before


def test_central_work_is_for_all_funds_users(client, api, two):
    login(client, two["manager"])
    for url in ("/periods/", "/gl-exports/", "/ledger/trial-balance", "/refund-payment-runs/"):
        assert client.get(url).status_code == 404, url
    assert api(two["manager"]).get("/api/v1/gl-exports/").status_code == 404
    login(client, "manager")
    assert client.get("/periods/").status_code == 200


def test_a_fund_groups_clerk_reads_the_import_rules_and_does_not_change_them(client, session,
                                                                           two):
    """Processing rules, bank profiles and fund reference patterns apply to every import: a
    clerk of one fund group sees them and gets a 404 for adding, editing or deleting one
    (nothing saved: a pattern ".*" for their own fund would take every other group's rows
    without a fund); a clerk with all funds changes them."""
    from app.models.imports import FundReferencePattern, ProcessingRule

    rule = ProcessingRule(name=unique("Rule ", 14), priority=500, enabled=False,
                          conditions='reference starts_with "ZZSCOPE"', set_fund_code="TWS")
    session.add(rule)
    session.commit()
    name = unique("Steal ", 14)
    form = {"name": name, "priority": "1", "enabled": "y",
            "conditions": 'reference starts_with "B"', "set_fund_code": two["A"]["code"]}
    login(client, two["clerk"])
    assert client.get("/processingruleview/list/").status_code == 200
    assert client.get("/bankprofileview/list/").status_code == 200
    for url in ("/processingruleview/add", f"/processingruleview/edit/{rule.id}",
                "/bankprofileview/add"):
        assert client.get(url).status_code == 404, url
    assert client.post("/processingruleview/add", data=form).status_code == 404
    assert client.post(f"/processingruleview/edit/{rule.id}", data=form).status_code == 404
    assert client.post(f"/processingruleview/delete/{rule.id}").status_code == 404
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(ProcessingRule).where(
        ProcessingRule.name == name)) == 0
    assert session.get(ProcessingRule, rule.id).set_fund_code == "TWS"

    pattern = session.scalars(select(FundReferencePattern)).first()
    before = (pattern.pattern, pattern.fund_code)
    grab = {"fund": two["A"]["code"], "pattern": ".*", "priority": "0", "enabled": "y"}
    assert client.get("/fundreferencepatternview/list/").status_code == 200
    for url in ("/fundreferencepatternview/add", f"/fundreferencepatternview/edit/{pattern.id}"):
        assert client.get(url).status_code == 404, url
        assert client.post(url, data=grab).status_code == 404, url
    assert client.post(f"/fundreferencepatternview/delete/{pattern.id}").status_code == 404
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(FundReferencePattern).where(
        FundReferencePattern.pattern == ".*")) == 0
    assert (pattern.pattern, pattern.fund_code) == before

    login(client, "clerk")
    assert client.get("/processingruleview/add").status_code == 200
    assert client.get(f"/processingruleview/edit/{rule.id}").status_code == 200
    assert client.get("/fundreferencepatternview/add").status_code == 200


def test_approvers_see_and_decide_only_their_funds(app, session, two):
    from app.services import refunds as RF
    from app.services import workflow as wf
    from app.services.scope import lane_for_funds
    from tests.integration.test_refunds import deploy_refund_workflow

    deploy_refund_workflow(session)
    refunds = {side: RF.request_refund(session, transaction_id=two[side]["txn"], amount="1.00",
                                       reason="scope", method="card", actor="clerk").refund
               for side in ("A", "B")}
    inbox = {t.instance_id for t in wf.tasks_for_user(session, two["manager"])}
    assert refunds["B"].workflow_instance_id not in inbox
    b_task = session.scalars(select(wf.WorkflowTask).where(
        wf.WorkflowTask.instance_id == refunds["B"].workflow_instance_id)).first()
    if b_task.role == R.MANAGER:
        a_task = session.scalars(select(wf.WorkflowTask).where(
            wf.WorkflowTask.instance_id == refunds["A"].workflow_instance_id)).first()
        assert refunds["A"].workflow_instance_id in inbox and a_task.role == R.MANAGER
    with pytest.raises(Exception) as exc:
        wf.complete_task(session, b_task.id, two["manager"], "approve", "ok")
    assert getattr(exc.value, "status", None) == 404
    session.rollback()
    # a lane nobody of which holds the fund: the task goes to the Head of Finance
    sm = app.appbuilder.sm
    lane = sm.find_role("Scope lane") or sm.add_role("Scope lane")
    _user(app, session, unique("lane", 10).lower(), [], [two["A"]["group"]])
    member = session.scalars(select(UserFundAccess).order_by(UserFundAccess.user_id.desc())).first()
    from flask_appbuilder.security.sqla.models import User

    from app.extensions import appbuilder  # noqa: F401

    user = session.get(User, member.user_id)
    user.roles = [lane]
    session.commit()
    assert lane_for_funds(session, "refund", refunds["A"].id, "Scope lane") == "Scope lane"
    assert lane_for_funds(session, "refund", refunds["B"].id, "Scope lane") == R.HEAD
    assert lane_for_funds(session, "configuration_change", "1", "Scope lane") == "Scope lane"


def test_dashboard_cache_is_per_scope(app, session, two):
    from flask_login import login_user

    from app.services import search
    from app.services.search import cached_dashboard

    search._DASHBOARD_CACHE.clear()  # an earlier test may have cached the all-funds figures
    sm = app.appbuilder.sm
    figures = {}
    for name in (two["clerk"], "clerk"):
        with app.test_request_context():
            login_user(sm.find_user(name))
            figures[name] = cached_dashboard(session, 300)
    mine = {r["code"] for r in figures[two["clerk"]]["month_by_fund"]}
    assert mine <= {two["A"]["code"]} and two["A"]["code"] in mine
    assert {two["A"]["code"], two["B"]["code"]} <= {
        r["code"] for r in figures["clerk"]["month_by_fund"]}


def test_a_narrative_search_counts_further_within_a_fund_group(app, two):
    """A user with all funds counts a search by narrative to NARRATIVE_COUNT_CAP; a user of a
    fund group, whose matches the index narrows to the group's funds, to COUNT_CAP."""
    from flask_login import login_user

    from app.services import search as S

    f = S.parse_filters({"narrative": "jones"})
    caps = {}
    for name in (two["clerk"], "clerk"):
        with app.app_context(), app.test_request_context():  # a g of its own
            login_user(app.appbuilder.sm.find_user(name))
            caps[name] = (S.count_cap(f), S.count_cap(S.parse_filters({})))
    assert caps == {two["clerk"]: (S.COUNT_CAP, S.COUNT_CAP),
                    "clerk": (S.NARRATIVE_COUNT_CAP, S.COUNT_CAP)}
    assert S.NARRATIVE_COUNT_CAP < S.COUNT_CAP


def test_administrator_defines_groups_and_gives_them(app, client, api, session, two):
    from app.models.audit import AuditEvent

    admin = api("admin")
    name = f"Parks {two['tag']}"
    resp = admin.post("/api/v1/fund-groups/", json={"name": name, "funds": [two["B"]["code"]]})
    assert resp.status_code == 201, resp.json
    gid = resp.json["id"]
    assert admin.post("/api/v1/fund-groups/", json={"name": name, "funds": []}).status_code == 409
    assert admin.post("/api/v1/fund-groups/", json={"name": "x", "funds": ["NOPE!"]}).status_code == 422
    assert admin.post("/api/v1/fund-groups/", json={"name": "", "funds": []}).status_code == 422
    uid = app.appbuilder.sm.find_user(two["clerk"]).id
    resp = admin.put(f"/api/v1/fund-groups/users/{uid}",
                     json={"all_funds": False, "groups": [two["A"]["group"], gid]})
    assert resp.status_code == 200 and set(resp.json["groups"]) >= {name}
    assert admin.put(f"/api/v1/fund-groups/users/{uid}",
                     json={"all_funds": "yes", "groups": []}).status_code == 422
    assert admin.put("/api/v1/fund-groups/users/999999",
                     json={"all_funds": False, "groups": []}).status_code == 404
    assert admin.get(f"/api/v1/fund-groups/{gid}").json["funds"] == [two["B"]["code"]]
    assert session.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == "user_fund_access.set", AuditEvent.entity_id == str(uid))) >= 1
    # the clerk now sees B too; back to A only through the page
    login(client, two["clerk"])
    assert client.get(f"/transactions/{two['B']['txn']}").status_code == 200
    login(client, "admin")
    assert client.get("/fund-groups/").status_code == 200
    assert client.get(f"/fund-groups/user/{uid}").status_code == 200
    resp = client.post(f"/fund-groups/user/{uid}", data={"groups": [str(two["A"]["group"])]})
    assert resp.status_code == 302
    login(client, two["clerk"])
    assert client.get(f"/transactions/{two['B']['txn']}").status_code == 404
    assert client.get("/fund-groups/").status_code in (302, 403)
    assert api(two["clerk"]).get("/api/v1/fund-groups/").status_code == 403
    login(client, "admin")
    assert client.post(f"/fund-groups/delete/{gid}").status_code == 302
    assert session.get(FundGroup, gid) is None


def test_upgrade_gives_existing_users_all_funds(tmp_path):
    """Users who exist at the fund-groups migration keep seeing every fund (the migration's own
    upgrade(), run by Alembic on the tables it needs; test_migrations runs the whole chain)."""
    import importlib.util
    import pathlib

    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    from sqlalchemy import create_engine

    path = pathlib.Path(__file__).parents[2] / "migrations" / "versions" / "0020_fund_groups.py"
    spec = importlib.util.spec_from_file_location("m0017", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    engine = create_engine(f"sqlite:///{tmp_path}/up.db")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE ab_user (id INTEGER PRIMARY KEY, username TEXT)")
        conn.exec_driver_sql("CREATE TABLE fund (id INTEGER PRIMARY KEY, code TEXT)")
        conn.exec_driver_sql("INSERT INTO ab_user (username) VALUES ('olduser'), ('another')")
        with Operations.context(MigrationContext.configure(conn)):
            migration.upgrade()
        rows = conn.exec_driver_sql("SELECT u.username, a.all_funds FROM ab_user u JOIN "
                                    "user_fund_access a ON a.user_id = u.id ORDER BY u.id").all()
        assert [(r[0], bool(r[1])) for r in rows] == [("olduser", True), ("another", True)]
        with Operations.context(MigrationContext.configure(conn)):
            migration.downgrade()
    engine.dispose()
