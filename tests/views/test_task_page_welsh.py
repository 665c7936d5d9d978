"""The approver's task page shows the request's details in the reader's language."""

from tests.conftest import login
from tests.workflows.helpers import ready_tasks


def test_refund_task_details_in_welsh(app, client, session):
    from sqlalchemy import select

    from app.models.ledger import Transaction
    from app.services.receipts import take_receipt
    from app.services.refunds import request_refund

    receipt = take_receipt(session, lines=[{"fund_code": "TWS", "account_reference": "CY-TASK-1",
                                            "amount": "80.00"}],
                           payment_method_code="CARD", actor="cashier", external_reference="pay-cy-1")
    number = receipt.receipt_number
    txn = session.scalar(select(Transaction).where(Transaction.receipt_number == number))
    refund = request_refund(session, transaction_id=txn.id, amount="10.00", method="card",
                            reason="Talwyd ddwywaith", actor="clerk").refund
    [task] = ready_tasks(session, refund.workflow_instance_id)
    login(client, "manager")
    client.get("/lang/cy")
    page = client.get(f"/tasks/{task.id}").data.decode()
    assert "Dull ad-dalu" in page  # "Refund method"
    assert "Yn ôl i&#39;r cerdyn" in page or "Yn ôl i'r cerdyn" in page  # "Back to the card"
    client.get("/lang/en")
    page = client.get(f"/tasks/{task.id}").data.decode()
    assert "Refund method" in page and "Back to the card" in page
