"""Demo activity so the portal looks like a working council's: a month of receipts, a bank file
with unmatched lines in suspense, a few journals, and refunds and a write-off waiting for
approval. Runs once (a setting marks it done)."""

from __future__ import annotations

import datetime as dt
import io
import random

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models.ledger import Transaction
from app.models.reference import AccountHolder, Setting

DONE_KEY = "demo_activity_seeded"

PLAN = [  # fund, share of receipts, typical amount range in pence, methods
    ("CTAX", 40, (2_000, 25_000), ["CASH", "CARD", "TEL", "WEB", "CHQ"]),
    ("NNDR", 10, (20_000, 400_000), ["CHQ", "CARD", "WEB"]),
    ("HRA", 25, (5_000, 60_000), ["CASH", "CARD", "TEL"]),
    ("PCN", 12, (3_500, 11_000), ["CARD", "WEB", "TEL"]),
    ("SUN", 8, (1_500, 250_000), ["CHQ", "CARD"]),
    ("LIB", 5, (50, 2_500), ["CASH", "CARD"]),
]


def _pounds(pence: int) -> str:
    return f"{pence // 100}.{pence % 100:02d}"


def seed_activity(session: Session, instance_path: str, receipts: int = 240) -> dict[str, int]:
    """Receipts over the last 30 days, one bank import (some lines to suspense), journals."""
    if session.get(Setting, DONE_KEY) is not None:
        return {"demo receipts added": 0}
    from app.services.imports import process_import, receive_import
    from app.services.journals import journal
    from app.services.receipts import take_receipt

    rng = random.Random(1905)
    accounts: dict[str, list[AccountHolder]] = {}
    for holder in session.scalars(select(AccountHolder).where(AccountHolder.stop_message.is_(None))):
        accounts.setdefault(holder.fund_code, []).append(holder)
    today = dt.date.today()
    weights = [share for _, share, _, _ in PLAN]
    taken = []
    for _ in range(receipts):
        lines = []
        method = None
        for _ in range(1 if rng.random() < 0.85 else 2):
            fund, _, (lo, hi), methods = rng.choices(PLAN, weights=weights)[0]
            method = method or rng.choice(methods)
            holder = rng.choice(accounts[fund])
            lines.append({"fund_code": fund, "account_reference": holder.account_reference,
                          "amount": _pounds(rng.randint(lo, hi)),
                          "narrative": rng.choice(["", "Instalment", "Arrears", "Full payment",
                                                   "Part payment", "Paid at counter"])})
        day = today - dt.timedelta(days=int(rng.triangular(0, 30, 0)))
        card = method in ("CARD", "WEB", "TEL")
        result = take_receipt(session, lines=lines, payment_method_code=method,
                              actor=rng.choice(["cashier", "cashier", "clerk"]),
                              office_code=rng.choice(["CIVIC", "CC", "LIB", "WEB"]),
                              transaction_date=day.isoformat(),
                              # the card provider's payment id, which card refunds go back to
                              external_reference=f"demo-pay-{rng.getrandbits(40):010x}" if card else None)
        taken.append(result)
    # A bank file: most lines match, a few are unreadable references that go to suspense.
    rows = ["transaction_date,account_reference,amount,narrative"]
    for i in range(40):
        holder = rng.choice(accounts["CTAX"] + accounts["HRA"])
        ref = holder.account_reference if i % 6 else f"REF {rng.randint(1000, 99999)}"
        rows.append(f"{(today - dt.timedelta(days=1)).isoformat()},{ref},"
                    f"{_pounds(rng.randint(2_000, 40_000))},BGC {holder.name.upper()[:18]}")
    batch = receive_import(session, stream=io.BytesIO(("\n".join(rows) + "\n").encode()),
                           filename="demo-bank-statement.csv", fmt="ims_csv", actor="clerk",
                           instance_path=instance_path, max_bytes=10_000_000)
    process_import(session, batch.id, actor="clerk")
    # A few journals: money paid to the wrong council tax account moved to the right one.

    ctax = session.scalars(select(Transaction).where(Transaction.fund_code == "CTAX")
                           .order_by(Transaction.id).limit(3)).all()
    for txn in ctax:
        target = rng.choice(accounts["CTAX"])
        journal(session, transaction_id=txn.id, reason="Paid to the wrong account (demo)",
                actor="clerk", targets=[{"fund_code": "CTAX",
                                         "account_reference": target.account_reference,
                                         "amount": _pounds(txn.amount // 2 or 1)}])
    # Work waiting for approvers: card and BACS refunds, and a write-off of unclaimed money.
    from app.models.suspense import SuspenseItem
    from app.services.refunds import request_refund
    from app.services.writeoffs import request_write_off

    cards = session.scalars(select(Transaction).where(Transaction.payment_method_code == "CARD")
                            .order_by(Transaction.id.desc()).limit(2)).all()
    for txn, amount in zip(cards, (min(txn.amount, 4_500) for txn in cards)):
        request_refund(session, transaction_id=txn.id, amount=_pounds(amount), method="card",
                       reason="Paid twice in error (demo)", actor="clerk")
    cheque = session.scalars(select(Transaction).where(Transaction.payment_method_code == "CHQ",
                                                       Transaction.amount > 60_000)
                             .order_by(Transaction.id.desc()).limit(1)).first()
    if cheque is not None:
        request_refund(session, transaction_id=cheque.id, amount=_pounds(cheque.amount),
                       method="bacs", reason="Account closed, credit balance (demo)", actor="clerk2",
                       payee={"name": "J Morgan", "sort_code": "20-45-77",
                              "account_number": "41234567"})
    unclaimed = session.scalars(select(SuspenseItem).where(SuspenseItem.amount <= 10_000)
                                .order_by(SuspenseItem.id).limit(1)).first()
    if unclaimed is not None:
        request_write_off(session, suspense_item_id=unclaimed.id, amount=_pounds(unclaimed.amount),
                          reason="Unclaimed after enquiries with the bank (demo)", actor="clerk")
    session.add(Setting(key=DONE_KEY, value=today.isoformat(),
                        description="Demo activity was seeded on this date."))
    session.commit()
    return {"demo receipts added": len(taken), "demo imports added": 1,
            "demo journals added": len(ctax)}


CASH_UPS_DONE_KEY = "demo_cash_ups_seeded"


def _notes_and_coins(pence: int) -> dict[str, int]:
    """Greedy count of notes and coins making up pence, keyed as the cash-up service takes them."""
    from app.services.cashups import DENOMINATION_KEYS

    out = {}
    for key, value in DENOMINATION_KEYS.items():
        n, pence = divmod(pence, value)
        if n:
            out[key] = n
    return out


def seed_cash_ups(session: Session, days: int = 4) -> dict[str, int]:
    """A few days of counter takings at the Civic Centre with their cash-ups: the older days
    approved by a Finance Manager (one a little short, with a reason), today's waiting for
    approval. Runs once (a setting marks it done)."""
    if session.get(Setting, CASH_UPS_DONE_KEY) is not None:
        return {"demo cash-ups added": 0}
    from app.models.workflow import WorkflowTask
    from app.services import cashups as CU
    from app.services import workflow as wf
    from app.services.receipts import take_receipt

    rng = random.Random(1717)
    holders = session.scalars(select(AccountHolder).where(
        AccountHolder.fund_code.in_(["CTAX", "HRA"]), AccountHolder.stop_message.is_(None))
        .order_by(AccountHolder.id).limit(200)).all()
    rows = CU.template_rows(session, "CIVIC")
    today = dt.date.today()
    made = 0
    for back in range(days - 1, -1, -1):
        day = today - dt.timedelta(days=back)
        for _ in range(rng.randint(4, 7)):
            holder = rng.choice(holders)
            take_receipt(session, payment_method_code=rng.choice(["CASH", "CASH", "CHQ"]),
                         actor="cashier", office_code="CIVIC", transaction_date=day.isoformat(),
                         lines=[{"fund_code": holder.fund_code,
                                 "account_reference": holder.account_reference,
                                 "amount": _pounds(rng.randint(1_000, 30_000)),
                                 "narrative": "Paid at the counter"}])
        till = CU.till_summary(session, "cashier", "CIVIC", day)
        cheques = [{"drawer": f"{rng.choice(['A', 'B', 'C', 'D'])} {rng.choice(['Jones', 'Evans', 'Price'])}",
                    "sort_code": f"{rng.randint(10, 99)}-{rng.randint(10, 99)}-{rng.randint(10, 99)}",
                    "cheque_number": f"{rng.randint(100000, 999999)}", "amount": _pounds(t.amount)}
                   for t in till["receipts"] if t.payment_method_code == "CHQ"]
        lines = [{"template_row_id": r.id, "amount": _pounds(rng.randint(2_000, 15_000))}
                 for r in rows]
        cash = till["cash"] + sum(int(line["amount"].replace(".", "")) for line in lines)
        short = back == 2  # one day a little short
        data = {"office_code": "CIVIC", "till_date": day.isoformat(),
                "bag_number": f"CIV{day:%y%m%d}", "cheques": cheques, "lines": lines,
                "denominations": _notes_and_coins(cash - (50 if short else 0)),
                "variance_reason": "50p short: miscounted change (demo)" if short else None}
        cu = CU.submit_cash_up(session, actor="cashier", data=data)
        made += 1
        if back > 0:  # approved by a Finance Manager (and the Head of Finance above £5,000)
            for approver in ("manager", "head"):
                task = session.scalar(select(WorkflowTask).where(
                    WorkflowTask.instance_id == cu.workflow_instance_id,
                    WorkflowTask.status == "ready"))
                if task is None:
                    break
                wf.complete_task(session, task.id, approver, "approve", "Bag checked (demo)")
    session.add(Setting(key=CASH_UPS_DONE_KEY, value=today.isoformat(),
                        description="Demo cash-ups were seeded on this date."))
    session.commit()
    return {"demo cash-ups added": made}


RECONCILIATION_DONE_KEY = "demo_reconciliation_seeded"


def seed_reconciliation(session: Session) -> dict[str, int]:
    """Card payments with their settlements and a bank statement for the default bank account
    that reconciles apart from two deliberate differences: a bank charge (a debit line) and a
    credit nobody expected. The banked bags are matched already; the card settlements wait as
    proposals for a clerk to confirm (their lines carry the payout's reference: *Confirm all
    whose reference agrees*). Runs once (a setting marks it done), after the cash-ups."""
    if session.get(Setting, RECONCILIATION_DONE_KEY) is not None:
        return {"demo statement lines added": 0}
    from app.models.card_payment import CardPayment
    from app.models.cashup import ExpectedBankCredit
    from app.models.ledger import LedgerLine
    from app.models.reconciliation import StatementLine
    from app.services import reconciliation as RC
    from app.services.clearing import configured_card_provider
    from app.simulator import simulated_fee

    today = dt.date.today()
    provider = configured_card_provider()
    # the demo card receipts of the last week, as the provider reported them: settled the next
    # working day, net of its fee
    card_lines = session.execute(
        select(Transaction.id, Transaction.amount, Transaction.transaction_date,
               Transaction.posting_group_id, Transaction.external_reference)
        .join(LedgerLine, LedgerLine.transaction_id == Transaction.id)
        .where(Transaction.payment_method_code.in_(("CARD", "TEL", "WEB")),
               Transaction.transaction_date >= today - dt.timedelta(days=7),
               Transaction.transaction_date < today)
        .order_by(Transaction.id)).all()
    seen_groups = set()
    for _tid, amount, day, group_id, ext in card_lines:
        if group_id in seen_groups:
            continue
        seen_groups.add(group_id)
        total = sum(a for _, a, _, g, _ in card_lines if g == group_id)
        paid = dt.datetime.combine(day, dt.time(12), tzinfo=dt.timezone.utc)
        session.add(CardPayment(
            token=f"demo-{group_id}", status="paid", channel="online", amount=total,
            provider=provider, provider_payment_id=ext or f"demo-{group_id}",
            provider_status="success", description="Demo card payment",
            posting_group_id=group_id, settled_date=RC.next_working_day(day),
            fee=simulated_fee(total), paid_at=paid, created_at=paid, updated_at=paid,
            expires_at=paid, created_by="demo"))
    session.flush()
    RC.refresh_expected(session, today=today + dt.timedelta(days=7))
    acct = RC.default_account(session)
    opening = RC.ledger_bank_balance(session, acct, today)
    items = session.scalars(select(ExpectedBankCredit).where(
        ExpectedBankCredit.match_id.is_(None), ExpectedBankCredit.clearing_account != "BANK")
        .order_by(ExpectedBankCredit.expected_date, ExpectedBankCredit.id)).all()
    lines = []
    for it in items:
        words = {"cash_up_bag": f"DEPOSIT {it.reference}",
                 "card_settlement": f"{it.reference} SETTLEMENT",  # the provider's payout
                 "agent_file": f"{it.reference} REMITTANCE"}.get(it.kind, it.reference)
        lines.append({"date": min(max(it.expected_date, today - dt.timedelta(days=6)), today),
                      "amount": it.amount, "reference": words})
    # the deliberate differences: the bank's monthly charge, and a credit nobody expected
    lines.append({"date": today, "amount": -1_250, "reference": "SERVICE CHARGES"})
    lines.append({"date": today, "amount": 4_999, "reference": "BGC UNKNOWN REMITTER"})
    stmt = RC.add_statement(session, actor="clerk", bank_account=acct.code, statement_date=today,
                            opening_balance=opening,
                            closing_balance=opening + sum(ln["amount"] for ln in lines),
                            lines=lines, reference="Demo statement")
    # the bags carry their bag number: matched already; the card settlements wait for a clerk
    matched = 0
    for proposal in RC.propose(session, acct):
        kinds = {session.get(ExpectedBankCredit, i).kind for i in proposal.item_ids}
        if kinds == {"cash_up_bag"}:
            RC.match(session, actor="clerk", line_ids=proposal.line_ids,
                     item_ids=proposal.item_ids, reason=proposal.reason, commit=False)
            matched += 1
    session.add(Setting(key=RECONCILIATION_DONE_KEY, value=today.isoformat(),
                        description="The demo bank statement was seeded on this date."))
    session.commit()
    n = session.scalar(select(func.count(StatementLine.id)).where(
        StatementLine.statement_id == stmt.id))
    return {"demo statement lines added": int(n or 0), "demo matches added": matched}


RETENTION_DONE_KEY = "demo_past_retention_seeded"
#: the people of the demo records past retention (their names go when anonymisation runs)
PAST_RETENTION_PEOPLE = ("Gwenllian Pryce-Demo", "Idris Bowen-Demo", "Myfanwy Rees-Demo")


def seed_past_retention(session: Session) -> dict[str, int]:
    """Demo records past their retention period (the financial year 2018/19), so that `ims tick`
    anonymises something on demo data: receipts whose narratives name the payer, a closed
    account holder, a rejected refund with payee bank details and an expired payment request.
    Runs once (a setting marks it done)."""
    if session.get(Setting, RETENTION_DONE_KEY) is not None:
        return {"demo records past retention added": 0}
    import json
    import secrets

    from app.models.card_payment import PaymentRequest
    from app.models.refund import Refund
    from app.services.receipts import post_receipt

    day = dt.date(2018, 6, 14)
    moment = dt.datetime(2018, 6, 14, 11, 0, tzinfo=dt.timezone.utc)
    holder = AccountHolder(fund_code="HRA", account_reference="HRA9000001",
                           name=PAST_RETENTION_PEOPLE[0],
                           address="7 Heol y Felin, Llanwern", postcode="NP18 2AA")
    session.add(holder)
    session.flush()
    holder.closed_at = dt.datetime(2018, 9, 30, tzinfo=dt.timezone.utc)
    made = 1
    txns = []
    for i, (name, amount) in enumerate(zip(PAST_RETENTION_PEOPLE, (12_500, 8_000, 4_250))):
        result = post_receipt(session, [{
            "fund_code": "HRA", "account_reference": "HRA9000001" if i == 0 else f"HRA900000{i + 1}",
            "amount": amount, "vat_code": None, "narrative": f"Paid by {name}"}],
            payment_method_code="CHQ", actor="cashier", transaction_date=day, office_code="CIVIC",
            method_kind="cheque")
        txns += result.transactions
        made += 1
    session.flush()
    refund = Refund(transaction_id=txns[1].id, amount=2_000, reason="Overpaid (demo)",
                    method="bacs", status="rejected", payer_name=PAST_RETENTION_PEOPLE[1],
                    payee_name=PAST_RETENTION_PEOPLE[1], sort_code="20-45-77",
                    account_number="41234567", requested_by="clerk", requested_at=moment)
    session.add(refund)
    session.add(PaymentRequest(
        token=secrets.token_urlsafe(24), status="expired", amount=4_250,
        items_json=json.dumps([{"fund_code": "HRA", "reference": "HRA9000003", "amount": 4_250}]),
        name=PAST_RETENTION_PEOPLE[2], email="myfanwy.demo@example.invalid",
        created_by="clerk", created_at=moment, expires_at=moment + dt.timedelta(days=14)))
    made += 2
    session.add(Setting(key=RETENTION_DONE_KEY, value=dt.date.today().isoformat(),
                        description="Demo records past retention were seeded on this date."))
    session.commit()
    return {"demo records past retention added": made}
