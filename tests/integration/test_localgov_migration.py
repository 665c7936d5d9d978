"""`ims migrate-localgov`: the sample export migrates with agreed totals, twice adds nothing,
the ledger balances and the audit chain verifies; a bad export migrates nothing."""

from __future__ import annotations

import os
import shutil

from sqlalchemy import func, select

from app.models.accounts import MigrationRecord
from app.models.ledger import LedgerLine, PostingGroup
from app.models.reference import AccountHolder, Fund, PaymentMethod, ReferenceValidator

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "localgov")


def _counts(session):
    return (session.scalar(select(func.count(PostingGroup.id))),
            session.scalar(select(func.count(AccountHolder.id))),
            session.scalar(select(func.count(Fund.id))))


def test_sample_export_migrates_with_agreed_totals_and_twice_adds_nothing(app, session):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["ims", "migrate-localgov", SAMPLE])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "LG23: 3 rows; £160.00; £160.00 (agreed)" in out
    assert "LG11: 1 rows; £35.00; £35.00 (agreed)" in out
    assert "balances the funds" in out
    assert "not carried over: fund LG23 IsABasketFund=TRUE" in out
    fund = session.scalar(select(Fund).where(Fund.code == "LG23"))
    assert fund.credit_notes_allowed and fund.gl_code == "GL-4100" and fund.account_must_exist
    assert fund.maximum_amount == 99999999 and fund.validator.name == "LocalGov Council Tax"
    card = session.scalar(select(PaymentMethod).where(PaymentMethod.code == "L90"))
    assert card.kind == "card" and card.refundable
    assert session.scalar(select(PaymentMethod.kind).where(PaymentMethod.code == "LJN")) == \
        "journal"
    # the "98" substitution keeps its meaning: the first two characters, whatever they are
    v = session.scalar(select(ReferenceValidator).where(
        ReferenceValidator.name == "LocalGov Sample 98"))
    from app.domain.check_digits import CheckDigitRule

    rule = CheckDigitRule.from_fields(v.check_digit_scheme, v.modulus, v.weights, v.subtract,
                                      v.source_substitution, v.result_substitutions)
    assert rule.is_valid("AB1234562", 8) and rule.is_valid("XY1234562", 8)
    stop = session.scalar(select(AccountHolder).where(
        AccountHolder.account_reference == "100000027"))
    assert stop.stop_message.endswith("BAILIFF") and stop.stop_source == "file"
    # every migrated group balances; the control account is the funds' total
    lines = session.execute(select(LedgerLine.group_id, func.sum(LedgerLine.amount)).join(
        PostingGroup, PostingGroup.id == LedgerLine.group_id).where(
        PostingGroup.kind == "migration").group_by(LedgerLine.group_id)).all()
    assert len(lines) == 5 and all(total == 0 for _, total in lines)
    before = _counts(session)
    again = runner.invoke(args=["ims", "migrate-localgov", SAMPLE])
    assert again.exit_code == 0, again.output
    assert "transactions: 0 added, 5 already there" in again.output
    assert "account holders: 0 added, 3 already there" in again.output
    assert _counts(session) == before
    assert session.scalar(select(func.count(MigrationRecord.id))) >= 5
    verify = runner.invoke(args=["ims", "audit-verify"])
    assert verify.exit_code == 0, verify.output


def test_bad_export_migrates_nothing(app, session, tmp_path):
    bad = tmp_path / "export"
    shutil.copytree(SAMPLE, bad)
    text = (bad / "ProcessedTransactions.csv").read_text(encoding="utf-8")
    text = text.replace("a1f0c3b2-0001", "b2-0001").replace("2024-04-03 09:00:00,2024-04-03",
                                                            "2024-04-03 09:00:00,2024-02-30")
    text = text.replace("a1f0c3b2-0004", "b2-0004").replace("120.00,20.00", "12.345,0")
    (bad / "ProcessedTransactions.csv").write_text(text, encoding="utf-8")
    text = text.replace("K7XQ2M9PC,LG11,", "K7XQ2M9PC,LGZZ,")
    (bad / "ProcessedTransactions.csv").write_text(text, encoding="utf-8")
    before = _counts(session)
    result = app.test_cli_runner().invoke(args=["ims", "migrate-localgov", str(bad)])
    assert result.exit_code == 1
    assert "is not a date that exists" in result.output
    assert "more than two decimal places" in result.output
    assert "fund LGZZ is not in Funds.csv" in result.output
    assert _counts(session) == before
    (bad / "Mops.csv").unlink()
    result = app.test_cli_runner().invoke(args=["ims", "migrate-localgov", str(bad)])
    assert result.exit_code == 1 and "Mops.csv: missing" in result.output
