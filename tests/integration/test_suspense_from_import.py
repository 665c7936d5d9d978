"""End to end with the imports feature: unmatched rows of an imported file land in suspense (bulk
inserted), are worked down to zero by allocation and write-off, and the SUSPENSE control account
reconciles throughout; an import with worked items can no longer be reversed."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from app.domain.errors import Conflict
from app.models.suspense import SuspenseItem
from app.services import imports as svc
from app.services import suspense as S
from app.services import workflow as wf
from app.services import writeoffs as W
from tests.conftest import unique
from tests.integration.test_suspense_service import assert_books_balance, ready


def test_imported_suspense_worked_down_to_zero(app, session):
    tag = unique("IM", 7)
    csv_text = ("transaction_date,account_reference,amount,narrative\n"
                f"2026-01-05,{tag}A,70.00,unknown payer\n"
                f"2026-01-06,{tag}B,0.99,tiny\n")
    batch = svc.receive_import(session, stream=io.BytesIO(csv_text.encode()),
                               filename=f"{tag}.csv", fmt="ims_csv", actor="clerk",
                               instance_path=app.instance_path,
                               max_bytes=app.config["IMS_IMPORT_MAX_BYTES"])
    batch = svc.process_import(session, batch.id, actor="clerk")
    assert batch.status == "succeeded" and batch.rows_suspense == 2
    a, b = session.scalars(select(SuspenseItem).where(SuspenseItem.import_id == batch.id)
                           .order_by(SuspenseItem.id)).all()
    assert (a.reserved_amount, a.cleared_amount, a.remaining_amount) == (0, 0, 70_00)
    assert_books_balance(session)

    S.allocate(session, a.id, [{"fund_code": "TWS", "account_reference": f"{tag}X", "amount": "50.00"},
                               {"fund_code": "TWS", "account_reference": f"{tag}Y", "amount": "20.00"}],
               actor="clerk")
    wo = W.request_write_off(session, suspense_item_id=b.id, amount="0.99", reason="Too small to trace",
                             actor="clerk")
    with pytest.raises(Conflict):
        svc.reverse_import(session, batch.id, actor="manager", reason="wrong file")
    [task] = ready(session, wo.workflow_instance_id)
    wf.complete_task(session, task.id, "manager", "approve", "ok")
    session.expire_all()
    a, b = session.get(SuspenseItem, a.id), session.get(SuspenseItem, b.id)
    assert (a.status, a.remaining_amount) == ("allocated", 0)
    assert (b.status, b.remaining_amount) == ("written_off", 0)
    items, _ = S.queue(session, S.QueueFilters(import_id=batch.id))
    assert items == []  # nothing left open from this import
    assert_books_balance(session)
