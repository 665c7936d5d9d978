"""Retention: personal values out of the audit chain (erasable), anonymisation past the retention
period, legal holds, and the subject-access report (service level, both databases)."""

import datetime as dt
import json

import pytest
from sqlalchemy import func, select, text

from app.domain.errors import ValidationError
from app.models.audit import AuditEvent
from app.models.card_payment import PaymentRequest
from app.models.ledger import LedgerLine, Transaction
from app.models.personal import LegalHold, PersonalData
from app.models.reference import AccountHolder
from app.models.refund import Refund
from app.services import personal as P
from app.services import retention as R
from app.services.audit import verify_chain
from app.services.demo_activity import PAST_RETENTION_PEOPLE, seed_past_retention
from tests.conftest import unique

GWEN, IDRIS, MYFANWY = PAST_RETENTION_PEOPLE
#: a day on which the demo records (financial year 2018/19) are past six years' retention
TODAY = dt.date(2026, 12, 6)


@pytest.mark.parametrize("today, years, expected", [
    (dt.date(2026, 12, 6), 6, dt.date(2020, 3, 31)),
    (dt.date(2026, 3, 31), 6, dt.date(2019, 3, 31)),  # the year 2019/20 ends today: not yet
    (dt.date(2026, 4, 1), 6, dt.date(2020, 3, 31)),
    (dt.date(2026, 4, 1), 1, dt.date(2025, 3, 31)),
])
def test_cutoff_is_years_after_the_end_of_the_financial_year(today, years, expected):
    assert R.cutoff(today, years) == expected
    assert R.financial_year_end(dt.date(2020, 3, 31)) == dt.date(2020, 3, 31)
    assert R.financial_year_end(dt.date(2020, 4, 1)) == dt.date(2021, 3, 31)


def test_audited_personal_values_are_tokens_of_an_erasable_table(session):
    ref = unique("HRA")[:10]
    holder = AccountHolder(fund_code="HRA", account_reference=ref, name="Tegwen Token-Test",
                           address="1 Stryd Fawr", postcode="NP18 1AA")
    session.add(holder)
    session.commit()
    event = session.scalar(select(AuditEvent).where(
        AuditEvent.entity == "AccountHolder", AuditEvent.entity_id == str(holder.id)))
    assert "Tegwen" not in event.after and "Stryd" not in event.after
    after = json.loads(event.after)
    assert P.is_token(after["name"]) and P.is_token(after["address"])
    assert after["account_reference"] == ref  # references stay in the trail
    assert P.resolve(session, after["name"]) == (True, "Tegwen Token-Test")
    from app.formatting import audit_changes

    shown = {c["field"]: c["after"] for c in audit_changes(event)}
    assert "Tegwen Token-Test" in shown.values()

    assert P.erase(session, "AccountHolder", [holder.id]) == 3
    session.commit()
    assert P.resolve(session, after["name"]) == (True, None)
    row = session.get(PersonalData, int(after["name"].split(":")[1]))
    assert row.value is None and row.salt is None and row.erased_at is not None
    assert verify_chain(session).valid
    assert not P.check(session)


def test_income_rows_are_strictly_append_only_and_narratives_kept_apart(session):
    """No UPDATE at all of an income row (not even erasing a text column: the narrative, which
    may hold a name, is not in the row); a narrative is kept in transaction_narrative, only for
    a transaction that has one and exists, and is never changed there (only deleted)."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import IntegrityError

    from app.models.ledger import TransactionNarrative
    from app.services.receipts import post_receipt

    assert "narrative" not in {c["name"] for c in inspect(session.connection())
                               .get_columns("income_transaction")}
    ref = unique("HRA")[:10]
    result = post_receipt(session, [
        {"fund_code": "HRA", "account_reference": ref, "amount": 1_100, "vat_code": None,
         "narrative": f"Paid by Eirlys {ref}"},
        {"fund_code": "HRA", "account_reference": ref, "amount": 1_200, "vat_code": None,
         "narrative": None},
        {"fund_code": "HRA", "account_reference": ref, "amount": 1_300, "vat_code": None,
         "narrative": ""}], payment_method_code="CHQ", actor="cashier",
        transaction_date=dt.date.today(), office_code="CIVIC", method_kind="cheque")
    session.commit()
    ids = [t.id for t in result.transactions]
    kept = dict(session.execute(select(TransactionNarrative.transaction_id,
                                       TransactionNarrative.narrative)
                                .where(TransactionNarrative.transaction_id.in_(ids))).all())
    assert kept == {ids[0]: f"Paid by Eirlys {ref}"}
    session.expire_all()
    assert [session.get(Transaction, i).narrative for i in ids] == [
        f"Paid by Eirlys {ref}", None, None]
    for stmt in ("UPDATE income_transaction SET amount = amount + 1 WHERE id = :id",
                 "UPDATE income_transaction SET external_reference = NULL WHERE id = :id",
                 "UPDATE income_transaction SET account_reference = NULL WHERE id = :id",
                 "UPDATE income_transaction SET office_code = office_code WHERE id = :id",
                 "DELETE FROM income_transaction WHERE id = :id"):
        with pytest.raises(Exception, match="append-only"):
            session.execute(text(stmt), {"id": ids[0]})
        session.rollback()
    with pytest.raises(Exception, match="never changed"):
        session.execute(text("UPDATE transaction_narrative SET narrative = 'changed' "
                             "WHERE transaction_id = :id"), {"id": ids[0]})
    session.rollback()
    missing = session.scalar(select(func.max(Transaction.id))) + 1000
    with pytest.raises(IntegrityError):
        session.execute(text("INSERT INTO transaction_narrative (transaction_id, narrative, fund_code, "
                             "transaction_date) VALUES (:id, 'nobody', 'HRA', '2026-04-01')"),
                        {"id": missing})
        session.flush()
    session.rollback()


def _ledger_sums(session):
    total = session.scalar(select(func.coalesce(func.sum(LedgerLine.amount), 0)))
    unbalanced = session.scalar(select(func.count()).select_from(
        select(LedgerLine.group_id).group_by(LedgerLine.group_id)
        .having(func.sum(LedgerLine.amount) != 0).subquery()))
    return total, unbalanced


def test_anonymisation_of_demo_records_past_retention_with_a_legal_hold(session):
    seed_past_retention(session)
    seed_past_retention(session)  # once only
    txns = {t.narrative: t for t in session.scalars(select(Transaction).where(
        Transaction.narrative.like("Paid by %-Demo")))}
    assert len(txns) == 3
    before = {t.id: (t.amount, t.account_reference, t.receipt_number, t.transaction_date)
              for t in txns.values()}
    idris_txn = txns[f"Paid by {IDRIS}"]
    holder = session.scalar(select(AccountHolder).where(
        AccountHolder.account_reference == "HRA9000001"))

    plan = R.plan(session, TODAY)
    due = {k.key: k for k in plan.kinds}
    assert due["transaction"].due >= 3 and due["account_holder"].due >= 1
    assert due["refund"].due >= 1 and due["payment_request"].due >= 1
    assert any(r["reference"] == "HRA9000001" for r in due["account_holder"].sample)

    with pytest.raises(ValidationError):
        R.place_hold(session, match="nonsense", value="HRA9000002", reason="x", actor="admin")
    with pytest.raises(ValidationError):
        R.place_hold(session, match="reference", value="HRA9000002", reason=" ", actor="admin")
    hold = R.place_hold(session, match="reference", value="hra9000002",
                        reason="Tribunal case (demo)", actor="admin")
    plan = R.plan(session, TODAY)
    held = {k.key: k for k in plan.kinds}
    assert held["transaction"].held == 1 and held["refund"].held == 1
    assert [r["id"] for r in held["transaction"].held_sample] == [idris_txn.id]

    from app.services import search as S

    def narrative_search(name):
        return S.search(session, S.parse_filters({"narrative": name})).total

    assert narrative_search(GWEN) == 1
    dry = R.run(session, actor="admin", today=TODAY, dry_run=True)
    assert dry.due == plan.due
    assert session.get(Transaction, txns[f"Paid by {GWEN}"].id).narrative  # nothing done
    ledger_before = _ledger_sums(session)
    it = Transaction.__table__
    rows_before = session.execute(select(it).where(it.c.id.in_(before)).order_by(it.c.id)).all()
    last_event = session.scalar(select(func.max(AuditEvent.id)))

    result = R.run(session, actor="admin", today=TODAY)
    session.expire_all()
    done = {k.key: k.anonymised for k in result.kinds}
    assert done["transaction"] >= 2 and done["account_holder"] >= 1
    # amounts, references and the ledger as they were; names gone; the held record untouched
    for tid, kept in before.items():
        t = session.get(Transaction, tid)
        assert (t.amount, t.account_reference, t.receipt_number, t.transaction_date) == kept
        assert t.narrative == (f"Paid by {IDRIS}" if tid == idris_txn.id else None)
    assert _ledger_sums(session) == ledger_before == (0, 0)
    # the income rows, every column, exactly as they were (erasing deleted narrative rows only)
    assert session.execute(select(it).where(it.c.id.in_(before)).order_by(it.c.id)
                           ).all() == rows_before
    from app.models.ledger import TransactionNarrative

    assert set(session.scalars(select(TransactionNarrative.transaction_id).where(
        TransactionNarrative.transaction_id.in_(before)))) == {idris_txn.id}
    holder = session.get(AccountHolder, holder.id)
    assert (holder.name, holder.address, holder.postcode) == (R.ANONYMISED_NAME, None, None)
    assert holder.account_reference == "HRA9000001"
    refund = session.scalar(select(Refund).where(Refund.transaction_id == idris_txn.id))
    assert refund.payee_name == IDRIS and refund.sort_code  # held
    request = session.scalar(select(PaymentRequest).where(PaymentRequest.amount == 4_250,
                                                          PaymentRequest.status == "expired"))
    assert request.name is None and request.email is None and request.amount == 4_250
    # the audit trail: the holder's values erased, the chain verifies, one event without names
    kept = session.scalars(select(PersonalData.value).where(
        PersonalData.record_type == "AccountHolder",
        PersonalData.record_id == str(holder.id))).all()
    assert kept and all(v is None for v in kept)
    assert verify_chain(session).valid
    events = session.scalars(select(AuditEvent).where(AuditEvent.id > last_event)).all()
    assert [e.action for e in events] == ["retention.anonymise"]
    for name in (GWEN, "Heol y Felin", MYFANWY):
        assert name not in (events[0].after or "") + (events[0].reason or "")
    # the names are gone everywhere the IMS looks: search, subject access, audit mentions
    from app.services.accounts.search import search_accounts

    for name in (GWEN, MYFANWY):
        report = R.subject_access(session, name)
        assert report.total == 0, report.sections
    assert search_accounts(session, GWEN, "name") == []
    assert narrative_search(GWEN) == 0 and narrative_search(IDRIS) == 1  # held
    assert search_accounts(session, "Heol y Felin", "address") == []
    assert holder.id not in [a.id for a in search_accounts(session, "Pryce", "sounds_like")]
    held_report = R.subject_access(session, IDRIS)
    assert held_report.sections["transactions"] and held_report.sections["refunds"]
    assert "Bowen" in R.subject_access_csv(held_report)
    # a second run finds nothing more to do; releasing the hold lets the next run take it
    again = R.run(session, actor="admin", today=TODAY)
    assert not any(k.anonymised for k in again.kinds)
    R.release_hold(session, hold.id, actor="admin")
    with pytest.raises(ValidationError):
        R.release_hold(session, hold.id, actor="admin")
    R.run(session, actor="admin", today=TODAY)
    session.expire_all()
    assert session.get(Transaction, idris_txn.id).narrative is None
    refund = session.get(Refund, refund.id)
    assert refund.payee_name is None and refund.sort_code is None and refund.amount == 2_000
    assert verify_chain(session).valid


def test_hold_by_person_and_subject_access_by_reference(session):
    ref = unique("HRA")[:10]
    person = f"Rhodri {unique('Hold')}"
    holder = AccountHolder(fund_code="HRA", account_reference=ref, name=person,
                           address="2 Ffordd y Llyn", postcode="NP18 3BB",
                           closed_at=dt.datetime(2017, 5, 1, tzinfo=dt.timezone.utc))
    session.add(holder)
    session.commit()
    hold = R.place_hold(session, match="person", value=person.split()[1].lower(),
                        reason="Complaint open", actor="admin")
    R.run(session, actor="admin", today=TODAY)
    session.expire_all()
    assert session.get(AccountHolder, holder.id).name == person
    report = R.subject_access(session, ref)
    assert [h["name"] for h in report.sections["account_holders"]] == [person]
    assert any(e["record"] == f"AccountHolder {holder.id}" for e in report.sections["audit"])
    by_name = R.subject_access(session, person.upper())
    assert by_name.sections["account_holders"] and by_name.sections["audit"]
    with pytest.raises(ValidationError):
        R.subject_access(session, "ab")
    # the account-sync change list that loaded the holder names them too
    from app.models.accounts import AccountHolderProfile, AccountSync, AccountSyncChange

    profile = AccountHolderProfile(name=unique("Retention profile"), fund_code="HRA")
    session.add(profile)
    session.flush()
    sync = AccountSync(profile_id=profile.id, fund_code="HRA", filename="hra.csv",
                       created_by="admin", status="applied")
    session.add(sync)
    session.flush()
    change = AccountSyncChange(sync_id=sync.id, account_holder_id=holder.id,
                               account_reference=ref, kind="changed",
                               before=json.dumps({"name": "Old", "balance": "1.00"}),
                               after=json.dumps({"name": person, "address": "2 Ffordd y Llyn",
                                                 "balance": "2.00"}))
    session.add(change)
    session.commit()
    R.release_hold(session, hold.id, actor="admin")
    R.run(session, actor="admin", today=TODAY)
    session.expire_all()
    assert session.get(AccountHolder, holder.id).name == R.ANONYMISED_NAME
    change = session.get(AccountSyncChange, change.id)
    assert json.loads(change.before) == {"balance": "1.00"}
    assert json.loads(change.after) == {"balance": "2.00"}
    assert R.subject_access(session, person).total == 0
    assert session.scalar(select(LegalHold).where(LegalHold.id == hold.id)).released_by == "admin"


def test_ims_tick_anonymises_what_is_due(app, session):
    from app.services.receipts import post_receipt

    name = f"Tick {unique('Payer')}"
    result = post_receipt(session, [{"fund_code": "HRA", "account_reference": "HRA9000009",
                                     "amount": 1_000, "vat_code": None,
                                     "narrative": f"Paid by {name}"}],
                          payment_method_code="CHQ", actor="cashier",
                          transaction_date=dt.date(2016, 5, 3), office_code="CIVIC",
                          method_kind="cheque")
    session.commit()
    txn_id = result.transactions[0].id
    out = app.test_cli_runner().invoke(args=["ims", "tick"]).output
    assert "retention: " in out and "records anonymised" in out, out
    session.expire_all()
    t = session.get(Transaction, txn_id)
    assert t.narrative is None and t.amount == 1_000 and t.account_reference == "HRA9000009"
    verified = app.test_cli_runner().invoke(args=["ims", "audit-verify"])
    assert verified.exit_code == 0 and "chain intact" in verified.output, verified.output


def test_audit_verify_names_a_personal_value_altered_behind_the_trail(app, session):
    holder = AccountHolder(fund_code="HRA", account_reference=unique("HRA")[:10],
                           name="Alys Altered-Test")
    session.add(holder)
    session.commit()
    row = session.scalar(select(PersonalData).where(
        PersonalData.record_type == "AccountHolder", PersonalData.record_id == str(holder.id),
        PersonalData.kind == "name"))
    session.execute(text("UPDATE personal_data SET value = 'Someone Else' WHERE id = :i"),
                    {"i": row.id})
    session.commit()
    try:
        out = app.test_cli_runner().invoke(args=["ims", "audit-verify"])
        assert out.exit_code == 1 and f"personal_data {row.id}" in out.output, out.output
    finally:
        session.execute(text("UPDATE personal_data SET value = 'Alys Altered-Test' "
                             "WHERE id = :i"), {"i": row.id})
        session.commit()
