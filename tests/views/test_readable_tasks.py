"""Task approval says one thing once; statuses, task names and history read as words, never raw
values or JSON (issue 21 items 2, 3 and 10)."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.models.ledger import Transaction
from app.services.receipts import take_receipt
from app.services.refunds import request_refund
from tests.conftest import login, unique
from tests.integration.test_suspense_service import make_item
from tests.workflows.helpers import ready_tasks


def _flashes(html: str) -> list[str]:
    return re.findall(r'<div class="alert alert-(?:success|info|warning|danger)[^"]*"[^>]*>(.*?)</div>',
                      html, re.S)


def _refund(session, amount="50.00"):
    receipt = take_receipt(session, lines=[{"fund_code": "TWS", "account_reference": unique("RD"),
                                            "amount": "80.00"}], payment_method_code="CARD",
                           actor="cashier", external_reference=unique("pay-rd-"))
    txn = session.scalar(select(Transaction).where(
        Transaction.receipt_number == receipt.receipt_number))
    refund = request_refund(session, transaction_id=txn.id, amount=amount, method="card",
                            reason="Paid twice", actor="clerk").refund
    session.commit()
    return refund


def test_approving_shows_one_message_and_history_names_the_role_once(session, client):
    refund = _refund(session)
    [task] = ready_tasks(session, refund.workflow_instance_id)
    login(client, "manager")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert f"{refund.id} (awaiting approval)" in page
    assert "awaiting_approval" not in page
    resp = client.post(f"/tasks/{task.id}/complete", data={"decision": "approve", "comment": ""},
                       follow_redirects=True)
    body = resp.get_data(as_text=True)
    messages = [m for m in _flashes(body) if "pprove" in m]
    assert len(messages) == 1, messages
    assert "Approved: the request is now approved." in body
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "Approve refund (Finance Manager) (Finance Manager)" not in page
    assert page.count("Approve refund (Finance Manager)") >= 1
    assert "This task is completed." in page


def test_history_tables_show_words_not_json(session, client):
    refund = _refund(session, "12.00")
    login(client, "manager")
    page = client.get(f"/refunds/{refund.id}").get_data(as_text=True)
    history = page[page.index('id="history"'):]
    history = history[:history.index("</table>")]
    assert '{"' not in history and "&#34;" not in history and "&quot;" not in history
    assert "refund requested" in history
    assert "awaiting_approval" not in history
    assert "Amount</span>: <ins>£12.00</ins>" in history, history
    assert "Status</span>: <ins>awaiting approval</ins>" in history, history


def test_reference_record_history_is_a_readable_difference(session, as_user):
    from app.models.reference import Office

    client = as_user("admin")
    code = unique("O", 8)
    client.post("/officeview/add", data={"code": code, "name": "Old name"})
    office = session.scalar(select(Office).where(Office.code == code))
    client.post(f"/officeview/edit/{office.id}", data={"name": "New name"})
    page = client.get(f"/officeview/show/{office.id}").get_data(as_text=True)
    history = page[page.index('id="history"'):]
    assert "<del>Old name</del> → <ins>New name</ins>" in history
    assert '{"' not in history and "&#34;" not in history
    client.get("/lang/cy")
    page = client.get(f"/officeview/show/{office.id}").get_data(as_text=True)
    assert "newidiwyd" in page and "Enw" in page
    client.get("/lang/en")


def test_task_page_and_inbox_in_welsh(session, client):
    refund = _refund(session, "9.00")
    [task] = ready_tasks(session, refund.workflow_instance_id)
    login(client, "manager")
    client.get("/lang/cy")
    page = client.get(f"/tasks/{task.id}").get_data(as_text=True)
    assert "Cymeradwyo ad-daliad (Rheolwr Cyllid)" in page
    assert "yn aros am gymeradwyaeth" in page
    inbox = client.get("/tasks/").get_data(as_text=True)
    assert "Cymeradwyo ad-daliad (Rheolwr Cyllid)" in inbox and "Ad-daliad" in inbox
    client.get("/lang/en")


def test_item_reserved_for_a_write_off_reads_as_reserved(session, as_user):
    from app.services import writeoffs as W

    item = make_item(session, 4_20, reference=unique("RSV"), days_old=100)
    W.request_write_off(session, amount="4.20", reason="Unclaimed", actor="clerk",
                        suspense_item_id=item.id)
    session.commit()
    client = as_user("manager")
    page = client.get(f"/suspense/{item.id}").get_data(as_text=True)
    status = re.search(r'id="item-status">([^<]*)<', page).group(1)
    assert status == "Reserved for a write-off awaiting approval"
    assert "Part allocated" not in status
    queue = client.get(f"/suspense/?q={item.reference_text}&status=all").get_data(as_text=True)
    assert "Reserved for a write-off awaiting approval" in queue


def test_suspense_reason_in_welsh(session, as_user):
    item = make_item(session, 1_00, reference=unique("WR"))
    item.reason = "Unknown fund ZZZ.; The reference is blank."
    session.commit()
    client = as_user("clerk")
    client.get("/lang/cy")
    page = client.get(f"/suspense/{item.id}").get_data(as_text=True)
    assert "Cronfa anhysbys ZZZ.; Mae&#39;r cyfeirnod yn wag." in page or \
        "Cronfa anhysbys ZZZ.; Mae'r cyfeirnod yn wag." in page
    client.get("/lang/en")
    page = client.get(f"/suspense/{item.id}").get_data(as_text=True)
    assert "Unknown fund ZZZ.; The reference is blank." in page


def test_suggestions_statuses_and_roles_in_welsh(app):
    from flask_babel import force_locale

    from app.formatting import label, suggestion_text

    with app.test_request_context("/"), force_locale("cy"):
        assert suggestion_text("The reference TW1 is an existing TWS account.") == \
            "Mae'r cyfeirnod TW1 yn gyfrif TWS sy'n bodoli."
        both = suggestion_text("The reference TW1 is an existing TWS account. The name “A B” "
                               "resembles “A C” (similarity 90%).")
        assert both.startswith("Mae'r cyfeirnod TW1") and "tebygrwydd 90%" in both
        assert suggestion_text("<b>not ours</b>") == "<b>not ours</b>"  # data stays as it is
        assert label("succeeded", "import") == "llwyddodd"
        assert label("ready", "task") == "yn aros am benderfyniad"
        assert label("awaiting_approval", "refund") == "yn aros am gymeradwyaeth"
        assert label("posted", "write_off") == "postiwyd"
        assert label("running", "workflow") == "ar y gweill"
        assert label("Finance Manager", "role") == "Rheolwr Cyllid"
        assert label("Approve refund (Finance Manager)", "task_name") == \
            "Cymeradwyo ad-daliad (Rheolwr Cyllid)"
        assert label("made-up", "import") == "made-up"


def test_every_stored_status_has_words():
    from app.domain.labels import LABELS
    from app.models.refund import RefundStatus

    assert {s.value for s in RefundStatus} <= set(LABELS["refund"])
    for kind in ("import", "task", "workflow", "write_off", "suspense", "role"):
        assert LABELS[kind]
