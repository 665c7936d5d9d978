"""Cash-ups (eReturns): a cashier closes their till for an office and day.

* A **till** is one cashier's cash and cheque receipts at one office that no live cash-up has
  taken, up to and including the till's day: a receipt taken after a cash-up goes into the next
  one. Only receipts that debited Cash in hand count (postings made before the clearing accounts
  debited Bank: see app/services/clearing.py).
* The cashier counts the cash by denomination (£50 notes to 1p; whole, non-negative counts),
  lists the cheques (drawer, sort code, number, amount), enters the amounts of the office's
  template rows (e.g. car park machines, each with its own fund and reference) and the bag /
  paying-in slip number (unique per day among cash-ups that are not voided). Counted minus
  expected is the over (+) or short (−); a non-zero difference needs a reason.
* Submitting starts workflows/cash_up_approval.bpmn (approval limits for action "cash_up"; the
  submitter never approves; the four-eyes floor applies). Approval posts, once:
  Dr Cash in transit (or Bank: config IMS_CASHUP_DESTINATION=BANK) the amount counted /
  Cr Cash in hand the receipted total / Cr Fund:reference each template row (income recorded) /
  Cr (over) or Dr (short) Cash variance, and records the bag as an expected bank credit for
  reconciliation. Rejection returns the cash-up to the cashier, who corrects and resubmits it.
  A cash-up not yet approved can be voided with a reason (its receipts go back to the till).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
from dataclasses import dataclass

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from app.domain.errors import Conflict, Forbidden, NotFound, ValidationError
from app.domain.i18n import N_
from app.domain.ids import parse_id
from app.domain.money import MAX_PENCE, Money
from app.models.base import utcnow
from app.models.cashup import (
    DENOMINATIONS,
    CashUp,
    CashUpCheque,
    CashUpLine,
    CashUpReceipt,
    CashUpTemplateRow,
    ExpectedBankCredit,
)
from app.models.ledger import LedgerLine, PostingGroup, Transaction
from app.models.reference import Fund, Office, PaymentMethod
from app.models.workflow import WorkflowEvent, WorkflowInstance, WorkflowTask
from app.security import roles as R
from app.services import audit
from app.services import ledger as L
from app.services import scope as SC
from app.services import workflow as wf
from app.services.clearing import TILL_KINDS
from app.services.locking import for_update
from app.services.notifications import notify

log = logging.getLogger(__name__)
audit.audited(CashUpTemplateRow)

PROCESS_ID = "cash_up_approval"
SUBJECT_TYPE = "cash_up"
BAG_KIND = "cash_up_bag"
#: denomination keys as the API and the form give them, pounds with pence
DENOMINATION_KEYS = {f"{d // 100}.{d % 100:02d}": d for d in DENOMINATIONS}
MAX_COUNT = 1_000_000
MAX_CHEQUES = 200
SORT_CODE = re.compile(r"^(\d{2})-?(\d{2})-?(\d{2})$")
CHEQUE_NUMBER = re.compile(r"^\d{1,20}$")
BAG_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/-]{0,29}$")
LIVE = ("submitted", "returned", "approved")


def denomination_label(pence: int) -> str:
    return f"£{pence // 100}" if pence >= 100 else f"{pence}p"


def destination_account() -> str:
    """Where approved cash goes: CASH_IN_TRANSIT (default) or BANK (IMS_CASHUP_DESTINATION)."""
    value = ""
    try:
        from flask import current_app, has_app_context

        if has_app_context():
            value = str(current_app.config.get("IMS_CASHUP_DESTINATION") or "")
    except ImportError:  # pragma: no cover
        pass
    value = (value or os.environ.get("IMS_CASHUP_DESTINATION", "")).strip().upper()
    return L.BANK if value == "BANK" else L.CASH_IN_TRANSIT


def next_working_day(day: dt.date) -> dt.date:
    day += dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


# --------------------------------------------------------------------------- the till
def _office_match(column, office_code: str | None):
    return column.is_(None) if not office_code else column == office_code


def _open_receipts_query(cashier: str, office_code: str | None, till_date: dt.date):
    rev = aliased(PostingGroup)
    in_hand = select(LedgerLine.group_id).where(
        LedgerLine.account == L.CASH_IN_HAND, LedgerLine.amount > 0,
        _office_match(LedgerLine.account_reference, office_code))
    return (select(Transaction, PaymentMethod.kind)
            .join(PaymentMethod, PaymentMethod.code == Transaction.payment_method_code)
            .where(Transaction.created_by == cashier,
                   _office_match(Transaction.office_code, office_code),
                   Transaction.transaction_date <= till_date,
                   PaymentMethod.kind.in_(TILL_KINDS),
                   Transaction.posting_group_id.in_(in_hand),
                   ~exists(select(rev.id).where(rev.reverses_id == Transaction.posting_group_id)),
                   ~exists(select(CashUpReceipt.transaction_id).where(
                       CashUpReceipt.transaction_id == Transaction.id)))
            .order_by(Transaction.id))


def open_receipts(session: Session, cashier: str, office_code: str | None,
                  till_date: dt.date, lock: bool = False) -> list[tuple[Transaction, str]]:
    """(transaction, method kind) of the till's receipts no cash-up has taken yet."""
    stmt = _open_receipts_query(cashier, office_code, till_date)
    if lock:
        stmt = for_update(session, stmt, of=Transaction)
    return [(t, k) for t, k in session.execute(stmt).all()]


def template_rows(session: Session, office_code: str | None, *,
                  scoped: bool = True) -> list[CashUpTemplateRow]:
    """The office's enabled template rows; ``scoped``: only those of the current user's funds
    (a Cashier of a fund group counts their own funds' rows, app/services/scope.py)."""
    if not office_code:
        return []
    stmt = select(CashUpTemplateRow).where(
        CashUpTemplateRow.office_code == office_code, CashUpTemplateRow.disabled.is_(False))
    if scoped:
        stmt = SC.restrict(stmt, CashUpTemplateRow.fund_code)
    return list(session.scalars(stmt.order_by(CashUpTemplateRow.sort_order,
                                              CashUpTemplateRow.id)))


def till_summary(session: Session, cashier: str, office_code: str | None,
                 till_date: dt.date) -> dict:
    """What the till's receipts say, by method, for the cash-up page."""
    rows = open_receipts(session, cashier, office_code, till_date)
    by_method: dict[str, dict] = {}
    for t, kind in rows:
        m = by_method.setdefault(t.payment_method_code, {"method": t.payment_method_code,
                                                         "kind": kind, "count": 0, "amount": 0})
        m["count"] += 1
        m["amount"] += t.amount
    cash = sum(t.amount for t, k in rows if k == "cash")
    cheques = sum(t.amount for t, k in rows if k == "cheque")
    return {"cashier": cashier, "office_code": office_code, "till_date": till_date,
            "receipts": [t for t, _ in rows], "by_method": sorted(by_method.values(),
                                                                key=lambda m: m["method"]),
            "cash": cash, "cheques": cheques, "total": cash + cheques,
            "template_rows": template_rows(session, office_code)}


# --------------------------------------------------------------------------- input checks
def _count(value, key: str, errors: dict) -> int:
    field = f"denominations.{key}"
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    if isinstance(value, bool):
        errors.setdefault(field, []).append("Give a whole number of notes or coins.")
        return 0
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        n = int(value.strip())
    elif isinstance(value, str) and re.fullmatch(r"\s*-\s*\d+\s*", value):
        n = -1
    else:
        errors.setdefault(field, []).append(
            "Give a whole number of notes or coins (0 or more, no fractions).")
        return 0
    if n < 0:
        errors.setdefault(field, []).append("A count cannot be negative.")
        return 0
    if n > MAX_COUNT:
        errors.setdefault(field, []).append(f"At most {MAX_COUNT:,} of one denomination.")
        return 0
    return n


def parse_denominations(raw, errors: dict) -> dict[int, int]:
    """{"50.00": 2, "0.01": 3} -> {5000: 2, 1: 3}; unknown keys and bad counts are errors."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.setdefault("denominations", []).append(
            'Give the counts as an object such as {"20.00": 3, "0.50": 4}.')
        return {}
    out: dict[int, int] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or key not in DENOMINATION_KEYS:
            errors.setdefault("denominations", []).append(
                f"Unknown denomination {str(key)[:20]!r}: use one of "
                f"{', '.join(DENOMINATION_KEYS)}.")
            continue
        n = _count(value, key, errors)
        if n:
            out[DENOMINATION_KEYS[key]] = n
    return out


def _money(value, field: str, errors: dict, *, allow_zero: bool = False) -> int | None:
    if allow_zero and (value is None or (isinstance(value, str) and not value.strip())):
        return 0
    if allow_zero and isinstance(value, str) and value.strip() in ("0", "0.00", "0.0"):
        return 0
    try:
        return Money.parse(value, field=field).pence
    except ValidationError as exc:
        msgs = next(iter(exc.errors.values())) if exc.errors else [exc.message]
        errors.setdefault(field, []).extend(msgs)
        return None


def _text(value, field: str, errors: dict, *, required: bool, max_len: int,
          label: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.setdefault(field, []).append(f"Give the {label}.")
        return None
    if not isinstance(value, str):
        errors.setdefault(field, []).append(f"Give the {label} as text.")
        return None
    value = value.strip()
    if len(value) > max_len:
        errors.setdefault(field, []).append(f"At most {max_len} characters.")
        return None
    return value


def parse_cheques(raw, errors: dict) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.setdefault("cheques", []).append("Give the cheques as a list.")
        return []
    if len(raw) > MAX_CHEQUES:
        errors.setdefault("cheques", []).append(f"At most {MAX_CHEQUES} cheques on one cash-up.")
        return []
    out = []
    for i, c in enumerate(raw):
        p = f"cheques[{i}]"
        if not isinstance(c, dict):
            errors.setdefault(p, []).append("Each cheque is an object.")
            continue
        drawer = _text(c.get("drawer"), f"{p}.drawer", errors, required=True, max_len=100,
                       label="drawer's name")
        sort_raw = _text(c.get("sort_code"), f"{p}.sort_code", errors, required=True, max_len=8,
                         label="sort code")
        sort_code = None
        if sort_raw is not None:
            m = SORT_CODE.fullmatch(sort_raw)
            if m is None:
                errors.setdefault(f"{p}.sort_code", []).append(
                    "A sort code is six digits, such as 12-34-56.")
            else:
                sort_code = "-".join(m.groups())
        number = _text(c.get("cheque_number"), f"{p}.cheque_number", errors, required=True,
                       max_len=20, label="cheque number")
        if number is not None and not CHEQUE_NUMBER.fullmatch(number):
            errors.setdefault(f"{p}.cheque_number", []).append("A cheque number is digits.")
            number = None
        amount = _money(c.get("amount"), f"{p}.amount", errors)
        if None not in (drawer, sort_code, number, amount):
            out.append({"drawer": drawer, "sort_code": sort_code, "cheque_number": number,
                        "amount": amount})
    return out


def parse_lines(session: Session, raw, office_code: str | None, errors: dict) -> list[dict]:
    """Amounts against the office's template rows: [{"template_row_id": id, "amount": "1.00"}]."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.setdefault("lines", []).append("Give the template lines as a list.")
        return []
    rows = {r.id: r for r in template_rows(session, office_code, scoped=False)}
    out, seen = [], set()
    for i, line in enumerate(raw):
        p = f"lines[{i}]"
        if not isinstance(line, dict):
            errors.setdefault(p, []).append("Each line is an object.")
            continue
        rid = parse_id(line.get("template_row_id"))
        row = rows.get(rid) if rid is not None else None
        if row is None:
            errors.setdefault(f"{p}.template_row_id", []).append(
                "Not one of this office's cash-up rows.")
            continue
        SC.require_fund(row.fund_code)  # a row of another group's fund: 404, as if none
        if rid in seen:
            errors.setdefault(f"{p}.template_row_id", []).append("This row is given twice.")
            continue
        seen.add(rid)
        amount = _money(line.get("amount"), f"{p}.amount", errors, allow_zero=True)
        if amount:
            out.append({"template_row_id": row.id, "description": row.description,
                        "fund_code": row.fund_code, "account_reference": row.account_reference,
                        "amount": amount})
    return out


def _parse_date(value) -> dt.date:
    from app.services.receipts import parse_date

    day = parse_date(value, field="till_date", default=dt.date.today())
    if day > dt.date.today():
        raise ValidationError("till_date: a till cannot be cashed up before its day.",
                              {"till_date": ["The date is in the future."]})
    return day


# --------------------------------------------------------------------------- submit
def ensure_deployed(session: Session) -> None:
    if wf.active_definition(session, PROCESS_ID) is not None:
        return
    with open(os.path.join(wf.WORKFLOW_DIR, f"{PROCESS_ID}.bpmn"), "rb") as fh:
        wf.deploy_definition(session, fh.read(), "system", expected_process_id=PROCESS_ID,
                             commit=False)


@dataclass
class Counted:
    denominations: dict[int, int]
    cheques: list[dict]
    lines: list[dict]
    bag_number: str
    variance_reason: str | None

    @property
    def cash(self) -> int:
        return sum(d * n for d, n in self.denominations.items())

    @property
    def cheques_total(self) -> int:
        return sum(c["amount"] for c in self.cheques)

    @property
    def lines_total(self) -> int:
        return sum(line["amount"] for line in self.lines)


def _check_counted(session: Session, office_code: str | None, data: dict, errors: dict) -> Counted:
    denominations = parse_denominations(data.get("denominations"), errors)
    cheques = parse_cheques(data.get("cheques"), errors)
    lines = parse_lines(session, data.get("lines"), office_code, errors)
    bag = _text(data.get("bag_number"), "bag_number", errors, required=True, max_len=30,
                label="bag or paying-in slip number")
    if bag is not None and not BAG_NUMBER.fullmatch(bag):
        errors.setdefault("bag_number", []).append(
            "Letters, digits, - and / only, starting with a letter or digit.")
    reason = _text(data.get("variance_reason"), "variance_reason", errors, required=False,
                   max_len=500, label="reason")
    counted = Counted(denominations, cheques, lines, bag or "", reason)
    if counted.cash + counted.cheques_total > MAX_PENCE:
        errors.setdefault("denominations", []).append("The amount counted is too large.")
    return counted


def _bag_used(session: Session, till_date: dt.date, bag: str, other_than: int | None) -> bool:
    stmt = select(CashUp.id).where(CashUp.till_date == till_date, CashUp.bag_number == bag,
                                   CashUp.status != "voided")
    if other_than is not None:
        stmt = stmt.where(CashUp.id != other_than)
    return session.scalar(stmt.limit(1)) is not None


def _apply_counted(session: Session, cu: CashUp, counted: Counted) -> None:
    cu.denominations = json.dumps({str(d): n for d, n in sorted(counted.denominations.items(),
                                                                 reverse=True)})
    cu.cash_counted = counted.cash
    cu.cheques_total = counted.cheques_total
    cu.bag_number = counted.bag_number
    cu.template_total = counted.lines_total
    cu.variance = cu.counted - cu.expected
    cu.variance_reason = counted.variance_reason if cu.variance else None
    cu.cheques = [CashUpCheque(**c) for c in counted.cheques]
    cu.lines = [CashUpLine(**line) for line in counted.lines]


def _start_approval(session: Session, cu: CashUp, actor: str) -> None:
    ensure_deployed(session)
    amount = max(cu.counted, cu.expected)
    reason = (f"Cash-up {cu.number}: {cu.office_code or '-'} {cu.till_date}, bag {cu.bag_number}, "
              f"counted £{Money(cu.counted)}, expected £{Money(cu.expected)}")
    if cu.variance:
        reason += f", {'over' if cu.variance > 0 else 'short'} £{Money(abs(cu.variance))}: " \
                  f"{cu.variance_reason}"
    instance = wf.start_workflow(session, PROCESS_ID, SUBJECT_TYPE, cu.id, actor, {
        "amount_pence": amount, "requester": actor, "reason": reason[:1000],
        "action": "cash_up", "cash_up_id": cu.id, "bag_number": cu.bag_number,
        "variance_pence": cu.variance})
    cu.workflow_instance_id = instance.id
    cu.submitted_at = utcnow()
    session.flush()


def _snapshot(cu: CashUp) -> dict:
    return {"number": cu.number, "cashier": cu.cashier, "office_code": cu.office_code,
            "till_date": str(cu.till_date), "status": cu.status, "bag_number": cu.bag_number,
            "receipted_cash": str(Money(cu.receipted_cash)),
            "receipted_cheques": str(Money(cu.receipted_cheques)),
            "template_total": str(Money(cu.template_total)),
            "cash_counted": str(Money(cu.cash_counted)),
            "cheques_total": str(Money(cu.cheques_total)), "variance": str(Money(cu.variance)),
            "denominations": cu.denominations, "cheques": len(cu.cheques)}


def _integrity(session: Session, till_date: dt.date, bag: str, other_than: int | None):
    session.rollback()
    if _bag_used(session, till_date, bag, other_than):
        session.rollback()
        return ValidationError(f"bag_number: bag {bag} is already used on {till_date}.",
                               {"bag_number": [f"Bag {bag} is already used on {till_date}."]})
    session.rollback()
    return Conflict("Someone cashed up this till at the same moment; reload to see what is left.",
                    {"till": ["The till changed meanwhile."]})


def submit_cash_up(session: Session, *, actor: str, data: dict) -> CashUp:
    """Create and submit a cash-up of ``actor``'s till: data = {office_code, till_date,
    denominations, cheques, lines, bag_number, variance_reason}. One commit.

    Raises ValidationError (422, nothing saved) for bad counts, cheques, lines, a bag number
    already used that day, a difference without a reason, or an empty till; Conflict (409) when
    another cash-up took the till's receipts meanwhile.
    """
    if not isinstance(data, dict):
        raise ValidationError("Give the cash-up as an object.", {"body": ["An object is required."]})
    errors: dict[str, list[str]] = {}
    till_date = office_code = None
    try:
        try:
            till_date = _parse_date(data.get("till_date"))
        except ValidationError as exc:
            errors.update(exc.errors)
        office_code = data.get("office_code") or None
        if office_code is not None:
            if not isinstance(office_code, str) or session.scalar(
                    select(Office.id).where(Office.code == office_code)) is None:
                errors.setdefault("office_code", []).append("Unknown office.")
                office_code = None
        counted = _check_counted(session, office_code, data, errors)
        if errors:
            raise _invalid(errors)
        receipts = open_receipts(session, actor, office_code, till_date, lock=True)
        cash = sum(t.amount for t, k in receipts if k == "cash")
        cheques = sum(t.amount for t, k in receipts if k == "cheque")
        if not receipts and not counted.lines:
            raise ValidationError(
                "Nothing has been receipted in this till since its last cash-up, and no "
                "template row has an amount: there is nothing to cash up.",
                {"till": ["Nothing to cash up."]})
        if _bag_used(session, till_date, counted.bag_number, None):
            raise ValidationError(f"bag_number: bag {counted.bag_number} is already used on "
                                  f"{till_date}.", {"bag_number": [
                                      f"Bag {counted.bag_number} is already used on {till_date}."]})
        cu = CashUp(number=L.next_number(session, "CU"), cashier=actor, office_code=office_code,
                    till_date=till_date, status="submitted", receipted_cash=cash,
                    receipted_cheques=cheques, destination=destination_account())
        _apply_counted(session, cu, counted)
        if cu.variance and not cu.variance_reason:
            raise ValidationError(
                f"variance_reason: the till is {'over' if cu.variance > 0 else 'short'} by "
                f"£{Money(abs(cu.variance))}; give a reason.",
                {"variance_reason": ["Give a reason for the difference."]})
        session.add(cu)
        session.flush()
        session.execute(CashUpReceipt.__table__.insert().values([
            {"transaction_id": t.id, "cash_up_id": cu.id, "method_kind": k, "amount": t.amount}
            for t, k in receipts])) if receipts else None
        audit.record(session, "cash_up.submit", "CashUp", cu.id, after=_snapshot(cu),
                     reason=cu.variance_reason, actor=actor)
        _start_approval(session, cu, actor)
        session.commit()
        return cu
    except IntegrityError:
        raise _integrity(session, till_date, counted.bag_number, None) from None
    except Exception:
        session.rollback()
        raise


def _invalid(errors: dict) -> ValidationError:
    return ValidationError("The cash-up was not saved: " + "; ".join(
        f"{k}: {v[0]}" for k, v in errors.items()), errors)


def resubmit_cash_up(session: Session, cash_up_id, *, actor: str, data: dict) -> CashUp:
    """Correct a returned (rejected) cash-up and submit it again; its receipts stay with it."""
    if not isinstance(data, dict):
        raise ValidationError("Give the cash-up as an object.", {"body": ["An object is required."]})
    cu = None
    try:
        cu = _lock(session, cash_up_id)
        if cu.cashier != actor:
            raise Forbidden("Only the cashier who made this cash-up may correct it.")
        if cu.status != "returned":
            raise Conflict(f"Cash-up {cu.number} is {cu.status}; only a returned cash-up is "
                           f"corrected and submitted again.", {"status": [cu.status]})
        errors: dict[str, list[str]] = {}
        counted = _check_counted(session, cu.office_code, data, errors)
        if errors:
            raise _invalid(errors)
        if _bag_used(session, cu.till_date, counted.bag_number, cu.id):
            raise ValidationError(f"bag_number: bag {counted.bag_number} is already used on "
                                  f"{cu.till_date}.", {"bag_number": [
                                      f"Bag {counted.bag_number} is already used on {cu.till_date}."]})
        before = _snapshot(cu)
        _apply_counted(session, cu, counted)
        if cu.variance and not cu.variance_reason:
            raise ValidationError(
                f"variance_reason: the till is {'over' if cu.variance > 0 else 'short'} by "
                f"£{Money(abs(cu.variance))}; give a reason.",
                {"variance_reason": ["Give a reason for the difference."]})
        if cu.expected == 0 and cu.counted == 0:
            raise ValidationError("There is nothing to cash up.", {"till": ["Nothing to cash up."]})
        cu.status = "submitted"
        cu.decided_at = cu.decided_by = cu.decision_comment = None
        session.flush()
        audit.record(session, "cash_up.resubmit", "CashUp", cu.id, before=before,
                     after=_snapshot(cu), reason=cu.variance_reason, actor=actor)
        _start_approval(session, cu, actor)
        session.commit()
        return cu
    except IntegrityError:
        raise _integrity(session, cu.till_date, cu.bag_number, cu.id) from None
    except Exception:
        session.rollback()
        raise


# --------------------------------------------------------------------------- read
def _lock(session: Session, cash_up_id) -> CashUp:
    cid = parse_id(cash_up_id)
    if cid is None:
        raise NotFound(f"Cash-up {str(cash_up_id)[:40]} does not exist.")
    cu = session.scalar(for_update(session, select(CashUp).where(CashUp.id == cid))
                        .execution_options(populate_existing=True))
    if cu is None:
        raise NotFound(f"Cash-up {cash_up_id} does not exist.")
    return cu


def get_cash_up(session: Session, cash_up_id) -> CashUp:
    cid = parse_id(cash_up_id)
    cu = session.get(CashUp, cid) if cid is not None else None
    if cu is None:
        raise NotFound(f"Cash-up {str(cash_up_id)[:40]} does not exist.")
    return cu


def may_see_all(roles: set[str]) -> bool:
    return bool(roles & {R.HEAD, R.MANAGER, R.AUDITOR, R.ADMIN})


def check_may_read(cu: CashUp, username: str, roles: set[str]) -> None:
    if cu.cashier != username and not may_see_all(roles):
        raise NotFound(f"Cash-up {cu.id} does not exist.")


def search(session: Session, *, username: str, roles: set[str], status: str | None = None,
           office_code: str | None = None, till_date: dt.date | None = None,
           cashier: str | None = None, limit: int = 200) -> list[CashUp]:
    stmt = select(CashUp)
    if not may_see_all(roles):
        stmt = stmt.where(CashUp.cashier == username)
    elif cashier:
        stmt = stmt.where(CashUp.cashier == cashier)
    if status:
        stmt = stmt.where(CashUp.status == status)
    if office_code:
        stmt = stmt.where(CashUp.office_code == office_code)
    if till_date:
        stmt = stmt.where(CashUp.till_date == till_date)
    return list(session.scalars(stmt.order_by(CashUp.till_date.desc(), CashUp.id.desc())
                                .limit(limit)))


def receipts_of(session: Session, cu: CashUp) -> list[tuple[Transaction, str]]:
    return [(t, k) for t, k in session.execute(
        select(Transaction, CashUpReceipt.method_kind)
        .join(CashUpReceipt, CashUpReceipt.transaction_id == Transaction.id)
        .where(CashUpReceipt.cash_up_id == cu.id).order_by(Transaction.id)).all()]


def denomination_rows(cu: CashUp) -> list[dict]:
    counts = {int(k): int(v) for k, v in json.loads(cu.denominations or "{}").items()}
    return [{"key": f"{d // 100}.{d % 100:02d}", "pence": d, "label": denomination_label(d),
             "count": counts.get(d, 0), "value": d * counts.get(d, 0)} for d in DENOMINATIONS]


def cash_up_json(session: Session, cu: CashUp, detail: bool = True) -> dict:
    out = {"id": cu.id, "number": cu.number, "cashier": cu.cashier, "office_code": cu.office_code,
           "till_date": cu.till_date.isoformat(), "status": cu.status,
           "bag_number": cu.bag_number,
           "receipted_cash": str(Money(cu.receipted_cash)),
           "receipted_cheques": str(Money(cu.receipted_cheques)),
           "template_total": str(Money(cu.template_total)),
           "expected": str(Money(cu.expected)), "cash_counted": str(Money(cu.cash_counted)),
           "cheques_total": str(Money(cu.cheques_total)), "counted": str(Money(cu.counted)),
           "variance": str(Money(cu.variance)), "variance_reason": cu.variance_reason,
           "destination": cu.destination,
           "submitted_at": cu.submitted_at.isoformat() if cu.submitted_at else None,
           "decided_by": cu.decided_by, "decision_comment": cu.decision_comment,
           "void_reason": cu.void_reason, "workflow_instance_id": cu.workflow_instance_id}
    if detail:
        group = session.get(PostingGroup, cu.posting_group_id) if cu.posting_group_id else None
        out.update({
            "denominations": {r["key"]: r["count"] for r in denomination_rows(cu) if r["count"]},
            "cheques": [{"drawer": c.drawer, "sort_code": c.sort_code,
                         "cheque_number": c.cheque_number, "amount": str(Money(c.amount))}
                        for c in cu.cheques],
            "lines": [{"template_row_id": line.template_row_id, "description": line.description,
                       "fund_code": line.fund_code, "account_reference": line.account_reference,
                       "amount": str(Money(line.amount))} for line in cu.lines],
            "receipts": [{"transaction_id": t.id, "receipt_number": t.receipt_number,
                          "method": t.payment_method_code, "kind": k,
                          "amount": str(Money(t.amount))} for t, k in receipts_of(session, cu)],
            "posting": group.number if group else None})
    return out


def expected_credit_of(session: Session, cu: CashUp) -> ExpectedBankCredit | None:
    return session.scalar(select(ExpectedBankCredit).where(
        ExpectedBankCredit.kind == BAG_KIND, ExpectedBankCredit.source_id == cu.id))


# --------------------------------------------------------------------------- workflow subject
def _summary(session: Session, subject_id: str) -> dict:
    cu = get_cash_up(session, subject_id)
    details = {
        N_("Cash-up"): f"{cu.number} ({cu.status})",
        N_("Cashier"): cu.cashier,
        N_("Office and day"): f"{cu.office_code or '-'} {cu.till_date}",
        N_("Bag number"): cu.bag_number,
        N_("Receipted cash"): f"£{Money(cu.receipted_cash)}",
        N_("Receipted cheques"): f"£{Money(cu.receipted_cheques)}",
        N_("Template rows"): f"£{Money(cu.template_total)}",
        N_("Counted"): f"£{Money(cu.counted)}",
        N_("Over (+) / short (−)"): f"£{Money(cu.variance)}",
    }
    if cu.variance:
        details[N_("Reason for the difference")] = cu.variance_reason or ""
    history = [{"at": e.occurred_at.strftime("%Y-%m-%d %H:%M"), "actor": e.actor,
                "action": e.action, "detail": e.reason or ""}
               for e in reversed(audit.history_for(session, "CashUp", cu.id))]
    return {"title": N_("Cash-up %(number)s: %(amount)s in bag %(bag)s", number=cu.number,
                        amount=f"£{Money(cu.counted)}", bag=cu.bag_number),
            "details": details, "url": f"/cash-ups/{cu.id}", "history": history}


def _post_approval(session: Session, cu: CashUp, actor: str) -> PostingGroup:
    office = cu.office_code or None
    legs: list[L.Leg] = []
    if cu.counted:
        legs.append(L.Leg(cu.destination, cu.counted, None,
                          office if cu.destination != L.BANK else None))
    receipted = cu.receipted_cash + cu.receipted_cheques
    if receipted:
        legs.append(L.Leg(L.CASH_IN_HAND, -receipted, None, office))
    for line in cu.lines:
        legs.append(L.Leg(L.FUND, -line.amount, line.fund_code, line.account_reference))
    if cu.variance:
        legs.append(L.Leg(L.CASH_VARIANCE, -cu.variance, None, office))
    group = L.post_group(session, "cash_up", legs, actor=actor, office_code=office,
                         reason=f"Cash-up {cu.number} approved: bag {cu.bag_number}")
    cash_code = session.scalar(select(PaymentMethod.code).where(
        PaymentMethod.kind == "cash", PaymentMethod.disabled.is_(False))
        .order_by(PaymentMethod.id).limit(1)) or "CASH"
    for line in cu.lines:
        fund = session.scalar(select(Fund).where(Fund.code == line.fund_code))
        L.record_income(session, group=group, fund_code=line.fund_code,
                        account_reference=line.account_reference, amount=line.amount,
                        payment_method_code=cash_code, transaction_date=cu.till_date,
                        narrative=f"{line.description} (cash-up {cu.number})"[:500],
                        vat_code=fund.vat_code if fund else None,
                        external_reference=cu.bag_number, office_code=office, created_by=cu.cashier)
    return group


def _outcome(session: Session, subject_id: str, outcome: str, instance: WorkflowInstance) -> None:
    """The workflow decided (in the transaction that completed it; never commits)."""
    cu = _lock(session, subject_id)
    if cu.status != "submitted" or cu.workflow_instance_id != instance.id:
        log.warning("cash-up %s is %s; outcome %s of instance %s ignored", cu.id, cu.status,
                    outcome, instance.id)
        return
    task = session.scalar(select(WorkflowTask).where(
        WorkflowTask.instance_id == instance.id, WorkflowTask.status == "completed")
        .order_by(WorkflowTask.completed_at.desc(), WorkflowTask.id.desc()).limit(1))
    actor, comment = (task.completed_by or "system", task.comment) if task else ("system", None)
    if instance.error:
        actor, comment = "system", instance.error
    cu.decided_at = utcnow()
    cu.decided_by = actor
    cu.decision_comment = comment
    if outcome == "approved":
        group = _post_approval(session, cu, actor)
        cu.posting_group_id = group.id
        cu.status = "approved"
        if cu.counted > 0:
            session.add(ExpectedBankCredit(
                kind=BAG_KIND, amount=cu.counted,
                expected_date=next_working_day(max(cu.till_date, dt.date.today())),
                reference=cu.bag_number, source_id=cu.id, clearing_account=cu.destination,
                clearing_reference=cu.office_code if cu.destination != L.BANK else None))
        session.flush()
        audit.record(session, "cash_up.approve", "CashUp", cu.id,
                     after={"status": "approved", "posting": group.number}, reason=comment,
                     actor=actor)
        notify(session, [cu.cashier], f"Cash-up {cu.number} (bag {cu.bag_number}) was approved.",
               f"/cash-ups/{cu.id}")
    else:
        cu.status = "returned"
        session.flush()
        audit.record(session, "cash_up.return", "CashUp", cu.id, after={"status": "returned"},
                     reason=comment or "Rejected.", actor=actor)
        notify(session, [cu.cashier],
               f"Cash-up {cu.number} was returned for correction by {actor}: {comment or ''}",
               f"/cash-ups/{cu.id}")


wf.register_subject(SUBJECT_TYPE, _summary, _outcome)


# --------------------------------------------------------------------------- void
def _cancel_instance(session: Session, instance_id: int | None, actor: str, reason: str) -> None:
    """Stop the running approval of a voided cash-up: its ready tasks are cancelled."""
    if instance_id is None:
        return
    instance = session.scalar(for_update(session, select(WorkflowInstance).where(
        WorkflowInstance.id == instance_id)).execution_options(populate_existing=True))
    if instance is None or instance.status != "running":
        return
    now = utcnow()
    for task in session.scalars(select(WorkflowTask).where(
            WorkflowTask.instance_id == instance.id, WorkflowTask.status == "ready")):
        task.status = "cancelled"
        task.completed_at = now
    instance.status = "completed"
    instance.outcome = "rejected"
    instance.completed_at = now
    instance.next_timer_at = None
    instance.error = f"Cash-up voided by {actor}: {reason}"[:1000]
    session.add(WorkflowEvent(instance_id=instance.id, occurred_at=now, actor=actor,
                              action="cancelled", comment=reason[:1000]))
    session.flush()


def void_cash_up(session: Session, cash_up_id, *, actor: str, roles: set[str], reason) -> CashUp:
    """Void a cash-up before approval (its cashier, or a Finance Manager / Head of Finance):
    the approval stops, its receipts go back to the till, its bag number is free again."""
    try:
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError("reason: give a reason for voiding.",
                                  {"reason": ["A reason is required."]})
        if len(reason) > 500:
            raise ValidationError("reason: at most 500 characters.",
                                  {"reason": ["At most 500 characters."]})
        reason = reason.strip()
        peek = get_cash_up(session, cash_up_id)
        check_may_read(peek, actor, roles)
        if peek.cashier != actor and not roles & R.MANAGERS:
            raise Forbidden("Only the cashier or a manager may void this cash-up.")
        # the workflow instance first (as task completion does), then the cash-up
        _cancel_instance(session, peek.workflow_instance_id, actor, reason) \
            if peek.status == "submitted" else None
        cu = _lock(session, cash_up_id)
        if cu.status not in ("submitted", "returned"):
            raise Conflict(f"Cash-up {cu.number} is {cu.status}; only a cash-up not yet approved "
                           f"can be voided.", {"status": [cu.status]})
        before = cu.status
        session.execute(delete(CashUpReceipt).where(CashUpReceipt.cash_up_id == cu.id))
        cu.status = "voided"
        cu.void_reason = reason
        cu.voided_by = actor
        cu.voided_at = utcnow()
        session.flush()
        audit.record(session, "cash_up.void", "CashUp", cu.id, before={"status": before},
                     after={"status": "voided"}, reason=reason, actor=actor)
        session.commit()
        return cu
    except Exception:
        session.rollback()
        raise


# --------------------------------------------------------------------------- banking summary
def banking_summary(session: Session, cu: CashUp) -> dict:
    """What goes in the bag: the paying-in slip's figures."""
    return {"cash_up": cu, "denominations": denomination_rows(cu), "cheques": list(cu.cheques),
            "office": session.scalar(select(Office).where(Office.code == cu.office_code))
            if cu.office_code else None, "total": cu.counted,
            "expected_credit": expected_credit_of(session, cu)}


# --------------------------------------------------------------------------- template rows
def save_template_row(session: Session, *, actor: str, data: dict,
                      row_id=None) -> CashUpTemplateRow:
    """Add or change an office's cash-up template row (Administrator; audited by the model's
    listeners, with the actor of the request)."""
    errors: dict[str, list[str]] = {}
    try:
        office = data.get("office_code")
        if not isinstance(office, str) or session.scalar(
                select(Office.id).where(Office.code == office)) is None:
            errors.setdefault("office_code", []).append("Choose an office.")
        desc = _text(data.get("description"), "description", errors, required=True,
                     max_len=100, label="description")
        fund = data.get("fund_code")
        if not isinstance(fund, str) or session.scalar(
                select(Fund.id).where(Fund.code == fund, Fund.disabled.is_(False))) is None:
            errors.setdefault("fund_code", []).append("Choose a fund.")
        ref = _text(data.get("account_reference"), "account_reference", errors, required=False,
                    max_len=30, label="account reference")
        order = data.get("sort_order", 0)
        if isinstance(order, str) and order.strip().lstrip("-").isdigit():
            order = int(order)
        if isinstance(order, bool) or not isinstance(order, int) or not -1000 <= order <= 1000:
            errors.setdefault("sort_order", []).append("A whole number from -1000 to 1000.")
            order = 0
        if errors:
            raise ValidationError("The template row was not saved.", errors)
        if row_id is not None:
            row = session.get(CashUpTemplateRow, parse_id(row_id))
            if row is None:
                raise NotFound("No such template row.")
        else:
            row = CashUpTemplateRow()
            session.add(row)
        row.office_code, row.description, row.fund_code = office, desc, fund
        row.account_reference, row.sort_order = ref, order
        row.disabled = bool(data.get("disabled"))
        session.flush()
        session.commit()
        return row
    except IntegrityError:
        session.rollback()
        raise ValidationError("This office already has a row with that description.",
                              {"description": ["Already used for this office."]}) from None
    except Exception:
        session.rollback()
        raise



def check_template_row(session: Session, row: CashUpTemplateRow) -> None:
    """The rules of save_template_row for a row the FAB page is about to save."""
    errors: dict[str, list[str]] = {}
    office = row.office.code if row.office is not None else row.office_code
    fund = row.fund.code if row.fund is not None else row.fund_code
    desc = (row.description or "").strip()
    if not office:
        errors.setdefault("office", []).append("Choose an office.")
    if not desc or len(desc) > 100 or "\x00" in desc:
        errors.setdefault("description", []).append("Give a description of at most 100 characters.")
    if not fund or session.scalar(select(Fund.id).where(Fund.code == fund,
                                                        Fund.disabled.is_(False))) is None:
        errors.setdefault("fund", []).append("Choose a fund that is not disabled.")
    if row.account_reference is not None and len(row.account_reference.strip()) > 30:
        errors.setdefault("account_reference", []).append("At most 30 characters.")
    if errors:
        raise ValidationError("The template row was not saved.", errors)
    row.description = desc
    row.account_reference = (row.account_reference or "").strip() or None
