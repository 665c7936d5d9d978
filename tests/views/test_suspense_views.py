"""Suspense pages: queue with filters and bulk actions, item page with suggestions, allocation
(split, errors shown inline), notes, assign, report, write-off register, CSV export, ageing."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from app.models.reference import AccountHolder
from app.models.suspense_work import WriteOff
from app.services import suspense as S
from tests.conftest import unique
from tests.integration.test_suspense_service import assert_books_balance, make_item


def test_queue_filters_and_age_colours(session, as_user):
    text = unique("V")
    old = make_item(session, 12_00, reference=text, days_old=70)
    new = make_item(session, 34_00, reference=text, days_old=2)
    c = as_user("clerk")
    html = c.get(f"/suspense/?q={text}").get_data(as_text=True)
    assert f'data-item-id="{old.id}"' in html and f'data-item-id="{new.id}"' in html
    assert "ims-age-stale" in html and "ims-age-fresh" in html
    html = c.get(f"/suspense/?q={text}&age=stale").get_data(as_text=True)
    assert f'data-item-id="{old.id}"' in html and f'data-item-id="{new.id}"' not in html
    html = c.get(f"/suspense/?q={text}&min=20.00").get_data(as_text=True)
    assert f'data-item-id="{old.id}"' not in html and f'data-item-id="{new.id}"' in html
    assert c.get("/suspense/?min=abc").status_code == 200  # a bad filter is a message, not a 500


def test_bulk_assign_to_me_and_filter(session, as_user):
    text = unique("W")
    a = make_item(session, 1_00, reference=text)
    b = make_item(session, 2_00, reference=text)
    c = as_user("clerk2")
    resp = c.post("/suspense/bulk", data={"ids": [a.id, b.id], "action": "assign_me"})
    assert resp.status_code == 302
    html = c.get(f"/suspense/?q={text}&assigned=me").get_data(as_text=True)
    assert f'data-item-id="{a.id}"' in html and f'data-item-id="{b.id}"' in html
    assert 'id="select-all"' in html and 'id="bulk-assign"' in html
    html = as_user("clerk").get(f"/suspense/?q={text}&assigned=me").get_data(as_text=True)
    assert f'data-item-id="{a.id}"' not in html


def test_item_page_split_allocation_and_errors(session, as_user):
    item = make_item(session, 100_00, narrative="Payment")
    c = as_user("clerk")
    page = c.get(f"/suspense/{item.id}")
    assert page.status_code == 200 and b'id="allocation-form"' in page.data
    r1, r2 = unique("A"), unique("B")
    bad = c.post(f"/suspense/{item.id}/allocate", data={
        "fund_code": ["TWS", "TWS"], "account_reference": [r1, r2], "amount": ["60.00", "50.00"]})
    assert bad.status_code == 422 and b"remains in suspense" in bad.data
    bad = c.post(f"/suspense/{item.id}/allocate", data={
        "fund_code": ["TWS"], "account_reference": [r1], "amount": ["1.234"]})
    assert bad.status_code == 422 and b"has-error" in bad.data
    ok = c.post(f"/suspense/{item.id}/allocate", data={
        "fund_code": ["TWS", "TWS"], "account_reference": [r1, r2], "amount": ["60.00", "15.00"]},
        follow_redirects=True)
    assert ok.status_code == 200 and b"25.00 remains in suspense" in ok.data
    session.expire_all()
    assert S.get_item(session, item.id).remaining_amount == 25_00
    assert c.get("/suspense/99999999").status_code == 404
    assert_books_balance(session)


def test_suggestion_for_a_near_miss_reference(session, as_user):
    acct = session.scalar(select(AccountHolder).where(AccountHolder.fund_code == "CTAX",
                                                      AccountHolder.stop_message.is_(None)).limit(1))
    ref = acct.account_reference
    wrong = ref[1] + ref[0] + ref[2:] if ref[0] != ref[1] else ref[0] + ref[2] + ref[1] + ref[3:]
    item = make_item(session, 5_00, reference=wrong)
    html = as_user("clerk").get(f"/suspense/{item.id}").get_data(as_text=True)
    assert f'data-reference="{ref}"' in html and "swapped" in html


def test_notes_and_assign_me(session, as_user):
    item = make_item(session, 3_00)
    c = as_user("clerk")
    c.post(f"/suspense/{item.id}/notes", data={"text": "Wrote to the payer"})
    c.post(f"/suspense/{item.id}/assign", data={})
    html = c.get(f"/suspense/{item.id}").get_data(as_text=True)
    assert "Wrote to the payer" in html
    assert '<td id="item-assigned">clerk' in html


def test_report_reconciles_and_has_a_table(session, as_user):
    make_item(session, 1_23, days_old=40)
    html = as_user("auditor").get("/suspense-report/").get_data(as_text=True)
    assert 'id="age-bands"' in html and 'id="suspense-age-chart"' in html
    assert "The suspense account reconciles." in html
    assert as_user("cashier").get("/suspense-report/").status_code in (302, 403)


def test_write_off_request_register_and_csv(session, as_user):
    item = make_item(session, 8_00)
    c = as_user("clerk")
    resp = c.post("/write-offs/new", data={"suspense_item_id": item.id, "amount": "8.00",
                                           "reason": "Payer untraceable"}, follow_redirects=True)
    assert resp.status_code == 200 and b"Awaiting approval" in resp.data
    wo = session.scalar(select(WriteOff).where(WriteOff.suspense_item_id == item.id))
    html = as_user("auditor").get("/write-offs/?status=awaiting_approval").get_data(as_text=True)
    assert f'data-write-off-id="{wo.id}"' in html
    data = as_user("auditor").get("/write-offs/export.csv?source=suspense").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(data)))
    assert any(r["id"] == str(wo.id) and r["amount"] == "8.00" for r in rows)
    c = as_user("clerk")
    bad = c.post("/write-offs/new", data={"suspense_item_id": item.id, "amount": "1.00",
                                          "reason": "more than left"}, follow_redirects=True)
    assert b"more than the" in bad.data


def test_ageing_lists_and_proposes(session, as_user):
    old = make_item(session, 2_50, days_old=70)
    c = as_user("clerk")
    c.post("/write-offs/ageing/run")
    html = c.get("/write-offs/ageing").get_data(as_text=True)
    assert f'data-item-id="{old.id}"' in html
    resp = c.post("/write-offs/propose", data={"ids": [old.id], "reason": "Over 8 weeks"},
                  follow_redirects=True)
    assert resp.status_code == 200
    wo = session.scalar(select(WriteOff).where(WriteOff.suspense_item_id == old.id))
    assert wo is not None and wo.amount == 2_50 and wo.status == "awaiting_approval"


def test_residual_write_off_from_the_register_page(session, as_user):
    from app.services import receipts as RC

    txn = RC.take_receipt(session, lines=[{"fund_code": "TWS", "account_reference": unique("RS"),
                                           "amount": "5.00"}], payment_method_code="CASH",
                          actor="cashier").transactions[0]
    c = as_user("clerk")
    assert b'id="residual-form"' in c.get("/write-offs/").data
    resp = c.post("/write-offs/new", data={"transaction_id": txn.id, "amount": "0.07",
                                           "reason": "Residual after refund"}, follow_redirects=True)
    assert resp.status_code == 200 and b"Awaiting approval" in resp.data
    wo = session.scalar(select(WriteOff).where(WriteOff.transaction_id == txn.id))
    assert wo.amount == 7 and wo.fund_code == "TWS"


def test_stale_form_is_a_conflict(session, as_user):
    item = make_item(session, 10_00)
    c = as_user("clerk")
    S.allocate(session, item.id, [{"fund_code": "TWS", "account_reference": unique("S"),
                                   "amount": "1.00"}], actor="clerk2")
    resp = c.post(f"/suspense/{item.id}/allocate", data={
        "expected_remaining": "1000", "fund_code": ["TWS"], "account_reference": [unique("S")],
        "amount": ["2.00"]})
    assert resp.status_code == 409 and b"Someone else changed this item" in resp.data
    session.expire_all()
    assert S.get_item(session, item.id).remaining_amount == 9_00
