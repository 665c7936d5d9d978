"""Data is escaped on every page and never translated; the CSP lets only our own and nonce'd
scripts run. (The browser crawl in tests/browser/test_injection.py checks that nothing runs.)"""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from app.models.ledger import Transaction
from app.models.suspense import SuspenseItem
from app.services import ledger as L
from tests.conftest import login
from tests.workflows.helpers import ready_tasks

SCRIPT_PAYEE = "<script>onload=()=>document.getElementById('approve-btn').click()</script>"
IMG_NARRATIVE = "<img src=x onerror=alert(1)>"


def _card_payment(session, amount="100.00"):
    from app.services.receipts import take_receipt

    number = take_receipt(session, lines=[{"fund_code": "TWS", "account_reference": "XSS-1",
                                           "amount": amount}],
                          payment_method_code="CARD", actor="cashier").receipt_number
    return session.scalar(select(Transaction).where(Transaction.receipt_number == number))


def _refund_task(session, payee=SCRIPT_PAYEE, reason="Paid twice"):
    from app.services.refunds import request_refund

    txn = _card_payment(session)
    refund = request_refund(session, transaction_id=txn.id, amount="10.00", method="bacs",
                            reason=reason, actor="clerk",
                            payee={"name": payee, "sort_code": "12-34-56",
                                   "account_number": "12345678"}).refund
    [task] = ready_tasks(session, refund.workflow_instance_id)
    return refund, task


def test_a_script_payee_is_escaped_on_the_task_page(client, session):
    refund, task = _refund_task(session)
    login(client, "manager")
    page = client.get(f"/tasks/{task.id}").data.decode()
    assert "&lt;script&gt;onload=()=&gt;document.getElementById(" in page
    assert "<script>onload" not in page
    # in the title as well as in the details
    assert "to &lt;script&gt;onload" in page


def test_a_bank_narrative_is_escaped_on_the_write_off_task_page(client, session):
    from app.services.writeoffs import request_write_off

    group = L.post_group(session, "suspense", [L.Leg(L.BANK, 5_00),
                                               L.Leg(L.SUSPENSE, -5_00, "SUSP")], actor="clerk")
    item = SuspenseItem(amount=5_00, reference_text="<b>REF</b>", narrative=IMG_NARRATIVE,
                        reason="test", transaction_date=dt.date.today(),
                        posting_group_id=group.id, status="unallocated")
    session.add(item)
    session.commit()
    wo = request_write_off(session, suspense_item_id=item.id, amount="5.00",
                           reason="Untraceable", actor="clerk")
    [task] = ready_tasks(session, wo.workflow_instance_id)
    login(client, "manager")
    page = client.get(f"/tasks/{task.id}").data.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
    assert "&lt;b&gt;REF&lt;/b&gt;" in page


def test_data_is_not_looked_up_in_the_catalogue(client, session):
    """A payee called "Cheque" stays "Cheque" on a Welsh page; the label "Payee" is translated."""
    refund, task = _refund_task(session, payee="Cheque")
    login(client, "manager")
    client.get("/lang/cy")
    try:
        page = client.get(f"/tasks/{task.id}").data.decode()
    finally:
        client.get("/lang/en")
    assert "<td>Cheque</td>" in page
    assert "<td>Siec</td>" not in page
    assert "Talai" in page  # "Payee" in Welsh


def test_fixed_messages_translate_with_escaped_values(app):
    from flask import render_template_string

    from app.domain.i18n import N_

    with app.test_request_context():
        out = render_template_string(
            "{{ a|tr }}|{{ b|tr }}|{{ c|library_message }}|{{ d|tr }}",
            a=N_("Line %(n)s", n="<i>2</i>"), b="<i>data</i>", c="<b>bad</b> input",
            d=N_("Refund %(id)s: %(amount)s to %(payee)s", id=1, amount="£1.00",
                 payee=N_("the card")))
    assert out == ("Line &lt;i&gt;2&lt;/i&gt;|&lt;i&gt;data&lt;/i&gt;|&lt;b&gt;bad&lt;/b&gt; input"
                   "|Refund 1: £1.00 to the card")


@pytest.mark.parametrize("link,shown", [("/refunds/5", True), ("/tasks/", True),
                                        ("javascript:alert(1)", False), ("//evil.example", False),
                                        ("/\t/evil.example", False), ("/\\evil.example", False),
                                        ("https://evil.example/", False)])
def test_only_local_links_are_links(link, shown):
    from app.formatting import local_link

    assert (local_link(link) == link) is shown


class _Scripts(HTMLParser):
    """Collects the nonces of script elements (inline and not), inline event handlers and
    ``javascript:`` URLs."""

    def __init__(self):
        super().__init__()
        self.nonces, self.inline, self.handlers, self.js_urls = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("type") != "application/json":
            self.nonces.append(a.get("nonce"))
            if "src" not in a:
                self.inline.append(a.get("nonce"))
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name))
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith(
                    "javascript:"):
                self.js_urls.append((tag, value))


def _script_src(resp) -> str:
    csp = resp.headers["Content-Security-Policy"]
    return next(d for d in csp.split(";") if d.strip().startswith("script-src")).strip()


def test_csp_refuses_inline_script_and_nonces_change_per_response(client):
    first, second = client.get("/login/"), client.get("/login/")
    src = _script_src(first)
    assert "'unsafe-inline'" not in src and "'unsafe-eval'" not in src
    assert src.startswith("script-src 'self' 'nonce-")
    assert src != _script_src(second)
    assert "style-src 'self' 'unsafe-inline'" in first.headers["Content-Security-Policy"]


PAGES = [
    ("admin", "/fundview/list/"), ("admin", "/fundview/add"), ("admin", "/users/list/"),
    ("admin", "/login/"),
    ("admin", "/swagger/v1"), ("clerk", "/"), ("clerk", "/transactions/"),
    ("clerk", "/suspense/"), ("clerk", "/imports/"), ("clerk", "/receipts/new"),
    ("wfadmin", "/workflows/"), ("wfadmin", "/workflows/refund_approval/edit"),
    ("manager", "/refund-payment-runs/"), ("auditor", "/auditeventview/list/"),
    ("manager", "/suspense-report/"), ("manager", "/notifications/"),
    ("cashier", "/cash-ups/"), ("cashier", "/cash-ups/new?office_code=CIVIC"),
]


@pytest.mark.parametrize("user,path", PAGES)
def test_every_script_carries_the_response_nonce(client, user, path):
    login(client, user)
    resp = client.get(path, follow_redirects=True)
    assert resp.status_code == 200, path
    nonce = re.search(r"'nonce-([^']+)'", _script_src(resp))
    found = _Scripts()
    found.feed(resp.data.decode())
    assert found.handlers == [] and found.js_urls == []
    assert nonce and set(found.nonces) == {nonce.group(1)}


def test_the_task_page_scripts_and_payload_together(client, session):
    """The payee's <script> is text: the page's only inline scripts are nonce'd ones of ours."""
    refund, task = _refund_task(session)
    login(client, "manager")
    resp = client.get(f"/tasks/{task.id}")
    found = _Scripts()
    found.feed(resp.data.decode())
    nonce = re.search(r"'nonce-([^']+)'", _script_src(resp)).group(1)
    assert set(found.inline) <= {nonce} and found.handlers == []
