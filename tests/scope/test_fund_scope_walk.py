"""Fund groups: a user of one group walks every page, export and API GET of the application and
sees nothing of another group's funds.

The routes come from ``app.url_map`` itself, not from a list: a new page or endpoint is walked as
soon as it exists. A route with arguments must be given the id of the other group's record below
(FUND_RECORDS), or be FAB's model view / model API of a model with no fund (found by looking),
or be in NOT_FUND_DATA with a reason, else the test fails and asks which.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets

import pytest
from sqlalchemy import select

from app.models.card_payment import CardPayment, PaymentRequest
from app.models.fund_group import FundGroup, UserFundAccess, user_fund_group
from app.models.reference import AccountHolder, Fund
from app.security import roles as R
from tests.conftest import PASSWORD, login, unique

#: routes with arguments that show no fund data (the reason in words)
NOT_FUND_DATA = {
    "static": "files", "appbuilder.static": "files", "LocaleView.index": "language switch",
    "OpenApi.get": "the API description", "SwaggerView.show": "the API description",
    "ImportsView.sample": "sample files", "RoleModelView.show": "roles",
    "ApprovalLimitApi.get_scheme": "approval limit schemes (no fund)",
    "WorkflowApi.get_bpmn": "workflow definitions", "WorkflowApi.list_versions": "definitions",
    "WorkflowDefinitionView.download": "definitions", "WorkflowDefinitionView.edit": "definitions",
    "ConfigProposalApi.show_proposal": "configuration proposals (no fund)",
    "AccountingPeriodApi.get": "central work: all funds only", "PeriodView.detail": "central",
    "GLExportApi.get": "central", "GLExportApi.download": "central",
    "GLExportView.download": "central", "CashUpApi.get": "central", "CashUpView.detail": "central",
    "CashUpView.banking": "central", "CashUpView.resubmit": "central",
    "RefundPaymentRunView.show": "central", "RefundPaymentRunView.bacs_file": "central",
    "RefundPaymentRunView.bacs_csv": "central", "RefundPaymentRunView.cheques": "central",
    "RefundPaymentRunView.cheques_csv": "central", "AccountSyncView.detail": "central",
    "AccountSyncView.changes": "central", "AccountSyncView.progress": "central",
    "AccountSyncApi.result": "central", "AccountSyncApi.changes": "central",
    "AuditEventView.show": "central", "AuditEventView.edit": "central",
    "AuditEventView.action": "central",
    "ReportsApi.unknown": "an unknown report's 404",
    "FundGroupApi.get": "fund groups administration shows every group by design",
    "FundGroupApi.get_user": "fund groups administration",
    "FundGroupView.edit": "fund groups administration",
    "FundGroupView.user": "fund groups administration",
    "RoleApi.list_role_permissions": "roles",
    "FundView.action": "FAB actions: the view's fund-scope base filter applies (scope_fab_views)",
    "AccountHolderView.action": "FAB actions: the fund-scope base filter applies",
    "FundReferencePatternView.action": "FAB model view of a fund model: the fund-scope base "
                                       "filter applies (scope_fab_views)",
    "FundReferencePatternView.edit": "ditto", "FundReferencePatternView.show": "ditto",
    "CashUpTemplateRowView.action": "ditto", "CashUpTemplateRowView.edit": "ditto",
    "CashUpTemplateRowView.show": "ditto",
    "AccountHolderProfileView.action": "central", "AccountHolderProfileView.edit": "central",
    "AccountHolderProfileView.show": "central", "AccountHolderProfileApi.get": "central",
    "ImportsView.detail": "an import's totals (a file holds many funds); its rows are scoped",
    "ImportsView.progress": "ditto", "ImportApi.result": "ditto",
    "ImportsView.transactions": "scoped by fund (tested in test_fund_scope.py)",
    "CardPaymentView.moto_return": "the provider's return address (a token)",
    "UserSigninView.show": "a user's sign-in settings (no fund data)",
    "ReconciliationApi.get_reconciliation": "central: bank reconciliation is for all funds",
    "ReconciliationApi.proposals": "central",
}
#: routes without arguments not walked (the reason in words)
NOT_WALKED = {
    "AuthDBView.logout": "would end the walk's session",
    "FundGroupView.index": "fund groups administration shows every group by design",
    "FundGroupView.edit": "fund groups administration (a new group's form lists every fund)",
    "FundGroupApi.list_groups": "fund groups administration", "FundGroupApi.users": "ditto",
    "ops.metrics": "process metrics", "back": "redirect",
}
PREFIXES_NOT_WALKED = ("/pay/", "/simulator/", "/static/", "/appbuilder/")


@pytest.fixture(scope="module")
def world(app):
    """Two fund groups with distinct funds and data in each; a user of group A."""
    from app.extensions import db
    from app.services import ledger as L
    from app.services import refunds as RF
    from app.services import suspense as S
    from app.services import writeoffs as W
    from app.services.audit import set_actor
    from tests.integration.test_refunds import deploy_refund_workflow
    from tests.integration.test_suspense_service import make_item

    with app.test_request_context():
        s = db.session
        set_actor("seed")
        deploy_refund_workflow(s)
        tag = unique("", 5)
        funds = {}
        for side in ("A", "B"):
            f = Fund(code=f"Q{side}{tag}", name=f"Scope test fund {side}{tag}", vat_code="O",
                     maximum_amount=10_000_000)
            s.add(f)
            s.flush()
            g = FundGroup(name=f"Scope group {side}{tag}", funds=[f])
            s.add(g)
            funds[side] = (f, g)
        s.commit()
        data = {}
        for side in ("A", "B"):
            code = funds[side][0].code
            ref = f"ZQ{side}{tag}R"
            holder = AccountHolder(fund_code=code, account_reference=ref, name=f"Holder {side}{tag}")
            s.add(holder)
            group = L.post_group(s, "receipt", [L.Leg(L.BANK, 12_345),
                                                L.Leg(L.FUND, -12_345, code, ref)], actor="cashier")
            txn = L.record_income(s, group=group, fund_code=code, account_reference=ref,
                                  amount=12_345, payment_method_code="CARD",
                                  transaction_date=dt.date.today(),
                                  external_reference=f"pay-zq{side}{tag}".lower(),
                                  created_by="cashier")
            s.commit()
            item = make_item(s, 4_321, reference=f"ZQ{side}{tag}S", fund_code=code)
            refund = RF.request_refund(s, transaction_id=txn.id, amount="10.00",
                                       reason=f"Scope test {side}", method="card",
                                       actor="clerk").refund
            wo = W.request_write_off(s, transaction_id=txn.id, amount="1.00",
                                     reason=f"Scope test {side}", actor="clerk")
            alloc_item = make_item(s, 2_000, reference=f"ZQ{side}{tag}T")
            alloc = S.allocate(s, alloc_item.id, [{"fund_code": code, "account_reference": ref,
                                                   "amount": "20.00"}], actor="clerk")
            items = json.dumps([{"fund_code": code, "reference": ref, "account_reference": ref,
                                 "amount": 500}])
            req = PaymentRequest(token=secrets.token_hex(16), items_json=items, amount=500,
                                 created_by="clerk")
            card = CardPayment(token=secrets.token_hex(16), amount=500, items_json=items,
                               provider="simulator", channel="moto", created_by="clerk",
                               expires_at=dt.datetime.now(dt.timezone.utc))
            s.add_all([req, card])
            s.commit()
            data[side] = {"fund": funds[side][0], "holder": holder, "txn": txn, "item": item,
                          "refund": refund, "write_off": wo, "receipt": group.number,
                          "allocation": alloc.allocation.id, "request": req.id, "card": card.id}
        sm = app.appbuilder.sm
        name = f"scope{tag}".lower()
        user = sm.add_user(name, "Scope", "Walker", f"{name}@example.invalid",
                           [sm.find_role(r) for r in R.ROLES if r != R.PAYINT],
                           password=PASSWORD)
        s.add(UserFundAccess(user_id=user.id, all_funds=False))
        s.execute(user_fund_group.insert().values(user_id=user.id,
                                                  group_id=funds["A"][1].id))
        s.commit()
        set_actor(None)
        b = data["B"]
        from app.models.workflow import WorkflowTask

        task = s.scalar(select(WorkflowTask).where(
            WorkflowTask.instance_id == b["refund"].workflow_instance_id))
        markers = {b["fund"].code, b["fund"].name, b["holder"].account_reference,
                   b["item"].reference_text, b["holder"].name, b["receipt"]}
        visible = {data["A"]["fund"].code, data["A"]["holder"].account_reference}
        ids = {"allocation": b["allocation"], "request": b["request"], "card": b["card"],
               "fund": b["fund"].id, "holder": b["holder"].id, "txn": b["txn"].id,
               "item": b["item"].id, "refund": b["refund"].id, "write_off": b["write_off"].id,
               "receipt": b["receipt"], "task": task.id if task else None,
               "instance": b["refund"].workflow_instance_id}
        db.session.remove()
    return {"username": name, "markers": markers, "visible": visible, "ids": ids}


def fund_records(ids) -> dict[str, dict]:
    """Routes with arguments -> the other group's record to ask for."""
    t, i = ids["txn"], ids["item"]
    return {
        "TransactionView.detail": {"pk": t}, "TransactionApi.get": {"pk": t},
        "JournalView.new": {"pk": t}, "RefundView.new": {"transaction_id": t},
        "ReceiptView.print_receipt": {"number": ids["receipt"]},
        "ReceiptApi.get": {"number": ids["receipt"]},
        "RefundView.show": {"pk": ids["refund"]}, "RefundApi.get": {"pk": ids["refund"]},
        "SuspenseWorkView.item": {"pk": i}, "SuspenseApi.get": {"pk": i},
        "SuspenseAllocationApi.allocations": {"pk": i},
        "SuspenseAllocationApi.suggestions": {"pk": i},
        "WriteOffView.detail": {"pk": ids["write_off"]},
        "WriteOffApi.get": {"pk": ids["write_off"]},
        "TaskView.show": {"task_id": ids["task"]},
        "WorkflowInstanceView.show": {"instance_id": ids["instance"]},
        "AccountHolderView.show": {"pk": ids["holder"]},
        "AccountHolderView.edit": {"pk": ids["holder"]},
        "AccountHolderApi.get": {"pk": ids["holder"]},
        "FundView.show": {"pk": ids["fund"]}, "FundView.edit": {"pk": ids["fund"]},
        "FundApi.get": {"pk": ids["fund"]},
        "SuspenseAllocationApi.get_allocation": {"allocation_id": ids["allocation"]},
        "PaymentRequestApi.get": {"pk": ids["request"]},
        "CardPaymentView.show": {"pk": ids["card"]},
    }


def _fab_model_without_fund(app, endpoint: str) -> bool:
    """FAB model views and model APIs of models that have no fund (their routes show none)."""
    view_name = endpoint.split(".")[0]
    for view in app.appbuilder.baseviews:
        if type(view).__name__ == view_name:
            model = getattr(getattr(view, "datamodel", None), "obj", None)
            return model is not None and model is not Fund and not hasattr(model, "fund_code")
    return False


def _routes(app, ids):
    records = fund_records(ids)
    plain, with_args, unknown = [], [], []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.rule.startswith(PREFIXES_NOT_WALKED):
            continue
        if rule.endpoint in NOT_WALKED:
            continue
        if not rule.arguments:
            plain.append(rule.rule)
        elif rule.endpoint in records:
            values = records[rule.endpoint]
            if all(v is not None for v in values.values()):
                url = rule.rule
                for name, value in values.items():
                    url = re.sub(r"<(?:[^:>]+:)?" + name + ">", str(value), url)
                with_args.append(url)
        elif rule.endpoint not in NOT_FUND_DATA and not _fab_model_without_fund(app, rule.endpoint):
            unknown.append(f"{rule.rule} ({rule.endpoint})")
    return sorted(set(plain)), sorted(set(with_args)), unknown


def _text(resp) -> str:
    """The response as text (an XLSX download: the text of its sheets)."""
    data = resp.get_data()
    if data[:2] == b"PK":
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return "".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
    return data.decode("utf-8", "replace")


def _leaks(text: str, markers) -> list[str]:
    return sorted(m for m in markers if re.search(r"(?<![A-Za-z0-9])" + re.escape(m)
                                                   + r"(?![A-Za-z0-9])", text))


def test_every_route_is_walked_or_explained(app, world):
    _plain, _args, unknown = _routes(app, world["ids"])
    assert not unknown, ("Routes with arguments the fund-scope walk does not know: give them the "
                         "other group's record in fund_records() or a reason in NOT_FUND_DATA: "
                         + ", ".join(unknown))


def test_a_user_of_one_group_sees_nothing_of_another(app, client, world):
    assert login(client, world["username"]).status_code == 302
    plain, with_args, _ = _routes(app, world["ids"])
    leaks, errors = {}, {}
    for url in plain:
        resp = client.get(url)
        if resp.status_code >= 500:
            errors[url] = resp.status_code
        found = _leaks(_text(resp), world["markers"])
        if found:
            leaks[url] = found
    for url in with_args:
        resp = client.get(url)
        if resp.status_code != 404:
            errors[url] = resp.status_code
        found = _leaks(_text(resp), world["markers"])
        if found:
            leaks[url] = found
    # the walk really saw the user's own group's data
    own = client.get("/transactions/?fund=" + next(iter(sorted(world["visible"]))))
    assert any(v in own.get_data(as_text=True) for v in world["visible"])
    assert not leaks, f"another fund group's data shown: {leaks}"
    assert not errors, f"records of another fund group must be 404: {errors}"
