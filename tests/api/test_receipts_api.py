"""Receipts, reference validation, transactions and trial balance through the API."""

import random
import uuid

import pytest
from sqlalchemy import func, select

from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.models.reference import AccountHolder, Fund
from app.services.seed import make_reference
from tests.conftest import unique


def ctax_ref(session, seed=None):
    fund = session.scalar(select(Fund).where(Fund.code == "CTAX"))
    return make_reference(fund.validator, random.Random(seed if seed is not None else random.random()))


def _counts(session):
    session.rollback()
    return (session.scalar(select(func.count(PostingGroup.id))),
            session.scalar(select(func.count(LedgerLine.id))),
            session.scalar(select(func.count(Transaction.id))))


def test_validate_endpoint(api, session):
    ref = ctax_ref(session, 1)
    r = api("cashier").post("/api/v1/references/validate",
                            json={"fund_code": "CTAX", "reference": ref, "amount": "10.00"})
    assert r.status_code == 200 and r.json["valid"] is True and r.json["errors"] == []
    bad = ref[:-1] + ("1" if ref[-1] != "1" else "2")
    r = api("cashier").post("/api/v1/references/validate", json={"fund_code": "CTAX", "reference": bad})
    assert r.status_code == 200 and r.json["valid"] is False
    assert any("Check digit" in e for e in r.json["errors"])
    r = api("cashier").post("/api/v1/references/validate",
                            json={"fund_code": "CTAX", "reference": ref, "amount": 10.5})
    assert r.status_code == 422 and "amount" in r.json["errors"]


def test_post_receipt_two_lines(api, session):
    ref = ctax_ref(session, 2)
    body = {"payment_method_code": "CARD", "lines": [
        {"fund_code": "CTAX", "account_reference": ref, "amount": "100.00", "narrative": "April"},
        {"fund_code": "TWS", "account_reference": "TW1", "amount": "12.00"}]}
    r = api("cashier").post("/api/v1/receipts", json=body)
    assert r.status_code == 201, r.json
    assert r.json["receipt_number"].startswith("R") and r.json["total"] == "112.00"
    assert [t["amount"] for t in r.json["transactions"]] == ["100.00", "12.00"]
    tws = r.json["transactions"][1]
    assert tws["vat_code"] == "S" and tws["vat_amount"] == "2.00"
    t = api("auditor").get(f"/api/v1/transactions/{tws['id']}")
    assert t.status_code == 200
    for key in ("id", "receipt_number", "fund_code", "account_reference", "amount",
                "available_amount", "payment_method_code", "narrative", "transaction_date",
                "import_id"):
        assert key in t.json
    assert t.json["available_amount"] == "12.00"
    lst = api("manager").get(f"/api/v1/transactions/?receipt_number={r.json['receipt_number']}")
    assert lst.status_code == 200 and lst.json["count"] == 2
    got = api("cashier").get(f"/api/v1/receipts/{r.json['receipt_number']}")
    assert got.status_code == 200 and got.json["total"] == "112.00"


def test_idempotency_key_returns_first_result(api, session):
    key = str(uuid.uuid4())
    body = {"payment_method_code": "CASH",
            "lines": [{"fund_code": "TWS", "account_reference": "IDEM", "amount": "5.00"}]}
    first = api("cashier").post("/api/v1/receipts", json=body, headers={"Idempotency-Key": key})
    before = _counts(session)
    again = api("cashier").post("/api/v1/receipts", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201 and again.status_code == 201
    assert again.json == first.json
    assert _counts(session) == before
    other = api("cashier").post("/api/v1/receipts", json=body,
                                headers={"Idempotency-Key": str(uuid.uuid4())})
    assert other.json["receipt_number"] != first.json["receipt_number"]


BAD = [
    ({"amount": "12.345"}, "lines[0].amount"),
    ({"amount": "-5"}, "lines[0].amount"),
    ({"amount": "0"}, "lines[0].amount"),
    ({"amount": "1e3"}, "lines[0].amount"),
    ({"amount": "NaN"}, "lines[0].amount"),
    ({"amount": 12.5}, "lines[0].amount"),
    ({"fund_code": "NOFUND"}, "lines[0].fund_code"),
    ({"vat_code": "R"}, "lines[0].vat_code"),  # TWS does not allow VAT override
]


@pytest.mark.parametrize("change,field", BAD)
def test_bad_line_is_422_and_posts_nothing(api, session, change, field):
    line = {"fund_code": "TWS", "account_reference": "BAD1", "amount": "10.00", **change}
    good = {"fund_code": "TWS", "account_reference": "OK1", "amount": "1.00"}
    before = _counts(session)
    r = api("cashier").post("/api/v1/receipts", json={"payment_method_code": "CASH",
                                                      "lines": [line, good]})
    assert r.status_code == 422, r.json
    assert field in r.json["errors"], r.json
    assert _counts(session) == before


def test_other_bad_input(api, session):
    before = _counts(session)
    ref = ctax_ref(session, 4)
    bad_ref = ref[:-1] + ("1" if ref[-1] != "1" else "2")
    cases = [
        ({"payment_method_code": "NOPE"}, "payment_method_code"),
        ({"payment_method_code": "JNL"}, "payment_method_code"),
        ({"transaction_date": "yesterday"}, "transaction_date"),
        ({"lines": [{"fund_code": "CTAX", "account_reference": bad_ref, "amount": "5.00"}]},
         "lines[0].account_reference"),
        ({"lines": []}, "lines"),
    ]
    for change, field in cases:
        body = {"payment_method_code": "CASH",
                "lines": [{"fund_code": "TWS", "account_reference": "Z1", "amount": "1.00"}], **change}
        r = api("cashier").post("/api/v1/receipts", json=body)
        assert r.status_code == 422 and field in r.json["errors"], (change, r.json)
    r = api("cashier").post("/api/v1/receipts", data="not json", content_type="application/json")
    assert r.status_code == 400 and "body" in r.json["errors"]  # unparsable: 400 (issue #15)
    assert _counts(session) == before


def test_disabled_fund_is_refused(api, session):
    code = unique("D")
    session.add(Fund(code=code, name="Disabled", disabled=True))
    session.commit()
    r = api("cashier").post("/api/v1/receipts", json={"payment_method_code": "CASH", "lines": [
        {"fund_code": code, "account_reference": "X", "amount": "1.00"}]})
    assert r.status_code == 422 and "lines[0].fund_code" in r.json["errors"]


def test_stop_refused_for_cashier_allowed_for_manager(api, session):
    code = unique("S")
    session.add(Fund(code=code, name="Stop test"))
    session.flush()
    session.add(AccountHolder(fund_code=code, account_reference="STOP1", name="Sam",
                              stop_message="Do not accept payment – BAILIFF"))
    session.commit()
    body = {"payment_method_code": "CASH",
            "lines": [{"fund_code": code, "account_reference": "STOP1", "amount": "3.00"}]}
    r = api("cashier").post("/api/v1/receipts", json=body)
    assert r.status_code == 422
    assert "BAILIFF" in " ".join(r.json["errors"]["lines[0].account_reference"])
    r = api("manager").post("/api/v1/receipts", json=body)
    assert r.status_code == 201


def test_roles(api):
    body = {"payment_method_code": "CASH",
            "lines": [{"fund_code": "TWS", "account_reference": "R1", "amount": "1.00"}]}
    assert api("auditor").post("/api/v1/receipts", json=body).status_code == 403
    assert api("admin").post("/api/v1/receipts", json=body).status_code == 403
    assert api("admin").get("/api/v1/transactions/").status_code == 403
    assert api("clerk").post("/api/v1/receipts", json=body).status_code == 201


def test_trial_balance_api(api):
    api("cashier").post("/api/v1/receipts", json={"payment_method_code": "CASH", "lines": [
        {"fund_code": "TWS", "account_reference": "TB1", "amount": "7.00"}]})
    r = api("auditor").get("/api/v1/ledger/trial-balance")
    assert r.status_code == 200 and r.json["balanced"] is True
    assert r.json["total_debits"] == r.json["total_credits"]
    assert isinstance(r.json["total_debits"], str) and "." in r.json["total_debits"]


def test_search_api_bad_date(api):
    r = api("clerk").get("/api/v1/transactions/?date_from=notadate")
    assert r.status_code == 422 and "date_from" in r.json["errors"]


def test_failed_receipt_releases_its_idempotency_key(api):
    key = str(uuid.uuid4())
    bad = {"payment_method_code": "CASH",
           "lines": [{"fund_code": "TWS", "account_reference": "IK", "amount": "5.001"}]}
    assert api("cashier").post("/api/v1/receipts", json=bad, headers={"Idempotency-Key": key}).status_code == 422
    good = {"payment_method_code": "CASH",
            "lines": [{"fund_code": "TWS", "account_reference": "IK", "amount": "5.00"}]}
    first = api("cashier").post("/api/v1/receipts", json=good, headers={"Idempotency-Key": key})
    assert first.status_code == 201
    again = api("cashier").post("/api/v1/receipts", json=good, headers={"Idempotency-Key": key})
    assert again.json == first.json
    assert api("cashier").post("/api/v1/receipts", json=good,
                               headers={"Idempotency-Key": "x" * 201}).status_code == 422


def test_receipt_rows_in_few_statements(api, session, db):
    """A two-line receipt through the API writes its group, each credit line naming its
    transaction from the start, the transactions and three audit events, within a budget of
    SQL statements (issue 22: the receipts bench is CPU-bound; each statement costs)."""
    from sqlalchemy import event

    from app.models.audit import AuditEvent

    ref = ctax_ref(session, 22)
    body = {"payment_method_code": "CARD", "office_code": "CIVIC", "lines": [
        {"fund_code": "CTAX", "account_reference": ref, "amount": "10.00"},
        {"fund_code": "TWS", "account_reference": "TW22", "amount": "24.00",
         "narrative": "sacks"}]}
    client = api("cashier")
    assert client.post("/api/v1/receipts", json=body).status_code == 201  # warm: sequences
    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        r = client.post("/api/v1/receipts", json=body)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert r.status_code == 201, r.json
    # the test client's /logout/ before the request runs a few more; the receipt itself: ~22
    assert len(statements) <= 30, "\n".join(statements)
    session.rollback()
    group = session.scalar(select(PostingGroup).where(PostingGroup.number == r.json["receipt_number"]))
    lines = session.scalars(select(LedgerLine).where(LedgerLine.group_id == group.id)
                            .order_by(LedgerLine.id)).all()
    ids = [t["id"] for t in r.json["transactions"]]
    assert [(l.account, l.amount, l.transaction_id) for l in lines] == [
        ("CARD_CLEARING", 3400, None), ("FUND", -1000, ids[0]), ("FUND", -2400, ids[1])]
    txns = session.scalars(select(Transaction).where(Transaction.id.in_(ids))
                           .order_by(Transaction.id)).all()
    assert [(t.posting_group_id, t.receipt_number, t.amount, t.vat_code, t.vat_amount,
             t.narrative, t.office_code, t.created_by) for t in txns] == [
        (group.id, group.number, 1000, "O", 0, None, "CIVIC", "cashier"),
        (group.id, group.number, 2400, "S", 400, "sacks", "CIVIC", "cashier")]
    events = session.scalars(select(AuditEvent).where(
        ((AuditEvent.entity == "PostingGroup") & (AuditEvent.entity_id == str(group.id)))
        | ((AuditEvent.entity == "Transaction") & AuditEvent.entity_id.in_([str(i) for i in ids])))
        .order_by(AuditEvent.id)).all()
    assert [(e.action, e.actor) for e in events] == [("post", "cashier"), ("receipt", "cashier"),
                                                      ("receipt", "cashier")]
