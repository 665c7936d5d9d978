"""Bank reconciliation: bank accounts, statements, expected credits, matching and sign-off.

* **Bank accounts** are reference data (app/models/reconciliation.py). The default account's
  BANK ledger lines carry no dimension (every Bank posting made before bank accounts existed is
  its); another account's carry its ``ledger_reference``.
* **Statements**: a bank file (camt.053, MT940, bank CSV) is read for one bank account. Its
  lines are citizens' payments (posted as income by the import, as before) or, when a processing
  rule says so (``set_line_kind = "settlement"``), settlements that clear expected money: those,
  and the statement's debit lines, are kept as ``statement_line`` rows; the statement keeps its
  opening and closing balances.
* **Expected credits** (``expected_bank_credit``): a banked cash-up bag (app/services/cashups.py),
  a card provider's settlement (the provider's payments settled on a day, net of their fees:
  ``refresh_expected`` groups them), an agent file's total.
* **Matching**: ``propose`` suggests, for each unmatched settlement line, the expected credit of
  the same amount within ±3 days (a reference found in the line first, then the nearest date),
  or several credits of one kind and day that add up to it, each with its reason. A clerk
  confirms (``match``): one line against several credits or several lines against one, the
  amounts adding up (a card fee the provider did not report may make up the difference, with a
  reason, posted to CARD_FEES); the match posts Dr Bank / Dr Card fees / Cr the clearing
  account(s). ``unmatch`` reverses that posting. Each line and each credit is matched at most
  once, also under concurrent clerks (rows locked with locking.for_update, then a conditional
  update).
* **Reconciliation** of an account as at a date: the latest statement's closing balance, the
  ledger's Bank balance, the unmatched items on both sides, the difference explained to the
  penny; prepared by one person and signed off by a Finance Manager who is not the preparer.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from app.domain.errors import Conflict, Forbidden, NotFound, ValidationError
from app.domain.i18n import N_
from app.domain.ids import parse_id
from app.domain.money import MAX_PENCE, Money
from app.models.base import utcnow
from app.models.card_payment import CardPayment
from app.models.cashup import ExpectedBankCredit
from app.models.imports import ImportBatch
from app.models.ledger import LedgerLine, PostingGroup
from app.models.reconciliation import (
    BankAccount,
    BankStatement,
    CardSettlement,
    ReconMatch,
    ReconSignOff,
    StatementLine,
)
from app.models.refund import Refund, RefundMethod, RefundStatus
from app.security import roles as R
from app.services import audit
from app.services import ledger as L
from app.services.clearing import AGENT_IMPORT_TYPES
from app.services.locking import for_update

audit.audited(BankAccount)

STATEMENT_FORMATS = ("bank_csv", "camt053", "mt940")
DEFAULT_CODE = "MAIN"
#: expected credit kinds
BAG, CARD, AGENT = "cash_up_bag", "card_settlement", "agent_file"
KIND_LABELS = {BAG: N_("Cash-up bag"), CARD: N_("Card settlement"), AGENT: N_("Agent file")}
#: days either side of the expected date a proposal looks
WINDOW_DAYS = 3
#: age bands of unmatched expected credits (days past their expected date; the last has no top)
AGE_BANDS = ((0, 3), (4, 7), (8, 30), (31, None))
MAX_MATCH_ROWS = 500
SORT_CODE = re.compile(r"^(\d{2})-?(\d{2})-?(\d{2})$")
ACCOUNT_NUMBER = re.compile(r"^\d{8}$")
CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,19}$")


def _today() -> dt.date:
    from app.services import periods

    return periods.today()


def next_working_day(day: dt.date) -> dt.date:
    day += dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def parse_as_of(value, *, required: bool = False) -> dt.date:
    """A reconciliation's date (ISO), today when not given; 422 when it does not parse or is
    outside 1900-2999."""
    from app.services.receipts import parse_date

    if value is not None and not isinstance(value, str):
        raise ValidationError("as_of: a date YYYY-MM-DD.", {"as_of": ["A date YYYY-MM-DD."]})
    day = parse_date(value, field="as_of")
    if day is None:
        if required:
            raise ValidationError("as_of: a date is required.", {"as_of": ["Required."]})
        return _today()
    if not 1900 <= day.year <= 2999:
        raise ValidationError("as_of: a year from 1900 to 2999.", {"as_of": ["Out of range."]})
    return day


# --------------------------------------------------------------------------- bank accounts
def default_account(session: Session) -> BankAccount:
    """The default bank account (created on first use where the migration did not run)."""
    acct = session.scalar(select(BankAccount).where(BankAccount.is_default.is_(True))
                          .order_by(BankAccount.id).limit(1))
    if acct is None:
        acct = BankAccount(code=DEFAULT_CODE, name="Main income account", sort_code="00-00-00",
                           account_number="00000000", ledger_account_code="BANK",
                           ledger_reference=None, is_default=True, disabled=False)
        session.add(acct)
        session.flush()
    return acct


def accounts(session: Session, *, include_disabled: bool = False) -> list[BankAccount]:
    default_account(session)
    q = select(BankAccount)
    if not include_disabled:
        q = q.where(BankAccount.disabled.is_(False))
    return list(session.scalars(q.order_by(BankAccount.is_default.desc(), BankAccount.code)))


def bank_account_for(session: Session, key=None) -> BankAccount:
    """The bank account named by id or code (None or "": the default); 422 if unknown/disabled."""
    if key in (None, ""):
        return default_account(session)
    if isinstance(key, BankAccount):
        return key
    q = select(BankAccount)
    acct_id = parse_id(key) if str(key).isdigit() else None
    acct = session.scalar(q.where(BankAccount.id == acct_id)) if acct_id is not None else \
        session.scalar(q.where(BankAccount.code == str(key).strip().upper()[:20]))
    if acct is None or acct.disabled:
        raise ValidationError("Unknown bank account.", {"bank_account": ["Unknown bank account."]})
    return acct


def save_bank_account(session: Session, *, actor: str, data: dict,
                      account_id: int | None = None) -> BankAccount:
    """Add or edit a bank account (the default account's dimension never changes)."""
    errors: dict[str, list[str]] = {}
    acct = None
    if account_id is not None:
        acct = session.get(BankAccount, account_id)
        if acct is None:
            raise NotFound("No such bank account.")
    code = str(data.get("code") or (acct.code if acct else "")).strip().upper()
    if not CODE.match(code):
        errors["code"] = ["1 to 20 letters, digits, - or _."]
    name = str(data.get("name") or "").strip()
    if not name or len(name) > 100:
        errors["name"] = ["A name of 1 to 100 characters is required."]
    m = SORT_CODE.match(str(data.get("sort_code") or "").strip())
    if not m:
        errors["sort_code"] = ["A sort code is six digits, e.g. 20-00-00."]
    number = str(data.get("account_number") or "").strip()
    if not ACCOUNT_NUMBER.match(number):
        errors["account_number"] = ["An account number is eight digits."]
    gl = str(data.get("ledger_account_code") or "").strip()
    if not gl or len(gl) > 30:
        errors["ledger_account_code"] = ["A ledger account code of 1 to 30 characters is required."]
    if not errors:
        clash = session.scalar(select(BankAccount.id).where(
            BankAccount.code == code, BankAccount.id != (acct.id if acct else -1)))
        if clash is not None:
            errors["code"] = ["Another bank account has this code."]
    if errors:
        raise ValidationError("The bank account is not valid: " + "; ".join(
            f"{k}: {v[0]}" for k, v in errors.items()), errors)
    disabled = bool(data.get("disabled")) if "disabled" in data else (acct.disabled if acct else False)
    if acct is None:
        default_account(session)
        acct = BankAccount(code=code, ledger_reference=code, is_default=False)
        session.add(acct)
    elif acct.is_default and disabled:
        raise ValidationError("The default bank account cannot be disabled.",
                              {"disabled": ["The default account stays enabled."]})
    acct.name, acct.sort_code, acct.account_number = name, "-".join(m.groups()), number
    acct.ledger_account_code, acct.disabled = gl, disabled
    session.flush()
    audit.record(session, "save", "BankAccount", acct.id, after={
        "code": acct.code, "name": name, "sort_code": acct.sort_code,
        "account_number": number, "ledger_account_code": gl, "disabled": disabled}, actor=actor)
    return acct


def check_bank_account(session: Session, item: BankAccount) -> None:
    """The rules of save_bank_account for an account the FAB page is about to save: a new
    account's ledger dimension is its code; the default account keeps its own."""
    errors: dict[str, list[str]] = {}
    item.code = (item.code or "").strip().upper()
    if not CODE.match(item.code):
        errors["code"] = ["1 to 20 letters, digits, - or _."]
    item.name = (item.name or "").strip()
    if not item.name or len(item.name) > 100:
        errors["name"] = ["A name of 1 to 100 characters is required."]
    m = SORT_CODE.match((item.sort_code or "").strip())
    if not m:
        errors["sort_code"] = ["A sort code is six digits, e.g. 20-00-00."]
    else:
        item.sort_code = "-".join(m.groups())
    item.account_number = (item.account_number or "").strip()
    if not ACCOUNT_NUMBER.match(item.account_number):
        errors["account_number"] = ["An account number is eight digits."]
    item.ledger_account_code = (item.ledger_account_code or "").strip()
    if not item.ledger_account_code or len(item.ledger_account_code) > 30:
        errors["ledger_account_code"] = ["A ledger account code of 1 to 30 characters is required."]
    if not errors and session.scalar(select(BankAccount.id).where(
            BankAccount.code == item.code, BankAccount.id != (item.id or -1))) is not None:
        errors["code"] = ["Another bank account has this code."]
    if item.is_default and item.disabled:
        errors["disabled"] = ["The default account stays enabled."]
    if errors:
        raise ValidationError("The bank account was not saved.", errors)
    if item.id is None:
        item.is_default = bool(item.is_default)
        item.ledger_reference = None if item.is_default else item.code


def _bank_ref_match(column, acct: BankAccount):
    return column.is_(None) if acct.ledger_reference is None else column == acct.ledger_reference


def _account_items(acct: BankAccount):
    """Expected credits due to ``acct`` (those with no account are the default account's)."""
    if acct.is_default:
        return or_(ExpectedBankCredit.bank_account_id.is_(None),
                   ExpectedBankCredit.bank_account_id == acct.id)
    return ExpectedBankCredit.bank_account_id == acct.id


# --------------------------------------------------------------------------- statements
def create_statement(session: Session, batch: ImportBatch, acct: BankAccount, summary,
                     actor: str) -> BankStatement:
    """The statement of a received bank file: balances and debit lines (its settlement credits
    are added while the import is processed: ``record_settlement_lines``)."""
    stmt = BankStatement(bank_account_id=acct.id, import_id=batch.id,
                         statement_date=summary.statement_date or summary.last_date or _today(),
                         first_date=summary.first_date, opening_balance=summary.opening_balance,
                         closing_balance=summary.closing_balance,
                         reference=(batch.filename or "")[:100] or None, created_by=actor)
    session.add(stmt)
    session.flush()
    if summary.debits:
        session.execute(StatementLine.__table__.insert(), [
            dict(statement_id=stmt.id, bank_account_id=acct.id, line_number=r.line, kind="debit",
                 transaction_date=r.transaction_date, amount=-r.amount,
                 reference=(r.reference or "")[:100], narrative=(r.narrative or "")[:500] or None)
            for r in summary.debits])
    audit.record(session, "receive", "BankStatement", stmt.id, after={
        "bank_account": acct.code, "import_id": batch.id,
        "statement_date": stmt.statement_date.isoformat(),
        "opening_balance": None if stmt.opening_balance is None else str(Money(stmt.opening_balance)),
        "closing_balance": None if stmt.closing_balance is None else str(Money(stmt.closing_balance)),
        "debit_lines": len(summary.debits)}, actor=actor)
    return stmt


def record_settlement_lines(session: Session, import_id: int, decisions) -> int:
    """Keep an import chunk's settlement lines as statement lines (in the chunk's transaction);
    returns their total."""
    row = session.execute(select(BankStatement.id, BankStatement.bank_account_id).where(
        BankStatement.import_id == import_id)).one_or_none()
    if row is None:
        raise ValidationError(f"Import {import_id} has settlement lines but no bank statement.")
    sid, acct_id = row
    session.execute(StatementLine.__table__.insert(), [
        dict(statement_id=sid, bank_account_id=acct_id, line_number=d.line, kind="settlement",
             transaction_date=d.transaction_date, amount=d.amount,
             reference=(d.raw_reference or "")[:100],
             narrative=(d.narrative or "")[:500] or None) for d in decisions])
    return sum(d.amount for d in decisions)


def add_statement(session: Session, *, actor: str, bank_account=None, statement_date: dt.date,
                  opening_balance: int | None, closing_balance: int | None,
                  lines: list[dict], reference: str | None = None) -> BankStatement:
    """A statement entered directly (demo data, tests): ``lines`` of settlement credits and
    debits ({"date", "amount" signed pence, "reference", "narrative"?})."""
    acct = bank_account_for(session, bank_account)
    stmt = BankStatement(bank_account_id=acct.id, statement_date=statement_date,
                         first_date=min((ln["date"] for ln in lines), default=statement_date),
                         opening_balance=opening_balance, closing_balance=closing_balance,
                         reference=reference, created_by=actor)
    session.add(stmt)
    session.flush()
    for n, ln in enumerate(lines, start=1):
        amount = int(ln["amount"])
        session.add(StatementLine(statement_id=stmt.id, bank_account_id=acct.id, line_number=n,
                                  kind="settlement" if amount > 0 else "debit",
                                  transaction_date=ln["date"], amount=amount,
                                  reference=str(ln.get("reference") or "")[:100],
                                  narrative=ln.get("narrative")))
    session.flush()
    audit.record(session, "create", "BankStatement", stmt.id, after={
        "bank_account": acct.code, "lines": len(lines),
        "statement_date": statement_date.isoformat()}, actor=actor)
    return stmt


# --------------------------------------------------------------------------- expected credits
def refresh_expected(session: Session, *, today: dt.date | None = None) -> dict:
    """Record the expected credits not yet recorded: card settlements (a provider's paid
    payments settled on a day up to ``today``, net of their fees and of the card refunds the
    provider paid out that day) and agent files (a processed allpay file's total). Idempotent;
    the caller commits.

    A card refund leaves CARD_CLEARING when it is paid (refunds.pay_card_refund); the provider
    takes it from the next working day's settlement, so the bank receives the day's payments
    less fees less refunds, and matching that credit clears what CARD_CLEARING holds. A day
    whose refunds reach its payments less fees has no credit to expect (the provider would
    debit the account): its payments and refunds are attached to the day's settlement all the
    same, so a later refresh does not count them again."""
    today = today or _today()
    made = {"card_settlements": 0, "agent_files": 0}
    pending = session.execute(select(
        CardPayment.id, CardPayment.provider, CardPayment.amount, CardPayment.fee,
        CardPayment.settled_date, CardPayment.paid_at).where(
        CardPayment.status == "paid", CardPayment.settlement_id.is_(None),
        CardPayment.posting_group_id.is_not(None))).all()
    groups: dict[tuple[str, dt.date], list] = defaultdict(list)
    for pid, provider, amount, fee, settled, paid_at in pending:
        # no settlement date from the provider: the next working day after payment
        day = settled or next_working_day((paid_at or utcnow()).date())
        if day <= today:
            groups[(provider, day)].append((pid, amount, fee or 0))
    refunded: dict[tuple[str, dt.date], list] = defaultdict(list)
    for rid, provider, amount, paid_at in session.execute(select(
            Refund.id, Refund.provider, Refund.amount, Refund.paid_at).where(
            Refund.method == RefundMethod.CARD.value, Refund.status == RefundStatus.PAID.value,
            Refund.settlement_id.is_(None), Refund.provider.is_not(None),
            Refund.paid_at.is_not(None))):
        day = next_working_day(paid_at.date())
        if day <= today:
            refunded[(provider, day)].append((rid, amount))
    for provider, day in sorted(set(groups) | set(refunded)):
        pays, refunds = groups.get((provider, day), []), refunded.get((provider, day), [])
        settlement = session.scalar(select(CardSettlement).where(
            CardSettlement.provider == provider, CardSettlement.settled_date == day))
        credit = None
        if settlement is not None:
            credit = session.scalar(select(ExpectedBankCredit).where(
                ExpectedBankCredit.kind == CARD, ExpectedBankCredit.source_id == settlement.id))
            if credit is not None and credit.match_id is not None:
                continue  # that day's settlement is already reconciled: late reports wait
        if settlement is None:
            settlement = CardSettlement(provider=provider, settled_date=day, payments=0, gross=0,
                                        fees=0, refund_count=0, refunds=0)
            session.add(settlement)
            session.flush()
        settlement.payments += len(pays)
        settlement.gross += sum(p[1] for p in pays)
        settlement.fees += sum(p[2] for p in pays)
        settlement.refund_count += len(refunds)
        settlement.refunds += sum(r[1] for r in refunds)
        if pays:
            session.execute(update(CardPayment.__table__).where(
                CardPayment.__table__.c.id.in_([p[0] for p in pays]))
                .values(settlement_id=settlement.id))
        if refunds:
            session.execute(update(Refund.__table__).where(
                Refund.__table__.c.id.in_([r[0] for r in refunds]))
                .values(settlement_id=settlement.id))
        net = settlement.gross - settlement.fees - settlement.refunds
        if net <= 0:
            if credit is not None:  # refunds reported since took the day's credit to nothing
                session.delete(credit)
            continue
        if credit is None:
            session.add(ExpectedBankCredit(
                kind=CARD, amount=net, fee=settlement.fees, expected_date=day,
                reference=f"{provider.upper()} {day.isoformat()}"[:50], source_id=settlement.id,
                clearing_account=L.CARD_CLEARING, clearing_reference=provider))
        else:
            credit.amount, credit.fee = net, settlement.fees
        made["card_settlements"] += 1
    done = select(ExpectedBankCredit.source_id).where(ExpectedBankCredit.kind == AGENT)
    for batch in session.scalars(select(ImportBatch).where(
            ImportBatch.format.in_(tuple(AGENT_IMPORT_TYPES)), ImportBatch.status == "succeeded",
            ImportBatch.id.not_in(done))):
        total = batch.posted_amount + batch.suspense_amount
        if total <= 0:
            continue
        day = next_working_day(batch.last_date or batch.created_at.date())
        session.add(ExpectedBankCredit(
            kind=AGENT, amount=total, expected_date=day,
            reference=f"{AGENT_IMPORT_TYPES[batch.format]} {batch.id}"[:50], source_id=batch.id,
            clearing_account=L.AGENT_CLEARING, clearing_reference=AGENT_IMPORT_TYPES[batch.format]))
        made["agent_files"] += 1
    session.flush()
    if made["card_settlements"] or made["agent_files"]:
        audit.record(session, "refresh", "ExpectedBankCredit", None, after=made, actor="system")
    return made


# --------------------------------------------------------------------------- proposals
#: a proposal's score when its line carries the credit's reference (same amount, in the window)
AGREED = 2


@dataclass
class Proposal:
    line_ids: list[int]
    item_ids: list[int]
    amount: int
    reason: str
    score: int = 0
    details: dict = field(default_factory=dict)

    @property
    def agreed(self) -> bool:
        """The line carries the credit's reference: ``confirm_agreed`` confirms it."""
        return self.score >= AGREED

    def as_json(self) -> dict:
        return {"line_ids": self.line_ids, "item_ids": self.item_ids,
                "amount": str(Money(self.amount)), "reason": self.reason, "agreed": self.agreed}


def _norm(text: str | None) -> str:
    return re.sub(r"[^A-Z0-9]", "", (text or "").upper())


def propose(session: Session, acct: BankAccount, *, window: int = WINDOW_DAYS,
            line_ids: list[int] | None = None) -> list[Proposal]:
    """Proposed matches for the account's unmatched settlement lines: an expected credit of the
    same amount within ±``window`` days (one whose reference the line carries first, then the
    nearest date), else several credits of one kind and day adding up to the line. Each credit
    is proposed once. Reads plain rows (no ORM objects): 20,000 lines against 100,000 credits
    is a dictionary look-up per line."""
    lq = select(StatementLine.id, StatementLine.transaction_date, StatementLine.amount,
                StatementLine.reference, StatementLine.narrative).where(
        StatementLine.bank_account_id == acct.id, StatementLine.match_id.is_(None),
        StatementLine.kind == "settlement")
    if line_ids is not None:
        lq = lq.where(StatementLine.id.in_(line_ids))
    lines = session.execute(lq.order_by(StatementLine.transaction_date, StatementLine.id)).all()
    if not lines:
        return []
    lo = min(r[1] for r in lines) - dt.timedelta(days=window)
    hi = max(r[1] for r in lines) + dt.timedelta(days=window)
    items = session.execute(select(
        ExpectedBankCredit.id, ExpectedBankCredit.expected_date, ExpectedBankCredit.amount,
        ExpectedBankCredit.reference, ExpectedBankCredit.kind).where(
        ExpectedBankCredit.match_id.is_(None), ExpectedBankCredit.cleared.is_(False),
        ExpectedBankCredit.expected_date >= lo, ExpectedBankCredit.expected_date <= hi,
        _account_items(acct)).order_by(ExpectedBankCredit.expected_date,
                                       ExpectedBankCredit.id)).all()
    by_amount: dict[int, list] = defaultdict(list)
    by_day_kind: dict[tuple[dt.date, str], list] = defaultdict(list)
    refs: dict[int, str] = {}
    for iid, day, amount, ref, kind in items:
        by_amount[amount].append((day, iid))
        by_day_kind[(day, kind)].append((iid, amount))
        refs[iid] = _norm(ref)
    group_sums: dict[int, list] = defaultdict(list)
    for (day, kind), members in by_day_kind.items():
        if 1 < len(members) <= 50:
            group_sums[sum(a for _, a in members)].append((day, kind, [i for i, _ in members]))
    taken: set[int] = set()
    out: list[Proposal] = []
    win = dt.timedelta(days=window)
    for lid, ldate, amount, lref, lnarr in lines:
        text = _norm(lref) + "|" + _norm(lnarr)
        best = None
        for day, iid in by_amount.get(amount, ()):
            if iid in taken or abs(day - ldate) > win:
                continue
            ref_hit = bool(refs[iid]) and refs[iid] in text
            key = (0 if ref_hit else 1, abs((day - ldate).days), iid)
            if best is None or key < best[0]:
                best = (key, iid, day, ref_hit)
        if best is not None:
            (_, days, _), iid, day, ref_hit = best
            taken.add(iid)
            reason = f"Amount {Money(amount)} equal; " + (
                "same date" if days == 0 else f"dates {days} day(s) apart") + (
                "; reference in the line" if ref_hit else "")
            out.append(Proposal([lid], [iid], amount, reason, AGREED if ref_hit else 1))
            continue
        for day, kind, ids in group_sums.get(amount, ()):
            if abs(day - ldate) <= win and not taken.intersection(ids):
                taken.update(ids)
                out.append(Proposal([lid], list(ids), amount,
                                    f"{len(ids)} {kind.replace('_', ' ')} items of "
                                    f"{day.isoformat()} add up to {Money(amount)}", 1))
                break
    return out


@dataclass
class Confirmed:
    matches: list[ReconMatch]
    #: proposals another clerk matched (or unmatched a side of) while these were confirmed
    skipped: int = 0


def confirm_agreed(session: Session, acct: BankAccount, *, actor: str) -> Confirmed:
    """Confirm, in one go, every proposal of the account whose reference agrees: the
    statement line carries the expected credit's reference and the amounts are equal (a
    clerk's check of such a pair adds nothing; the day's card settlements and banked bags
    come in dozens). The other proposals are left for a clerk. Each match is its own
    transaction, posted and committed as ``match`` does; one that a concurrent clerk took
    meanwhile is skipped and counted, the rest still confirmed. Another error (a closed
    period, say) stops the run with what was confirmed before it kept."""
    done: list[ReconMatch] = []
    skipped = 0
    for p in propose(session, acct):
        if not p.agreed:
            continue
        try:
            done.append(match(session, actor=actor, line_ids=p.line_ids, item_ids=p.item_ids,
                              reason=f"Confirmed with the agreed proposals: {p.reason}"))
        except Conflict:
            session.rollback()
            skipped += 1
    return Confirmed(done, skipped)


# --------------------------------------------------------------------------- matching
def _ids(raw, field_name: str, errors: dict) -> list[int]:
    if not isinstance(raw, (list, tuple)) or not raw:
        errors[field_name] = ["Choose at least one."]
        return []
    if len(raw) > MAX_MATCH_ROWS:
        errors[field_name] = [f"At most {MAX_MATCH_ROWS}."]
        return []
    out = []
    for v in raw:
        i = parse_id(v) if not isinstance(v, bool) else None
        if i is None:
            errors[field_name] = [f"{str(v)[:20]!r} is not an id."]
            return []
        out.append(i)
    if len(set(out)) != len(out):
        errors[field_name] = ["An id is given twice."]
    return sorted(set(out))


def _pence(raw, field_name: str, errors: dict) -> int:
    if raw in (None, "", 0, "0"):
        return 0
    try:
        if isinstance(raw, Money):
            value = raw.pence
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        else:
            text = str(raw).strip()
            neg = text.startswith("-")
            value = Money.parse(text[1:] if neg else text).pence * (-1 if neg else 1)
    except (ValidationError, ValueError):
        errors[field_name] = ["An amount in pounds and pence, e.g. 1.25."]
        return 0
    if abs(value) > MAX_PENCE:
        errors[field_name] = ["Too large."]
        return 0
    return value


def match(session: Session, *, actor: str, line_ids, item_ids, fee_adjustment=None,
          reason: str | None = None, commit: bool = True) -> ReconMatch:
    """Match statement lines to expected credits and post Dr Bank / Dr Card fees / Cr clearing.

    The lines' total must equal the credits' expected total (net of the fees the provider
    reported) less ``fee_adjustment`` (a card fee the provider did not report, entered by the
    clerk with a reason); else a 422 and nothing is saved. Lines and credits already matched
    (also by a concurrent clerk): 409."""
    errors: dict[str, list[str]] = {}
    lids = _ids(line_ids, "line_ids", errors)
    iids = _ids(item_ids, "item_ids", errors)
    adjust = _pence(fee_adjustment, "fee_adjustment", errors)
    reason = (reason or "").strip()[:500] or None
    if errors:
        raise ValidationError("The match is not valid: " + "; ".join(
            f"{k}: {v[0]}" for k, v in errors.items()), errors)
    # lock both sides (lines, then credits, in id order) until the match commits
    lines = list(session.scalars(for_update(session, select(StatementLine).where(
        StatementLine.id.in_(lids)).order_by(StatementLine.id)).execution_options(
        populate_existing=True)))
    items = list(session.scalars(for_update(session, select(ExpectedBankCredit).where(
        ExpectedBankCredit.id.in_(iids)).order_by(ExpectedBankCredit.id)).execution_options(
        populate_existing=True)))
    if len(lines) != len(lids):
        raise NotFound("A statement line does not exist.")
    if len(items) != len(iids):
        raise NotFound("An expected credit does not exist.")
    acct_ids = {ln.bank_account_id for ln in lines}
    if len(acct_ids) != 1:
        raise ValidationError("The statement lines are of different bank accounts.",
                              {"line_ids": ["One bank account at a time."]})
    acct = session.get(BankAccount, acct_ids.pop())
    if any(ln.kind != "settlement" for ln in lines):
        raise ValidationError("Only settlement credits clear expected money; a debit line is "
                              "a reconciling item.", {"line_ids": ["Settlement lines only."]})
    for it in items:
        if it.bank_account_id not in (None, acct.id) or (it.bank_account_id is None
                                                         and not acct.is_default):
            raise ValidationError(f"Expected credit {it.reference} is due to another bank "
                                  "account.", {"item_ids": ["Another bank account's."]})
    if any(ln.match_id is not None for ln in lines):
        raise Conflict("A statement line is already matched.", {"line_ids": ["Already matched."]})
    if any(it.match_id is not None or it.cleared for it in items):
        raise Conflict("An expected credit is already cleared.", {"item_ids": ["Already cleared."]})
    lines_total = sum(ln.amount for ln in lines)
    net = sum(it.amount for it in items)
    reported_fees = sum(it.fee for it in items)
    if lines_total != net - adjust:
        diff = lines_total - net
        raise ValidationError(
            f"The amounts do not add up: the statement lines total {Money(lines_total)}, the "
            f"expected credits {Money(net)} (difference {Money(diff)})."
            + (" A card fee the provider did not report may be entered with a reason."
               if any(it.kind == CARD for it in items) else ""),
            {"amount": [f"Lines {Money(lines_total)} ≠ expected {Money(net)}."]})
    if adjust:
        if not all(it.kind == CARD for it in items):
            raise ValidationError("A fee difference is for card settlements only.",
                                  {"fee_adjustment": ["Card settlements only."]})
        if not reason:
            raise ValidationError("Give a reason for the card fee difference.",
                                  {"reason": ["A reason is required."]})
    fees = reported_fees + adjust
    if fees < 0:
        raise ValidationError("The card fees cannot be negative.",
                              {"fee_adjustment": ["The fees would be negative."]})
    # legs: Dr Bank what the bank received, Dr Card fees, Cr each clearing account its gross
    # (a bag whose cash-up already debited Bank clears against Bank: nothing to post for it)
    totals: dict[tuple[str, str | None], int] = defaultdict(int)
    totals[(L.BANK, acct.ledger_reference)] += lines_total
    if fees:
        card_ref = next((it.clearing_reference for it in items if it.kind == CARD), None)
        totals[(L.CARD_FEES, card_ref)] += fees
    for it in items:
        ref = acct.ledger_reference if it.clearing_account == L.BANK else it.clearing_reference
        totals[(it.clearing_account, ref)] -= it.gross
    legs = [L.Leg(a, amt, None, ref) for (a, ref), amt in totals.items() if amt]
    m = ReconMatch(bank_account_id=acct.id, status="matched", lines_total=lines_total,
                   items_total=net, fee_amount=fees, reason=reason, created_by=actor,
                   line_ids=json.dumps(lids), item_ids=json.dumps(iids))
    session.add(m)
    session.flush()
    if legs:
        group = L.post_group(session, "reconciliation", legs, actor=actor,
                             reason=f"Bank reconciliation match {m.id}"
                             + (f": {reason}" if reason else ""),
                             accounting_date=max(ln.transaction_date for ln in lines))
        m.posting_group_id = group.id
    # the conditional updates are the last word on "at most once"
    t, e = StatementLine.__table__, ExpectedBankCredit.__table__
    n = session.execute(update(t).where(t.c.id.in_(lids), t.c.match_id.is_(None))
                        .values(match_id=m.id)).rowcount
    k = session.execute(update(e).where(e.c.id.in_(iids), e.c.match_id.is_(None),
                                        e.c.cleared.is_(False))
                        .values(match_id=m.id, cleared=True, cleared_at=utcnow())).rowcount
    if n != len(lids) or k != len(iids):
        session.rollback()
        raise Conflict("A statement line or expected credit was matched meanwhile.")
    session.flush()
    audit.record(session, "match", "ReconMatch", m.id, after={
        "bank_account": acct.code, "lines": lids, "items": iids,
        "amount": str(Money(lines_total)), "fees": str(Money(fees)),
        "posting": m.posting_group_id}, reason=reason, actor=actor)
    if commit:
        session.commit()
    return m


def post_debit_line(session: Session, line_id, *, actor: str, reason: str | None,
                    commit: bool = True) -> ReconMatch:
    """Post a statement's debit line (bank charges) to the ledger: Dr BANK_CHARGES / Cr Bank,
    with a reason; it is then matched (unmatching reverses the posting)."""
    reason = (reason or "").strip()[:500]
    if not reason:
        raise ValidationError("Give a reason for posting the debit.",
                              {"reason": ["A reason is required."]})
    lid = parse_id(line_id)
    line = session.scalar(for_update(session, select(StatementLine).where(
        StatementLine.id == lid)).execution_options(populate_existing=True)) \
        if lid is not None else None
    if line is None:
        raise NotFound("A statement line does not exist.")
    if line.kind != "debit":
        raise ValidationError("Only a debit line is posted as a bank charge.",
                              {"line_id": ["Debit lines only."]})
    if line.match_id is not None:
        raise Conflict("The statement line is already matched.")
    acct = session.get(BankAccount, line.bank_account_id)
    m = ReconMatch(bank_account_id=acct.id, status="matched", lines_total=line.amount,
                   items_total=0, fee_amount=0, reason=reason, created_by=actor,
                   line_ids=json.dumps([line.id]), item_ids="[]")
    session.add(m)
    session.flush()
    group = L.post_group(session, "reconciliation", [
        L.Leg(L.BANK_CHARGES, -line.amount), L.Leg(L.BANK, line.amount, None, acct.ledger_reference)],
        actor=actor, reason=f"Bank reconciliation: debit line {line.id} posted: {reason}",
        accounting_date=line.transaction_date)
    m.posting_group_id = group.id
    t = StatementLine.__table__
    if session.execute(update(t).where(t.c.id == line.id, t.c.match_id.is_(None))
                       .values(match_id=m.id)).rowcount != 1:
        session.rollback()
        raise Conflict("The statement line was matched meanwhile.")
    audit.record(session, "post_debit", "ReconMatch", m.id, after={
        "line": line.id, "amount": str(Money(line.amount)), "posting": group.number},
        reason=reason, actor=actor)
    if commit:
        session.commit()
    return m


def unmatch(session: Session, match_id, *, actor: str, reason: str | None) -> ReconMatch:
    """Undo a match: its posting is reversed and both sides are unmatched again."""
    reason = (reason or "").strip()[:500]
    if not reason:
        raise ValidationError("Give a reason for unmatching.", {"reason": ["A reason is required."]})
    mid = parse_id(match_id)
    m = session.scalar(for_update(session, select(ReconMatch).where(ReconMatch.id == mid))
                       .execution_options(populate_existing=True)) if mid is not None else None
    if m is None:
        raise NotFound("No such match.")
    if m.status != "matched":
        raise Conflict("The match was already undone.")
    signed = session.scalar(select(ReconSignOff.id).where(
        ReconSignOff.bank_account_id == m.bank_account_id, ReconSignOff.status == "signed_off",
        ReconSignOff.prepared_at >= m.created_at))
    if signed is not None:
        raise Conflict("A reconciliation signed off since relies on this match.")
    if m.posting_group_id is not None:
        group = session.get(PostingGroup, m.posting_group_id)
        rev = L.reverse_group(session, group, actor=actor,
                              reason=f"Bank reconciliation match {m.id} undone: {reason}")
        m.reversal_group_id = rev.id
    t, e = StatementLine.__table__, ExpectedBankCredit.__table__
    session.execute(update(t).where(t.c.match_id == m.id).values(match_id=None))
    session.execute(update(e).where(e.c.match_id == m.id)
                    .values(match_id=None, cleared=False, cleared_at=None))
    m.status, m.unmatched_by, m.unmatched_at, m.unmatch_reason = "unmatched", actor, utcnow(), reason
    session.flush()
    audit.record(session, "unmatch", "ReconMatch", m.id, before={"status": "matched"},
                 after={"status": "unmatched", "reversal": m.reversal_group_id}, reason=reason,
                 actor=actor)
    session.commit()
    return m


def get_match(session: Session, match_id) -> ReconMatch:
    mid = parse_id(match_id)
    m = session.get(ReconMatch, mid) if mid is not None else None
    if m is None:
        raise NotFound("No such match.")
    return m


def recent_matches(session: Session, acct: BankAccount, limit: int = 50) -> list[dict]:
    """The account's live matches, newest first, as the page shows them."""
    rows = session.scalars(select(ReconMatch).where(
        ReconMatch.bank_account_id == acct.id, ReconMatch.status == "matched")
        .order_by(ReconMatch.id.desc()).limit(limit))
    return [{**match_json(session, m), "lines_total_pence": m.lines_total,
             "fee_pence": m.fee_amount} for m in rows]


def match_json(session: Session, m: ReconMatch) -> dict:
    number = session.scalar(select(PostingGroup.number).where(
        PostingGroup.id == m.posting_group_id)) if m.posting_group_id else None
    return {"id": m.id, "status": m.status, "line_ids": json.loads(m.line_ids),
            "item_ids": json.loads(m.item_ids), "lines_total": str(Money(m.lines_total)),
            "items_total": str(Money(m.items_total)), "fee_amount": str(Money(m.fee_amount)),
            "reason": m.reason, "posting": number, "created_by": m.created_by,
            "created_at": m.created_at.isoformat() if m.created_at else None,
            "unmatched_by": m.unmatched_by, "unmatch_reason": m.unmatch_reason}


# --------------------------------------------------------------------------- the reconciliation
def latest_statement(session: Session, acct: BankAccount, as_of: dt.date) -> BankStatement | None:
    return session.scalar(select(BankStatement).where(
        BankStatement.bank_account_id == acct.id, BankStatement.statement_date <= as_of)
        .order_by(BankStatement.statement_date.desc(), BankStatement.id.desc()).limit(1))


def ledger_bank_balance(session: Session, acct: BankAccount, as_of: dt.date) -> int:
    """The ledger's Bank balance of the account: postings with an accounting date up to
    ``as_of`` (groups posted before periods existed count on the day they were posted)."""
    end = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    return int(session.scalar(
        select(func.coalesce(func.sum(LedgerLine.amount), 0))
        .join(PostingGroup, PostingGroup.id == LedgerLine.group_id)
        .where(LedgerLine.account == L.BANK, _bank_ref_match(LedgerLine.account_reference, acct),
               or_(PostingGroup.accounting_date <= as_of,
                   and_(PostingGroup.accounting_date.is_(None), PostingGroup.created_at < end))))
        or 0)


def _line_json(ln) -> dict:
    return {"id": ln.id, "kind": ln.kind, "date": ln.transaction_date.isoformat(),
            "amount": str(Money(ln.amount)), "amount_pence": ln.amount, "reference": ln.reference,
            "narrative": ln.narrative, "statement_id": ln.statement_id, "match_id": ln.match_id}


def _item_json(it: ExpectedBankCredit, as_of: dt.date) -> dict:
    return {"id": it.id, "kind": it.kind, "date": it.expected_date.isoformat(),
            "amount": str(Money(it.amount)), "amount_pence": it.amount, "fee": str(Money(it.fee)),
            "reference": it.reference, "clearing_account": it.clearing_account,
            "clearing_reference": it.clearing_reference, "match_id": it.match_id,
            "age_days": max(0, (as_of - it.expected_date).days)}


def reconciliation(session: Session, acct: BankAccount, as_of: dt.date) -> dict:
    """The account's reconciliation as at ``as_of``.

    difference = statement closing balance − ledger Bank balance, explained by
      + unmatched statement lines up to ``as_of`` (on the statement, not in the ledger: settlement
        credits not yet matched, debit lines not posted), and
      − expected credits already posted to Bank (a cash-up banked straight to Bank) and not yet
        on a statement;
    unexplained = difference − explained (zero when the account reconciles)."""
    stmt = latest_statement(session, acct, as_of)
    ledger_balance = ledger_bank_balance(session, acct, as_of)
    lines = list(session.scalars(select(StatementLine).where(
        StatementLine.bank_account_id == acct.id, StatementLine.match_id.is_(None),
        StatementLine.transaction_date <= as_of).order_by(StatementLine.transaction_date,
                                                          StatementLine.id)))
    open_items = list(session.scalars(select(ExpectedBankCredit).where(
        ExpectedBankCredit.match_id.is_(None), ExpectedBankCredit.cleared.is_(False),
        _account_items(acct)).order_by(ExpectedBankCredit.expected_date, ExpectedBankCredit.id)))
    in_bank = [it for it in open_items if it.clearing_account == L.BANK]
    expected = [it for it in open_items if it.clearing_account != L.BANK]
    on_statement = sum(ln.amount for ln in lines)
    in_ledger = sum(it.amount for it in in_bank)
    explained = on_statement - in_ledger
    statement_balance = stmt.closing_balance if stmt is not None else None
    difference = None if statement_balance is None else statement_balance - ledger_balance
    unexplained = None if difference is None else difference - explained
    return {
        "bank_account": {"id": acct.id, "code": acct.code, "name": acct.name,
                         "sort_code": acct.sort_code, "account_number": acct.account_number},
        "as_of": as_of.isoformat(),
        "statement": None if stmt is None else {
            "id": stmt.id, "date": stmt.statement_date.isoformat(), "reference": stmt.reference,
            "opening_balance": None if stmt.opening_balance is None else str(Money(stmt.opening_balance)),
            "closing_balance": None if stmt.closing_balance is None else str(Money(stmt.closing_balance))},
        "statement_balance": statement_balance, "ledger_balance": ledger_balance,
        "difference": difference, "explained": explained, "unexplained": unexplained,
        "unmatched_lines": [_line_json(ln) for ln in lines],
        "unmatched_lines_total": on_statement,
        "ledger_items": [_item_json(it, as_of) for it in in_bank],
        "ledger_items_total": in_ledger,
        "expected_items": [_item_json(it, as_of) for it in expected],
        "expected_items_total": sum(it.amount for it in expected),
        "reconciled": unexplained == 0,
    }


def ageing(session: Session, as_of: dt.date) -> list[dict]:
    """Unmatched expected credits per clearing account and age band (days past their date)."""
    rows = session.execute(select(ExpectedBankCredit.clearing_account,
                                  ExpectedBankCredit.expected_date, ExpectedBankCredit.amount)
                           .where(ExpectedBankCredit.match_id.is_(None),
                                  ExpectedBankCredit.cleared.is_(False))).all()
    out: dict[str, dict] = {}
    for account, day, amount in rows:
        age = max(0, (as_of - day).days)
        entry = out.setdefault(account, {"account": account, "bands": [
            {"from": lo, "to": hi, "count": 0, "total": 0} for lo, hi in AGE_BANDS],
            "count": 0, "total": 0, "oldest_days": 0})
        for band in entry["bands"]:
            if age >= band["from"] and (band["to"] is None or age <= band["to"]):
                band["count"] += 1
                band["total"] += amount
        entry["count"] += 1
        entry["total"] += amount
        entry["oldest_days"] = max(entry["oldest_days"], age)
    return [out[k] for k in sorted(out)]


# --------------------------------------------------------------------------- sign-off
def prepare(session: Session, acct: BankAccount, as_of: dt.date, *, actor: str) -> ReconSignOff:
    """Submit the reconciliation for sign-off: it must have a statement with a closing balance
    and no unexplained difference."""
    rec = reconciliation(session, acct, as_of)
    if rec["statement"] is None or rec["statement_balance"] is None:
        raise ValidationError("There is no statement with a closing balance up to this date.",
                              {"as_of": ["No statement."]})
    if rec["unexplained"] != 0:
        raise ValidationError(f"The difference is not fully explained "
                              f"({Money(rec['unexplained'])} unexplained).",
                              {"unexplained": [str(Money(rec["unexplained"]))]})
    default_account(session)
    session.execute(for_update(session, select(BankAccount.id).where(BankAccount.id == acct.id)))
    live = session.scalar(select(ReconSignOff.id).where(
        ReconSignOff.bank_account_id == acct.id, ReconSignOff.as_of == as_of,
        ReconSignOff.status.in_(("prepared", "signed_off"))))
    if live is not None:
        raise Conflict("This reconciliation is already prepared or signed off.")
    so = ReconSignOff(bank_account_id=acct.id, as_of=as_of, statement_id=rec["statement"]["id"],
                      status="prepared", statement_balance=rec["statement_balance"],
                      ledger_balance=rec["ledger_balance"], explained=rec["explained"],
                      unexplained=rec["unexplained"], snapshot=json.dumps(rec, default=str),
                      prepared_by=actor)
    session.add(so)
    session.flush()
    audit.record(session, "prepare", "ReconSignOff", so.id, after={
        "bank_account": acct.code, "as_of": as_of.isoformat(),
        "statement_balance": str(Money(so.statement_balance)),
        "ledger_balance": str(Money(so.ledger_balance))}, actor=actor)
    session.commit()
    return so


def decide(session: Session, sign_off_id, *, actor: str, roles: set[str], approve: bool,
           comment: str | None = None) -> ReconSignOff:
    """A Finance Manager (or the Head of Finance) signs off or rejects a prepared
    reconciliation; never its preparer. Signing off checks it still reconciles."""
    if not (set(roles) & R.MANAGER_AND_ABOVE):
        raise Forbidden("Only a Finance Manager signs off a reconciliation.")
    sid = parse_id(sign_off_id)
    so = session.scalar(for_update(session, select(ReconSignOff).where(ReconSignOff.id == sid))
                        .execution_options(populate_existing=True)) if sid is not None else None
    if so is None:
        raise NotFound("No such reconciliation sign-off.")
    if so.prepared_by == actor:
        raise Forbidden("The preparer cannot sign off their own reconciliation (four eyes).")
    if so.status != "prepared":
        raise Conflict(f"This reconciliation is {so.status.replace('_', ' ')}.")
    comment = (comment or "").strip()[:500] or None
    if not approve and not comment:
        raise ValidationError("Give a reason for rejecting.", {"comment": ["A reason is required."]})
    if approve:
        acct = session.get(BankAccount, so.bank_account_id)
        rec = reconciliation(session, acct, so.as_of)
        if (rec["statement_balance"], rec["ledger_balance"], rec["unexplained"]) != (
                so.statement_balance, so.ledger_balance, 0):
            raise Conflict("The reconciliation has changed since it was prepared: prepare it "
                           "again.")
    so.status = "signed_off" if approve else "rejected"
    so.decided_by, so.decided_at, so.comment = actor, utcnow(), comment
    session.flush()
    audit.record(session, "sign_off" if approve else "reject", "ReconSignOff", so.id,
                 before={"status": "prepared"}, after={"status": so.status}, reason=comment,
                 actor=actor)
    session.commit()
    return so


def sign_offs(session: Session, acct: BankAccount, limit: int = 50) -> list[ReconSignOff]:
    return list(session.scalars(select(ReconSignOff).where(
        ReconSignOff.bank_account_id == acct.id).order_by(ReconSignOff.as_of.desc(),
                                                           ReconSignOff.id.desc()).limit(limit)))


def sign_off_json(so: ReconSignOff) -> dict:
    return {"id": so.id, "bank_account_id": so.bank_account_id, "as_of": so.as_of.isoformat(),
            "status": so.status, "statement_balance": str(Money(so.statement_balance)),
            "ledger_balance": str(Money(so.ledger_balance)),
            "explained": str(Money(so.explained)), "unexplained": str(Money(so.unexplained)),
            "prepared_by": so.prepared_by,
            "prepared_at": so.prepared_at.isoformat() if so.prepared_at else None,
            "decided_by": so.decided_by,
            "decided_at": so.decided_at.isoformat() if so.decided_at else None,
            "comment": so.comment}


# --------------------------------------------------------------------------- period close
def unreconciled_check(session: Session, start: dt.date, end: dt.date) -> dict:
    """Closing a period: statement lines up to its end still unmatched, on every account."""
    q = select(StatementLine).where(StatementLine.match_id.is_(None),
                                    StatementLine.transaction_date <= end)
    items = list(session.scalars(q.order_by(StatementLine.transaction_date,
                                            StatementLine.id).limit(50)))
    count, total = session.execute(select(func.count(), func.coalesce(func.sum(
        StatementLine.amount), 0)).where(StatementLine.match_id.is_(None),
                                         StatementLine.transaction_date <= end)).one()
    return {"count": int(count), "total": int(total),
            "items": [{"id": ln.id, "date": ln.transaction_date.isoformat(),
                       "amount": ln.amount, "reference": ln.reference, "status": ln.kind}
                      for ln in items], "note": None}

