"""Taking payments: a receipt of one or more lines posted as one balanced group under one number."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import metrics
from app.domain.errors import NotFound, ValidationError
from app.domain.money import Money, vat_of
from app.models.ledger import PostingGroup, Transaction
from app.models.reference import Fund, PaymentMethod, VatCode
from app.services import audit, clearing
from app.services import ledger as L
from app.services import refcache
from app.services.validation import date_outside_window, normalise_reference, validate_reference

#: Method kinds that are bookkeeping, not money in; they cannot be used to take a payment.
NON_RECEIPT_KINDS = ("journal", "transfer", "refund", "write_off")
MAX_LINES = 50
_DATE_FORMATS = (("%Y-%m-%d", re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")),
                 ("%d/%m/%Y", re.compile(r"[0-9]{2}/[0-9]{2}/[0-9]{4}")))


def parse_date(value, field: str = "transaction_date", default: dt.date | None = None) -> dt.date | None:
    """ISO YYYY-MM-DD (or DD/MM/YYYY) to a date; ValidationError naming the field otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        # strptime reads any Unicode digit: only ASCII dates get that far
        for fmt, shape in _DATE_FORMATS:
            if not shape.fullmatch(text):
                continue
            try:
                return dt.datetime.strptime(text, fmt).date()
            except ValueError:
                continue
    raise ValidationError(f"{field}: not a date", {field: ["Enter a date as YYYY-MM-DD."]})


def parse_amount(value, field: str) -> int:
    """Pence from an amount as the API sends it ("12.34", strictly: Money.parse) or as a form has
    already parsed it (a Money); ValidationError naming the field for 12.345, -5, 0, 1e3, NaN,
    numbers, "£", separators and text."""
    try:
        return Money.parse(value, field=field).pence
    except ValidationError as exc:
        msgs = next(iter(exc.errors.values())) if exc.errors else [exc.message]
        raise ValidationError(f"{field}: {msgs[0]}", {field: msgs}) from None


@dataclass
class ReceiptResult:
    """A posted receipt. Its figures (number, total, dates, and ``lines``: each transaction's
    id, fund, reference, amount and VAT) are kept as posted, so reading them after the commit
    costs no query; ``group`` and ``transactions`` are the ORM rows (reloaded on access after
    a commit)."""

    group: PostingGroup
    transactions: list[Transaction]

    def __post_init__(self):
        g = self.group
        self.receipt_number: str = g.number
        self.accounting_date: dt.date | None = g.accounting_date
        self.requested_accounting_date: dt.date | None = g.requested_accounting_date
        self.lines: list[dict] = [
            {"id": t.id, "fund_code": t.fund_code, "account_reference": t.account_reference,
             "amount": t.amount, "vat_code": t.vat_code, "vat_amount": t.vat_amount,
             "payment_method_code": t.payment_method_code} for t in self.transactions]
        self.total: int = sum(line["amount"] for line in self.lines)

    @property
    def period_message(self) -> str | None:
        """Set when the transaction date was in a closed period (posted into the next open one)."""
        from app.services.periods import moved_message

        return moved_message(self.requested_accounting_date, self.accounting_date)


def _method(session: Session, code, errors: dict, field: str = "payment_method_code") -> PaymentMethod | None:
    if not code or not isinstance(code, str):
        errors.setdefault(field, []).append("Choose a payment method.")
        return None
    method = refcache.method(session, code)
    if method is None:
        errors.setdefault(field, []).append(f"Unknown payment method {code!r}.")
    elif method.disabled:
        errors.setdefault(field, []).append(f"Payment method {method.code} is disabled.")
    elif method.kind in NON_RECEIPT_KINDS:
        errors.setdefault(field, []).append(f"{method.code} cannot be used to take a payment.")
    return method


def check_line(session: Session, line: dict, prefix: str, errors: dict, *,
               method_code: str | None = None, may_override_stop: bool = False,
               allow_vat: bool = True) -> dict | None:
    """Validate one line {fund_code, account_reference, amount, vat_code?, narrative?}.

    Adds messages under "<prefix>.<field>" and returns the cleaned line (or None if invalid).
    """
    if not isinstance(line, dict):
        errors.setdefault(prefix, []).append("Each line must be an object.")
        return None
    ok = True
    amount = None
    try:
        amount = parse_amount(line.get("amount"), f"{prefix}.amount")
    except ValidationError as exc:
        ok = False
        for k, v in exc.errors.items():
            errors.setdefault(k, []).extend(v)
    fund_code = line.get("fund_code")
    ref = line.get("account_reference")
    if fund_code is not None and not isinstance(fund_code, str):
        errors.setdefault(f"{prefix}.fund_code", []).append("Give the fund code as text.")
        return None
    if ref is not None and not isinstance(ref, str):
        errors.setdefault(f"{prefix}.account_reference", []).append("Give the reference as text.")
        return None
    if fund_code and fund_code.strip():
        from app.services.scope import require_fund

        require_fund(fund_code.strip().upper())  # another group's fund: 404, as if none
    res = validate_reference(session, fund_code, ref, amount, method_code,
                             may_override_stop=may_override_stop)
    for fld, msgs in res.field_errors.items():
        if fld == "payment_method_code":
            continue  # reported once for the receipt
        errors.setdefault(f"{prefix}.{fld}", []).extend(msgs)
        ok = False
    vat_code = None
    fund = res.fund
    if fund is not None:
        vat_code = fund.vat_code
        asked = line.get("vat_code")
        if asked not in (None, ""):
            if not allow_vat or not isinstance(asked, str):
                errors.setdefault(f"{prefix}.vat_code", []).append("A VAT code cannot be given here.")
                ok = False
            else:
                asked = asked.strip().upper()
                if asked != (fund.vat_code or "") and not fund.vat_override:
                    errors.setdefault(f"{prefix}.vat_code", []).append(
                        f"Fund {fund.code} does not allow its VAT code to be changed.")
                    ok = False
                elif session.scalar(select(VatCode.id).where(VatCode.code == asked)) is None:
                    errors.setdefault(f"{prefix}.vat_code", []).append(f"Unknown VAT code {asked!r}.")
                    ok = False
                else:
                    vat_code = asked
    narrative = line.get("narrative")
    if narrative is not None and not isinstance(narrative, str):
        errors.setdefault(f"{prefix}.narrative", []).append("Give the narrative as text.")
        ok = False
    elif narrative and len(narrative) > 500:
        errors.setdefault(f"{prefix}.narrative", []).append("At most 500 characters.")
        ok = False
    if not ok:
        return None
    return {"fund_code": fund.code, "account_reference": res.reference, "amount": amount,
            "vat_code": vat_code, "narrative": (narrative or "").strip() or None,
            "warnings": res.warnings}


def take_receipt(session: Session, *, lines: list, payment_method_code, actor: str,
                 may_override_stop: bool = False, office_code: str | None = None,
                 transaction_date=None, external_reference: str | None = None,
                 accounting_date=None, before_commit=None) -> ReceiptResult:
    """Validate every line, then post Dr the method's clearing account (Cash in hand for cash and
    cheques, Card clearing, Agent clearing; Bank for bank transfers) / Cr Fund:account per line
    under one receipt number.

    Commits once. Raises ValidationError (nothing posted) naming each bad field as
    "lines[i].field", "payment_method_code" or "transaction_date" (also when the date is outside
    the accepted window, validation.transaction_date_window).

    The transaction date is the accounting date: in a closed period the receipt posts on the
    first day of the first open period (result.period_message says so). ``accounting_date``
    (API only) asks for a date explicitly: in a closed period that is refused (422).

    ``before_commit(result)``, when given, runs after the posting and before the commit, in the
    receipt's transaction (the API stores an idempotency key's response with the receipt).
    """
    errors: dict[str, list[str]] = {}
    try:
        method = _method(session, payment_method_code, errors)
        try:
            tdate = parse_date(transaction_date, default=dt.date.today())
        except ValidationError as exc:
            errors.update(exc.errors)
            tdate = None
        if tdate is not None and (outside := date_outside_window(tdate)):
            errors.setdefault("transaction_date", []).append(outside)
        try:
            adate = parse_date(accounting_date, field="accounting_date")
        except ValidationError as exc:
            errors.update(exc.errors)
            adate = None
        if adate is not None and (outside := date_outside_window(adate)):
            errors.setdefault("accounting_date", []).append(outside)
        if external_reference is not None and (not isinstance(external_reference, str)
                                               or len(external_reference) > 100):
            errors.setdefault("external_reference", []).append("Text of at most 100 characters.")
        from app.services import signin as till

        allowed, default_office = till.receipt_rules(session, actor)
        if method is not None and allowed is not None and method.code not in allowed:
            errors.setdefault("payment_method_code", []).append(
                f"You may not take payments by {method.code}.")
        if not office_code:
            office_code = default_office
        if office_code and not refcache.office_exists(session, office_code):
            errors.setdefault("office_code", []).append(f"Unknown office {office_code!r}.")
        if not isinstance(lines, list) or not lines:
            errors.setdefault("lines", []).append("Add at least one line.")
            lines = []
        elif len(lines) > MAX_LINES:
            errors.setdefault("lines", []).append(f"At most {MAX_LINES} lines on one receipt.")
            lines = []
        # every line's fund and account holder in one query each (validate_reference reads them)
        refcache.prefetch(session, [(line.get("fund_code"), normalise_reference(
            line.get("account_reference"))) for line in lines if isinstance(line, dict)
            and isinstance(line.get("account_reference"), (str, type(None)))])
        cleaned = []
        for i, line in enumerate(lines):
            c = check_line(session, line, f"lines[{i}]", errors,
                           method_code=method.code if method is not None else None,
                           may_override_stop=may_override_stop)
            cleaned.append(c)
        if not errors and method is not None:
            total = sum(c["amount"] for c in cleaned)
            if method.maximum_amount is not None and total > method.maximum_amount:
                errors.setdefault("payment_method_code", []).append(
                    f"The receipt total {Money(total)} is more than the {method.code} maximum "
                    f"{Money(method.maximum_amount)}.")
        if errors:
            raise ValidationError("The receipt was not posted: " + "; ".join(
                f"{k}: {v[0]}" for k, v in errors.items()), errors)
        result = post_receipt(session, cleaned, payment_method_code=method.code, actor=actor,
                              transaction_date=tdate, office_code=office_code,
                              external_reference=external_reference, method_kind=method.kind,
                              accounting_date=adate or tdate, strict_date=adate is not None)
        if before_commit is not None:
            before_commit(result)
        session.commit()
        metrics.receipt_posted(result.total)
        return result
    except Exception:
        session.rollback()
        raise


def post_receipt(session: Session, cleaned: list[dict], *, payment_method_code: str, actor: str,
                 transaction_date: dt.date, office_code: str | None = None,
                 external_reference: str | None = None,
                 suspense: list[dict] | None = None, method_kind: str | None = None,
                 provider: str | None = None, accounting_date=None,
                 strict_date: bool = False) -> ReceiptResult:
    """Post already-validated lines (check_line's output) as one receipt: Dr the method's
    clearing account the total (app/services/clearing.py: Cash in hand of the office, Card
    clearing of the provider, Agent clearing; Bank for bank channels), Cr Fund:account per line
    (VAT by the line's code), each line an audited Transaction. The accounting date (default:
    the transaction date) decides the period (app/services/periods.py).

    ``suspense`` lines ({amount, reference_text, fund_code, reason, narrative}) are money taken
    that can no longer be matched (a card payment whose fund was disabled or whose account went
    on stop while the payer paid): Cr SUSPENSE in the same group, one SuspenseItem each.
    Does not commit."""
    suspense = suspense or []
    total = sum(c["amount"] for c in cleaned) + sum(s["amount"] for s in suspense)
    if method_kind is None:
        m = refcache.method(session, payment_method_code)
        method_kind = m.kind if m is not None else None
    legs = [clearing.receipt_debit_leg(method_kind, total, office_code=office_code,
                                       provider=provider, method_code=payment_method_code)] + [
        L.Leg(L.FUND, -c["amount"], c["fund_code"], c["account_reference"]) for c in cleaned]
    if suspense:
        from app.services.reference import SUSPENSE_FUND, get_setting

        susp_fund = get_setting(session, SUSPENSE_FUND) or "SUSP"
        legs += [L.Leg(L.SUSPENSE, -s["amount"], susp_fund) for s in suspense]
    group, txns = L.post_income_group(
        session, "receipt", legs, [
            dict(leg=i + 1, fund_code=c["fund_code"], account_reference=c["account_reference"],
                 amount=c["amount"], payment_method_code=payment_method_code,
                 transaction_date=transaction_date, narrative=c.get("narrative"),
                 vat_code=c.get("vat_code"), external_reference=external_reference,
                 office_code=office_code, created_by=actor)
            for i, c in enumerate(cleaned)],
        actor=actor, office_code=office_code, accounting_date=accounting_date or transaction_date,
        strict_date=strict_date)
    for t, c in zip(txns, cleaned, strict=True):
        audit.record(session, "receipt", "Transaction", t.id, after={
            "receipt_number": group.number, "fund_code": t.fund_code,
            "account_reference": t.account_reference, "amount": str(Money(t.amount)),
            "payment_method_code": t.payment_method_code},
            reason="; ".join(c.get("warnings") or []) or None, actor=actor)
    if suspense:
        from app.models.suspense import SuspenseItem

        for s in suspense:
            item = SuspenseItem(amount=s["amount"], reference_text=s.get("reference_text"),
                                narrative=s.get("narrative"), reason=(s.get("reason") or "")[:500],
                                fund_code=s.get("fund_code"), transaction_date=transaction_date,
                                posting_group_id=group.id, status="unallocated")
            session.add(item)
            session.flush()
            audit.record(session, "suspense", "SuspenseItem", item.id, after={
                "receipt_number": group.number, "amount": str(Money(item.amount)),
                "reference": item.reference_text, "fund_code": item.fund_code},
                reason=item.reason, actor=actor)
    return ReceiptResult(group, txns)


def receipt_view(session: Session, number: str) -> dict:
    """What a printable receipt shows: lines, VAT by code, totals."""
    group = session.scalar(select(PostingGroup).where(PostingGroup.number == number,
                                                      PostingGroup.kind == "receipt"))
    if group is None:
        raise NotFound(f"Receipt {number} does not exist.")
    txns = session.scalars(select(Transaction).where(Transaction.posting_group_id == group.id)
                           .order_by(Transaction.id)).all()
    from app.services.scope import require_fund

    require_fund(*{t.fund_code for t in txns})
    funds = {f.code: f for f in session.scalars(select(Fund).where(
        Fund.code.in_({t.fund_code for t in txns})))}
    rates = {v.code: v for v in session.scalars(select(VatCode))}
    vat: dict[str, dict] = {}
    for t in txns:
        code = t.vat_code or "-"
        row = vat.setdefault(code, {"code": code, "rate": rates[code].rate if code in rates else None,
                                    "gross": 0, "vat": 0})
        row["gross"] += t.amount
        row["vat"] += t.vat_amount
    for row in vat.values():
        row["net"] = row["gross"] - row["vat"]
    method = session.scalar(select(PaymentMethod).where(
        PaymentMethod.code == txns[0].payment_method_code)) if txns else None
    return {"group": group, "transactions": txns, "funds": funds, "method": method,
            "vat": sorted(vat.values(), key=lambda r: r["code"]),
            "total": sum(t.amount for t in txns), "total_vat": sum(t.vat_amount for t in txns),
            "reversed": L.is_reversed(session, group)}


def vat_preview(session: Session, fund_code: str, amount: int, vat_code: str | None = None) -> int:
    rate = session.scalar(select(VatCode.rate).where(VatCode.code == vat_code)) if vat_code else None
    return vat_of(Money(amount), rate).pence if rate is not None else 0
